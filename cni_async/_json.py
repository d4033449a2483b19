"""Decoding untrusted JSON (plugin output, cache files) the same way on every msgspec version.

msgspec changed how it reports invalid UTF-8: up to 0.22 the decoder raised the
``UnicodeDecodeError`` of Python's codec, from 0.23 on it raises ``msgspec.DecodeError``.
Deep nesting can also end in ``RecursionError`` rather than a ``DecodeError``. Callers should
not have to know any of that, so ``decode_like_go()`` folds every failure into
``msgspec.DecodeError`` and decides invalid UTF-8 by itself, not by the exception it got.
"""

from __future__ import annotations

from typing import NoReturn, Protocol, TypeVar

import msgspec

__all__ = ["decode_like_go"]

_T_co = TypeVar("_T_co", covariant=True)


class _Decoder(Protocol[_T_co]):
    def decode(self, buf: bytes | str, /) -> _T_co: ...


def decode_like_go(decoder: _Decoder[_T_co], data: bytes | bytearray | memoryview) -> _T_co:
    """Decode ``data`` with ``decoder``, reading invalid UTF-8 as Go's ``encoding/json`` does.

    Go replaces each invalid UTF-8 sequence inside a string with U+FFFD instead of failing, and
    libcni reads plugin output and cache files with it, so a plugin that prints one stray byte
    in a message still works under a Go runtime. The fast path decodes the bytes as they are;
    only when that fails and the bytes are not valid UTF-8 is the input decoded again with the
    replacement applied.

    :raises msgspec.DecodeError: for malformed JSON, a value that does not fit the decoder's
        type (``msgspec.ValidationError``, a subclass), or nesting too deep to decode
    """
    try:
        return decoder.decode(data if isinstance(data, bytes) else bytes(data))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        first: BaseException = exc
    raw = bytes(data)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        _reraise(first)
    try:
        return decoder.decode(raw.decode("utf-8", "replace"))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        _reraise(exc)


def _reraise(exc: BaseException) -> NoReturn:
    if isinstance(exc, msgspec.DecodeError):
        raise exc
    if isinstance(exc, RecursionError):
        raise msgspec.DecodeError("JSON is nested too deeply") from exc
    raise msgspec.DecodeError(f"invalid UTF-8: {exc}") from exc
