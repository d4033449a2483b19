"""Untrusted JSON decodes the same way whichever msgspec version reports invalid UTF-8 how."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from cni_async._testing import decode_entry, decode_like_go, plugin_failure

_decoder = msgspec.json.Decoder()


class _OldMsgspec:
    """A decoder that fails on invalid UTF-8 as msgspec up to 0.22 did (UnicodeDecodeError)."""

    def decode(self, buf: bytes | str, /) -> Any:
        if isinstance(buf, bytes):
            buf.decode("utf-8")  # raises UnicodeDecodeError on invalid input
        return _decoder.decode(buf)


class _NewMsgspec:
    """A decoder that fails on invalid UTF-8 as msgspec 0.23 does (DecodeError)."""

    def decode(self, buf: bytes | str, /) -> Any:
        if isinstance(buf, bytes):
            try:
                buf.decode("utf-8")
            except UnicodeDecodeError:
                raise msgspec.DecodeError("Invalid UTF-8 encoded string") from None
        return _decoder.decode(buf)


@pytest.mark.parametrize("decoder", [_decoder, _OldMsgspec(), _NewMsgspec()])
def test_invalid_utf8_is_replaced_by_every_decoder(decoder: Any) -> None:
    assert decode_like_go(decoder, b'{"msg":"a\xffb\xc3"}') == {"msg": "a\ufffdb\ufffd"}


@pytest.mark.parametrize("decoder", [_decoder, _OldMsgspec(), _NewMsgspec()])
def test_malformed_json_is_a_decode_error(decoder: Any) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_like_go(decoder, b'{"msg":')
    with pytest.raises(msgspec.DecodeError):  # invalid UTF-8 *and* malformed
        decode_like_go(decoder, b'{"msg":"\xff')


def test_deep_nesting_is_a_decode_error() -> None:
    class Recursing:
        def decode(self, buf: bytes | str, /) -> Any:
            raise RecursionError

    with pytest.raises(msgspec.DecodeError, match="nested too deeply"):
        decode_like_go(Recursing(), b"[[[]]]")


def test_memoryview_and_bytearray_are_accepted() -> None:
    assert decode_like_go(_decoder, bytearray(b"[1]")) == [1]
    assert decode_like_go(_decoder, memoryview(b'"\xff"')) == "\ufffd"


def test_plugin_error_message_with_invalid_utf8_is_kept() -> None:
    exc = plugin_failure(b'{"code":7,"msg":"bad \xff byte","details":"d"}', b"", 1)
    assert exc.code == 7
    assert exc.msg == "bad \ufffd byte"


def test_cache_entry_with_invalid_utf8_is_read() -> None:
    entry = decode_entry(
        b'{"kind":"cniCacheV1","containerId":"c1","ifName":"eth0",'
        b'"networkName":"n\xffet","netns":"/run/netns/x"}'
    )
    assert entry is not None
    assert entry.network_name == "n\ufffdet"
