"""Text that cannot reach a plugin: a CNI error before anything runs, never a bare exception.

A lone surrogate (what ``os.fsdecode`` makes of undecodable bytes, or a ``\\udXXX`` escape) cannot
be encoded as UTF-8, so it can go neither into a plugin's environment nor into its JSON stdin;
nor can a NUL byte go into an environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from cni_async import (
    CNIEngine,
    CNIPlugin,
    ConfigError,
    InvalidArgument,
    NetAttachment,
    PodNetwork,
    RuntimeConf,
    RuntimeConfig,
    load_config_dir,
    parse_conflist,
)

from ..support.netns import Sandbox
from ..support.plugins import FakePlugin, write_conflist

pytestmark = pytest.mark.anyio

BAD = "caf\udce9"  # "café" in Latin-1, decoded with surrogateescape
NET = parse_conflist(b'{"cniVersion":"1.1.0","name":"net1","plugins":[{"type":"p"}]}')


class RecordingExecutor:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def find_plugin(self, plugin_type: str, bin_dirs: Sequence[str]) -> str:
        return f"/fake/{plugin_type}"

    async def exec_plugin(self, path: str, *, stdin: bytes, env: Mapping[str, str]) -> bytes:
        await anyio.lowlevel.checkpoint()
        self.commands.append(env["CNI_COMMAND"])
        return b'{"cniVersion":"1.1.0","ips":[{"address":"10.1.2.3/24"}]}'


@pytest.mark.parametrize(
    "rt",
    [
        RuntimeConf(container_id="c1", netns="/run/netns/x", args=(("K8S_POD_NAME", BAD),)),
        RuntimeConf(container_id="c1", netns=f"/run/netns/{BAD}"),
        RuntimeConf(container_id="c1", netns="/run/netns/x\0y"),
        RuntimeConf(container_id="c1", netns="/run/netns/x", capability_args={"aliases": [BAD]}),
    ],
    ids=["cni-args", "netns-surrogate", "netns-nul", "capability-args"],
)
async def test_the_engine_refuses_before_any_plugin_runs(tmp_path: Path, rt: RuntimeConf) -> None:
    executor = RecordingExecutor()
    engine = CNIEngine([], cache_dir=str(tmp_path), executor=executor)
    for verb in (engine.add_network_list, engine.check_network_list, engine.del_network_list):
        with pytest.raises(InvalidArgument):
            await verb(NET, rt)
    assert executor.commands == []
    assert await engine.get_cached_attachments() == []


def _pod(net: Sandbox, **kw: Any) -> PodNetwork:
    fields: dict[str, Any] = {
        "name": "p1",
        "namespace": "ns1",
        "id": f"{net.prefix}-p1",
        "uid": "uid-p1",
        "netns": net.netns("p1"),
        "networks": [NetAttachment("neta")],
    }
    fields.update(kw)
    return PodNetwork(**fields)


@pytest.mark.privileged
@pytest.mark.parametrize(
    "field",
    ["name", "namespace", "uid", "annotations", "aliases"],
)
async def test_set_up_refuses_before_any_plugin_runs_and_gc_goes_on(
    net: Sandbox, dirs: dict[str, Path], field: str
) -> None:
    fake = FakePlugin(dirs["bin"], "fa")
    write_conflist(
        dirs["conf"],
        "neta",
        [
            {
                "type": "fa",
                "capabilities": {"aliases": True, "io.kubernetes.cri.pod-annotations": True},
            }
        ],
    )
    if field == "annotations":
        bad = _pod(net, runtime_config={"neta": RuntimeConfig(pod_annotations={"a": BAD})})
    elif field == "aliases":
        bad = _pod(net, aliases={"neta": [BAD]})
    else:
        bad = _pod(net, **{field: BAD})
    async with CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), watch=False
    ) as cni:
        with pytest.raises(InvalidArgument):
            await cni.set_up_pod(bad)
        assert verbs(fake) == []
        # Passed among the valid pods, it must not keep GC from the networks.
        await cni.gc([bad])
        assert verbs(fake) == ["GC"]


def decoder_limit() -> int:
    """The deepest nested JSON list the decoder takes, in this thread."""
    low, high = 1, 1_000_000
    while low < high:
        depth = (low + high + 1) // 2
        try:
            msgspec.json.decode(b"[" * depth + b"]" * depth)
        except (msgspec.DecodeError, RecursionError):
            high = depth - 1
        else:
            low = depth
    return low


def verbs(fake: FakePlugin) -> list[str]:
    """The commands a pod operation sent (VERSION probes belong to configuration loads)."""
    return [c for c in fake.commands() if c != "VERSION"]


async def test_a_configuration_nested_to_the_decoders_limit_hides_nothing(
    tmp_path: Path,
) -> None:
    """A .conf that decodes, but is two levels too deep once wrapped in a list (the depth
    depends on the stack at the call), is one invalid file, never a RecursionError that takes
    the directory down."""
    # Where the decoder gives up moves with the Python: about 1000 levels on 3.11 (the
    # recursion limit), 1500 on 3.12 and 10000 on 3.13 (limits of C code's own).
    limit = decoder_limit()
    depths = range(max(limit - 400, 2), limit + 100)
    for depth in depths:
        nested = "[" * depth + "]" * depth
        body = f'{{"cniVersion":"1.0.0","name":"deep{depth}","type":"x","a":{nested}}}'
        (tmp_path / f"{depth}.conf").write_text(body)
    (tmp_path / "zz.conf").write_text('{"cniVersion":"1.0.0","name":"ok","type":"x"}')
    loaded = await load_config_dir(str(tmp_path))
    names = {n.name for n in loaded.networks}
    assert "ok" in names
    assert len(names) + len(loaded.invalid) == len(depths) + 1
    assert all(isinstance(error, ConfigError) for _, error in loaded.invalid)
    # The window where decoding works and up-conversion does not, found and handled:
    reasons = [str(error) for _, error in loaded.invalid]
    assert any("nested too deeply to make a list of" in reason for reason in reasons)
