"""The cni-async command line at cnitool's level: argument shapes, options, plugin stderr,
JSON output, errors that name the file, STATUS gating and bench; run as a real process (the
installed console script) against fake plugins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cni_async import __version__

from ..support.cli import cli_command, cli_env, run_cli
from ..support.plugins import FakePlugin, write_conflist

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(dirs: dict[str, Path]) -> FakePlugin:
    write_conflist(dirs["conf"], "net1", [{"type": "fa"}])
    return FakePlugin(dirs["bin"], "fa")


def cached(dirs: dict[str, Path]) -> list[tuple[str, str]]:
    """``(container ID, ifname)`` of every cache entry."""
    results = dirs["cache"] / "results"
    if not results.exists():
        return []
    entries = [json.loads(p.read_text()) for p in results.iterdir()]
    return sorted((e["containerId"], e["ifName"]) for e in entries)


def ok(out: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert out.returncode == 0, out.stderr
    return out


# -- 1. cnitool's argument shapes for status and gc ------------------------------------------


def test_status_takes_cnitools_netns_argument(dirs: dict[str, Path], fake: FakePlugin) -> None:
    out = ok(run_cli(dirs, "status", "net1", "/run/netns/whatever"))
    assert out.stdout == "net1: ready\n"
    [call] = fake.calls("STATUS")
    assert call["env"]["CNI_NETNS"] == ""  # accepted, not used: STATUS is per network
    assert ok(run_cli(dirs, "status", "net1")).stdout == "net1: ready\n"
    assert len(fake.calls("STATUS")) == 2


def test_gc_with_netns_collects_that_namespace_only(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    ok(run_cli(dirs, "add", "net1", "/run/netns/a"))
    ok(run_cli(dirs, "add", "net1", "/run/netns/b"))
    ok(run_cli(dirs, "-i", "net1", "add", "net1", "/run/netns/a"))
    cid_a, cid_b, _ = (c["env"]["CNI_CONTAINERID"] for c in fake.calls("ADD"))
    assert cached(dirs) == sorted([(cid_a, "eth0"), (cid_a, "net1"), (cid_b, "eth0")])

    out = ok(run_cli(dirs, "gc", "net1", "/run/netns/a", "--json"))
    report: dict[str, Any] = json.loads(out.stdout)
    assert sorted((r["containerID"], r["ifname"]) for r in report["removed"]) == [
        (cid_a, "eth0"),
        (cid_a, "net1"),
    ]
    # exactly NETNS's attachments, and no GC verb: a valid list built from this cache would
    # free whatever another runtime attached meanwhile
    assert report["gcSent"] is False
    assert {c["env"]["CNI_CONTAINERID"] for c in fake.calls("DEL")} == {cid_a}
    assert fake.calls("GC") == []
    assert cached(dirs) == [(cid_b, "eth0")]

    # without NETNS, as before (and as cnitool): everything is stale, GC gets no list
    out = ok(run_cli(dirs, "gc", "net1"))
    assert out.stdout.startswith(f"net1: removed 1 cached attachment(s) {cid_b}/eth0;")
    [gc] = fake.stdins("GC")
    assert "cni.dev/valid-attachments" not in gc
    assert cached(dirs) == []


def test_relative_gc_netns_is_made_absolute(
    dirs: dict[str, Path], fake: FakePlugin, tmp_path: Path
) -> None:
    ok(run_cli(dirs, "add", "net1", str(tmp_path / "ns")))
    ok(run_cli(dirs, "gc", "net1", "ns", cwd=str(tmp_path)))
    assert len(fake.calls("DEL")) == 1 and cached(dirs) == []


# -- 2. -i/--ifname, --version, -v and -vv ---------------------------------------------------


def test_ifname_option_as_cnitool(dirs: dict[str, Path], fake: FakePlugin) -> None:
    ok(run_cli(dirs, "add", "net1", "/run/netns/a"))
    ok(run_cli(dirs, "add", "net1", "/run/netns/b", CNI_IFNAME="net7"))
    ok(run_cli(dirs, "-i", "net5", "add", "net1", "/run/netns/c", CNI_IFNAME="net7"))
    ok(run_cli(dirs, "--ifname=net6", "add", "net1", "/run/netns/d"))
    ifnames = [c["env"]["CNI_IFNAME"] for c in fake.calls("ADD")]
    assert ifnames == ["eth0", "net7", "net5", "net6"]
    ok(run_cli(dirs, "--ifname", "net5", "check", "net1", "/run/netns/c"))
    ok(run_cli(dirs, "-i", "net5", "del", "net1", "/run/netns/c"))
    assert [c["env"]["CNI_IFNAME"] for c in fake.calls("CHECK") + fake.calls("DEL")] == [
        "net5",
        "net5",
    ]
    assert sorted(i for _, i in cached(dirs)) == ["eth0", "net6", "net7"]
    # a global option: before the verb
    assert run_cli(dirs, "add", "net1", "/run/netns/e", "-i", "net5").returncode == 2


def test_version() -> None:
    out = ok(run_cli(None, "--version"))
    assert out.stdout == f"cni-async {__version__}\n"


def test_verbosity(dirs: dict[str, Path], fake: FakePlugin) -> None:
    quiet = ok(run_cli(dirs, "add", "net1", "/run/netns/a"))
    assert quiet.stderr == ""
    info = ok(run_cli(dirs, "-v", "check", "net1", "/run/netns/a"))
    assert "INFO cni_async.cli: network net1 (cniVersion 1.1.0, plugins fa)" in info.stderr
    assert "DEBUG" not in info.stderr
    debug = ok(run_cli(dirs, "-vv", "del", "net1", "/run/netns/a"))
    assert "INFO cni_async.cli:" in debug.stderr
    assert "DEBUG cni_async.engine: DEL fa on net1 took" in debug.stderr
    assert json.loads(quiet.stdout)["ips"]  # logging never goes to stdout


# -- 3. plugin stderr ------------------------------------------------------------------------


def test_plugin_stderr_is_shown(dirs: dict[str, Path], fake: FakePlugin) -> None:
    fake.on("ADD", stderr="fa: a note from the plugin\n")
    added = ok(run_cli(dirs, "add", "net1", "/run/netns/a"))
    assert "fa: a note from the plugin\n" in added.stderr
    assert "a note" not in added.stdout and json.loads(added.stdout)["ips"]
    # on failure too, where the CNI error on stdout does not include it
    fake.on("DEL", stderr="fa: why it failed", stdout={"code": 11, "msg": "busy"}, exit=1)
    failed = run_cli(dirs, "del", "net1", "/run/netns/a")
    assert failed.returncode == 1
    assert "fa: why it failed\n" in failed.stderr and "busy" in failed.stderr
    assert "Traceback" not in failed.stderr


# -- 4. --json on every verb -----------------------------------------------------------------


def test_json_on_every_verb(dirs: dict[str, Path], fake: FakePlugin) -> None:
    def as_json(*args: str) -> Any:
        return json.loads(ok(run_cli(dirs, *args, "--json")).stdout)

    assert as_json("networks")["default"] == "net1"
    assert as_json("add", "net1", "/run/netns/a")["ips"][0]["address"] == "10.99.0.2/24"
    check = as_json("check", "net1", "/run/netns/a")
    assert check["checked"] is True and check["ifname"] == "eth0"
    assert check["containerID"].startswith("cnitool-") and check["netns"] == "/run/netns/a"
    assert check["prevResult"]["ips"][0]["address"] == "10.99.0.2/24"
    assert as_json("status", "net1") == {"network": "net1", "status": "ready"}
    deleted = as_json("del", "net1", "/run/netns/a")
    assert deleted["deleted"] is True and deleted["network"] == "net1"
    gc = as_json("gc", "net1")
    assert gc["removed"] == [] and gc["gcSent"] is True and gc["netns"] is None
    # pod: --json is accepted (the namespace does not exist: a CNI error, not a usage error)
    pod = run_cli(dirs, "pod", "status", "ns", "web", "id1", "/run/netns/none", "--json")
    assert pod.returncode == 1, pod.stderr
    with subprocess.Popen(
        [*cli_command(), "watch", "--json"], stdout=subprocess.PIPE, text=True, env=cli_env(dirs)
    ) as proc:
        try:
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "NetworkAdded"
        finally:
            proc.terminate()


# -- 5. invalid files and a missing directory ------------------------------------------------


def test_invalid_network_names_its_file_and_reason(dirs: dict[str, Path], fake: FakePlugin) -> None:
    broken = write_conflist(dirs["conf"], "broken", [{"capabilities": {}}])
    out = run_cli(dirs, "add", "broken", "/run/netns/a")
    assert out.returncode == 1
    assert f"{broken}: failed to parse plugin config 0: missing 'type'" in out.stderr
    assert "no net configuration" not in out.stderr and "Traceback" not in out.stderr
    # a single-plugin file without a name is named after its file
    (dirs["conf"] / "solo.conf").write_text('{"cniVersion": "1.0.0", "type": 5}')
    out = run_cli(dirs, "check", "solo.conf", "/run/netns/a")
    assert out.returncode == 1 and str(dirs["conf"] / "solo.conf") in out.stderr
    assert "invalid plugin configuration" in out.stderr
    assert fake.calls() == [] and list(dirs["cache"].iterdir()) == []


def test_unreadable_files_are_named_as_possible_sources(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    (dirs["conf"] / "50-bad.conflist").write_text("{")
    os.mkfifo(dirs["conf"] / "60-fifo.conflist")  # must neither hang nor be read
    out = run_cli(dirs, "status", "other")
    assert out.returncode == 1
    assert 'no valid net configuration with name "other"' in out.stderr
    assert f"{dirs['conf'] / '50-bad.conflist'}: invalid JSON" in out.stderr
    assert f"{dirs['conf'] / '60-fifo.conflist'}: not a regular file" in out.stderr
    # a file whose (valid) name is another network's is not blamed
    (dirs["conf"] / "50-bad.conflist").unlink()
    (dirs["conf"] / "60-fifo.conflist").unlink()
    write_conflist(dirs["conf"], "third", [{"capabilities": {}}])
    out = run_cli(dirs, "status", "other")
    assert out.returncode == 1 and 'no net configuration with name "other"' in out.stderr
    assert "third" not in out.stderr


def test_missing_configuration_directory(dirs: dict[str, Path], fake: FakePlugin) -> None:
    missing = str(dirs["conf"] / "nope")
    for args in (
        ("networks",),
        ("networks", "--json"),
        ("add", "net1", "/run/netns/a"),
        ("status", "net1"),
        ("gc", "net1"),
        ("pod", "add", "ns", "web", "id1", "/run/netns/a"),
    ):
        out = run_cli(dirs, *args, NETCONFPATH=missing)
        assert out.returncode == 1, args
        assert f"configuration directory {missing} does not exist" in out.stderr, args
        assert out.stdout == "", args
    assert fake.calls() == []


# -- 6. help texts ---------------------------------------------------------------------------


def test_help_texts_match_the_verbs() -> None:
    top = ok(run_cli(None, "--help")).stdout
    for text in ("status|gc NETWORK [NETNS]", "-i IFNAME", "--version", "--verbose"):
        assert text in top
    pod = ok(run_cli(None, "pod", "--help")).stdout
    assert "set up, check or tear down" not in pod
    assert "add sets it up" in pod and "status CHECKs" in pod and "del tears it" in pod
    status = ok(run_cli(None, "status", "--help")).stdout
    assert "NETWORK [NETNS]" in status and "skipped" in status
    gc = " ".join(ok(run_cli(None, "gc", "--help")).stdout.split())
    assert "NETWORK [NETNS]" in gc and "and nothing else; no GC is sent" in gc
    for verb in ("add", "check", "del", "status", "gc", "networks", "watch", "pod"):
        assert "--json" in ok(run_cli(None, verb, "--help")).stdout, verb


# -- 7. STATUS only where the versions allow it ----------------------------------------------


def test_status_not_sent_when_plugins_are_behind(dirs: dict[str, Path], fake: FakePlugin) -> None:
    """Debian 12's plugins speak up to 1.0.0: a 1.1.0 list of them gets no STATUS (it would
    only fail), but it is not ready either, since no ADD could work."""
    write_conflist(dirs["conf"], "behind", [{"type": "fa"}, {"type": "fb"}])
    old = FakePlugin(dirs["bin"], "fb").on("VERSION", versions=["0.3.1", "0.4.0", "1.0.0"])
    old.on("STATUS", stdout={"code": 4, "msg": "unknown CNI_COMMAND: STATUS"}, exit=1)
    out = run_cli(dirs, "status", "behind")
    assert out.returncode == 1, out.stderr
    assert out.stdout.startswith("behind: STATUS not sent: ")
    assert "fb supports up to 1.0.0" in out.stdout and "fa" not in out.stdout
    report = json.loads(run_cli(dirs, "status", "behind", "--json").stdout)
    assert report["status"] == "unusable" and "fb supports up to 1.0.0" in report["reason"]
    assert old.calls("STATUS") == [] and fake.calls("STATUS") == []


def test_status_skipped_below_1_1_0(dirs: dict[str, Path], fake: FakePlugin) -> None:
    write_conflist(dirs["conf"], "older", [{"type": "fa"}], version="1.0.0")
    out = ok(run_cli(dirs, "status", "older"))
    assert out.stdout.startswith("older: STATUS skipped: the network's cniVersion is 1.0.0")
    assert "1.1.0" in out.stdout
    assert fake.calls("STATUS") == []
    fake.on("STATUS", stdout={"code": 50, "msg": "no addresses left"}, exit=1)
    refused = run_cli(dirs, "status", "net1")  # a 1.1.0 network still gets STATUS
    assert refused.returncode == 1 and "no addresses left" in refused.stderr


# -- 8. bench only from a source checkout ----------------------------------------------------


def test_bench_offered_from_the_checkout() -> None:
    assert (REPO / "benchmarks" / "churn.py").is_file()
    assert "bench" in ok(run_cli(None, "--help")).stdout
    assert "--concurrency" in ok(run_cli(None, "bench", "--help")).stdout
    assert "--concurrency" in ok(run_cli(None, "-v", "bench", "--help")).stdout


def test_bench_not_offered_when_installed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "cni_async", site / "cni_async", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = cli_env(None, PYTHONPATH=str(site))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    where = ok(run("-c", "import cni_async; print(cni_async.__file__)")).stdout.strip()
    assert where == str(site / "cni_async" / "__init__.py")
    assert "bench" not in ok(run("-m", "cni_async", "--help")).stdout
    refused = run("-m", "cni_async", "bench", "--help")
    assert refused.returncode == 2 and "invalid choice: 'bench'" in refused.stderr
    assert "Traceback" not in refused.stderr


# -- hostile input never ends in a traceback --------------------------------------------------


def test_a_config_nested_too_deep_to_name_is_an_error_not_a_traceback(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    (dirs["conf"] / "50-deep.conflist").write_text("[" * 200_000)
    out = run_cli(dirs, "status", "missing")
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "50-deep.conflist" in out.stderr


def test_an_undecodable_netns_is_an_error_not_a_traceback(
    dirs: dict[str, Path], fake: FakePlugin
) -> None:
    netns = os.fsdecode(b"/run/netns/\xff")
    for verb in ("add", "del", "gc"):
        out = run_cli(dirs, verb, "net1", netns)
        assert "Traceback" not in out.stderr, out.stderr
        assert out.returncode in (0, 1), out.stderr
    assert fake.calls("ADD") == []  # refused before any plugin ran
