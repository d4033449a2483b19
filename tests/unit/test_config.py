from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_async import (
    ConfigDirectory,
    ConfigError,
    NetworkConfigList,
    NetworkNotFound,
    PluginConfig,
    VersionError,
    conflist_from_plugin,
    load_config_dir,
    load_config_file,
    load_conflist_file,
    parse_conflist,
    parse_plugin_config,
)
from cni_async._testing import confload_module, gc_stdin, parse_version, plugin_stdin, status_stdin

PATH = "/etc/cni/net.d/10-test.conflist"


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def conflist(**fields: Any) -> bytes:
    doc: dict[str, Any] = {"name": "net", "cniVersion": "1.0.0", "plugins": [{"type": "bridge"}]}
    doc.update(fields)
    return dumps({k: v for k, v in doc.items() if v is not ...})


def expect_error(parse: Callable[..., object], data: bytes, reason: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(data, path=PATH)
    exc = info.value
    assert exc.path == PATH
    assert str(exc).startswith(f"{PATH}: ")
    assert reason in exc.reason, exc.reason
    return exc


def write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(obj if isinstance(obj, bytes) else dumps(obj))
    return path


def stdin_of(data: bytes) -> dict[str, Any]:
    result = json.loads(data)
    assert isinstance(result, dict)
    return result


# --- parse_conflist ---------------------------------------------------------------------------


def test_parse_conflist_fields() -> None:
    data = b'{"name": "net", "cniVersion": "0.4.0", "extra": 1,\n "plugins": [\n'
    data += b'  {"type": "host-local", "subnet": "10.0.0.1/24"}, {"type": "portmap",'
    data += b' "capabilities": {"portMappings": true}}]}'
    netlist = parse_conflist(data, path=PATH)
    assert netlist.name == "net"
    assert netlist.cni_version == "0.4.0"
    assert netlist.path == PATH
    assert netlist.bytes is data
    assert (netlist.disable_check, netlist.disable_gc, netlist.load_only_inlined_plugins) == (
        False,
        False,
        False,
    )
    first, second = netlist.plugins
    assert first.bytes == b'{"subnet":"10.0.0.1/24","type":"host-local"}'
    assert first.config == {"type": "host-local", "subnet": "10.0.0.1/24"}
    assert (first.type, first.name, first.cni_version, first.path) == ("host-local", "", "", PATH)
    assert second.capabilities == {"portMappings": True}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b'{"name": "x"} trailing', "invalid JSON"),
        (b'{"name": "\xff"}', "invalid JSON"),
        (b"[]", "invalid JSON: Expected `object`, got `array`"),
        (b"null", "invalid JSON"),
        (conflist(name=...), "no name"),
        (conflist(name=None), "invalid name type null"),
        (conflist(name=3), "invalid name type number"),
        (conflist(name=["a"]), "invalid name type array"),
        (conflist(cniVersion=1), "invalid cniVersion type number"),
        (conflist(cniVersion=None), "invalid cniVersion type null"),
        (conflist(cniVersions="1.0.0"), "invalid type for cniVersions: string"),
        (conflist(cniVersions=None), "invalid type for cniVersions: null"),
        (conflist(cniVersions=["1.0.0", 1]), "invalid type for cniVersions index 1: number"),
        (conflist(cniVersions=["1.1.0", "0.4.0", "1.0.f"]), "invalid cniVersions entry '1.0.f'"),
        (conflist(cniVersion="bogus", cniVersions=["1.0.0"]), "invalid cniVersion 'bogus'"),
        (conflist(disableCheck="Maybe"), "invalid value 'maybe' for disableCheck"),
        (conflist(disableCheck=1), "invalid type number for disableCheck"),
        (conflist(disableGC="yes"), "invalid value 'yes' for disableGC"),
        (conflist(disableGC=None), "invalid type null for disableGC"),
        (conflist(loadOnlyInlinedPlugins="1"), "invalid value '1' for loadOnlyInlinedPlugins"),
        (conflist(loadOnlyInlinedPlugins=[]), "invalid type array for loadOnlyInlinedPlugins"),
        (conflist(plugins=..., loadOnlyInlinedPlugins=True), "is true, and no 'plugins' key"),
        (conflist(plugins=None), "invalid 'plugins' type null"),
        (conflist(plugins={"type": "x"}), "invalid 'plugins' type object"),
        (conflist(plugins=[]), "no plugins in list"),
        (conflist(plugins=[{}]), "failed to parse plugin config 0: missing 'type'"),
        (conflist(plugins=[{"type": "a"}, 3]), "failed to parse plugin config 1: invalid plugin"),
        (conflist(plugins=[{"type": 3}]), "failed to parse plugin config 0: invalid plugin"),
        (conflist(plugins=[{"Type": "bridge"}]), "missing 'type'"),
    ],
)
def test_parse_conflist_errors(data: bytes, reason: str) -> None:
    expect_error(parse_conflist, data, reason)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"cniVersion": 1, "plugins": 1}, "no name"),
        ({"name": 1, "cniVersion": 1}, "invalid name type"),
        ({"name": "x", "cniVersion": 1, "cniVersions": 1}, "invalid cniVersion type"),
        ({"name": "x", "cniVersions": 1, "disableCheck": 1}, "invalid type for cniVersions"),
        ({"name": "x", "disableGC": 1, "disableCheck": 1}, "for disableCheck"),
        ({"name": "x", "loadOnlyInlinedPlugins": 1, "disableGC": 1}, "for disableGC"),
        ({"name": "x", "plugins": 1, "loadOnlyInlinedPlugins": 1}, "loadOnlyInlinedPlugins"),
    ],
)
def test_parse_conflist_error_order(doc: dict[str, Any], reason: str) -> None:
    expect_error(parse_conflist, dumps(doc), reason)


def test_parse_conflist_error_without_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_conflist(b"{}")
    assert info.value.path is None
    assert str(info.value) == "no name"


def test_parse_conflist_lenient_cases() -> None:
    empty_name = parse_conflist(conflist(name=""))
    assert empty_name.name == ""
    no_plugins = parse_conflist(conflist(plugins=...))
    assert no_plugins.plugins == ()
    assert parse_conflist(conflist(cniVersion=...)).cni_version == ""
    # Without cniVersions the version is not validated, and newer versions are kept.
    assert parse_conflist(conflist(cniVersion="garbage")).cni_version == "garbage"


def test_parse_conflist_is_case_sensitive() -> None:
    netlist = parse_conflist(dumps({"name": "x", "Plugins": [{"type": "a"}], "DisableCheck": 1}))
    assert netlist.plugins == ()
    assert not netlist.disable_check


@pytest.mark.parametrize("key", ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("TRUE", True), ("fAlSe", False), (..., False)],
)
def test_parse_conflist_bools(key: str, value: Any, expected: bool) -> None:
    netlist = parse_conflist(conflist(**{key: value}))
    attrs = {
        "disableCheck": "disable_check",
        "disableGC": "disable_gc",
        "loadOnlyInlinedPlugins": "load_only_inlined_plugins",
    }
    for other, attr in attrs.items():
        assert getattr(netlist, attr) is (expected if other == key else False)


@pytest.mark.parametrize(
    ("cni_version", "cni_versions", "expected"),
    [
        (..., ["1.1.0", "0.4.0", "1.0.0"], "1.1.0"),
        (..., ["99.0.0", "1.1.0", "0.4.0", "1.0.0"], "1.1.0"),
        ("1.2.3", ..., "1.2.3"),
        ("1.0.0", ["0.1.0", "0.4.0"], "1.0.0"),
        ("0.3.1", ["0.4.0", "99.0.0"], "0.4.0"),
        ("99.0.0", ["99.1.0"], "99.0.0"),
        (..., [], ""),
        ("", [], ""),
    ],
)
def test_cni_versions_negotiation(cni_version: Any, cni_versions: Any, expected: str) -> None:
    data = conflist(cniVersion=cni_version, cniVersions=cni_versions)
    assert parse_conflist(data).cni_version == expected


# --- parse_plugin_config ----------------------------------------------------------------------


def test_parse_plugin_config_fields() -> None:
    data = b'{"type": "bridge", "name": "p", "cniVersion": "0.3.1", "unknown": {"a": [1]},\n'
    data += b' "capabilities": {"portMappings": true, "ips": false}}'
    conf = parse_plugin_config(data, path=PATH)
    assert (conf.type, conf.name, conf.cni_version) == ("bridge", "p", "0.3.1")
    assert conf.capabilities == {"portMappings": True, "ips": False}
    assert conf.bytes is data
    assert conf.config == json.loads(data)
    assert conf.path == PATH


def test_parse_plugin_config_accepts_null_known_fields() -> None:
    keys = ["name", "cniVersion", "capabilities", "ipam", "dns", "prevResult"]
    doc: dict[str, Any] = dict.fromkeys([*keys, "cni.dev/valid-attachments"])
    conf = parse_plugin_config(dumps({"type": "x", **doc}))
    assert (conf.name, conf.cni_version, dict(conf.capabilities)) == ("", "", {})


def test_parse_plugin_config_accepts_typed_known_fields() -> None:
    doc = {
        "type": "x",
        "ipam": {"type": "host-local", "ranges": []},
        "dns": {"nameservers": ["1.1.1.1"], "domain": "d", "search": ["s"], "options": ["o"]},
        "prevResult": {"cniVersion": "1.0.0"},
        "cni.dev/valid-attachments": [{"containerID": "c", "ifname": "eth0"}],
    }
    assert parse_plugin_config(dumps(doc)).config == doc


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"{", "invalid JSON"),
        (b"", "invalid JSON"),
        (b'"\xc3"', "invalid JSON"),
        (b"[]", "expected an object, got array"),
        (b"1", "expected an object, got number"),
        ({}, "missing 'type'"),
        ({"type": ""}, "missing 'type'"),
        ({"type": None}, "missing 'type'"),
        ({"TYPE": "bridge"}, "missing 'type'"),
        ({"type": 3}, "`$.type`"),
        ({"type": "x", "name": 3}, "`$.name`"),
        ({"type": "x", "cniVersion": 1.5}, "`$.cniVersion`"),
        ({"type": "x", "capabilities": {"a": 1}}, "`$.capabilities[...]`"),
        ({"type": "x", "capabilities": []}, "`$.capabilities`"),
        ({"type": "x", "ipam": "host-local"}, "`$.ipam`"),
        ({"type": "x", "ipam": {"type": 1}}, "`$.ipam.type`"),
        ({"type": "x", "dns": {"nameservers": "8.8.8.8"}}, "`$.dns.nameservers`"),
        ({"type": "x", "prevResult": []}, "`$.prevResult`"),
        ({"type": "x", "cni.dev/valid-attachments": {}}, "`$.cni.dev/valid-attachments`"),
        ({"type": "x", "cni.dev/valid-attachments": [{"ifname": 1}]}, "ifname"),
    ],
)
def test_parse_plugin_config_errors(doc: Any, reason: str) -> None:
    expect_error(parse_plugin_config, doc if isinstance(doc, bytes) else dumps(doc), reason)


# --- up-conversion ----------------------------------------------------------------------------


def test_conflist_from_plugin() -> None:
    data = b'{"type": "bridge", "name": "mynet", "cniVersion": "0.4.0", "disableCheck": true}'
    conf = parse_plugin_config(data, path="/x/10.conf")
    netlist = conflist_from_plugin(conf)
    assert netlist.bytes == (
        b'{"cniVersion":"0.4.0","name":"mynet","plugins":'
        b'[{"cniVersion":"0.4.0","disableCheck":true,"name":"mynet","type":"bridge"}]}'
    )
    assert (netlist.name, netlist.cni_version, netlist.path) == ("mynet", "0.4.0", "/x/10.conf")
    assert netlist.plugins == (conf,)
    assert not netlist.disable_check  # list options inside the plugin object are not hoisted


def test_conflist_from_plugin_without_version_or_name() -> None:
    netlist = conflist_from_plugin(parse_plugin_config(b'{"type": "loopback"}'))
    assert netlist.bytes == b'{"cniVersion":"","name":"","plugins":[{"type":"loopback"}]}'
    assert (netlist.name, netlist.cni_version) == ("", "")
    again = parse_conflist(netlist.bytes)
    assert (again.name, again.cni_version, again.plugins[0].config) == (
        "",
        "",
        {"type": "loopback"},
    )


# --- loading files ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_load_conflist_file_with_plugin_dir(tmp_path: Path) -> None:
    main = write(tmp_path / "10-net.conflist", conflist(name="net"))
    sub = tmp_path / "net"
    write(sub / "b.conf", b'{"type": "b"}')
    write(sub / "a.conf", b'{"type": "a",  "x": 1}')
    write(sub / "c.json", {"type": "ignored"})
    write(sub / "d.conflist", {"type": "ignored"})
    write(sub / "e.conf.bak", {"type": "ignored"})
    (sub / "dir.conf").mkdir()
    netlist = await load_conflist_file(str(main))
    assert [p.type for p in netlist.plugins] == ["bridge", "a", "b"]
    assert netlist.plugins[1].bytes == b'{"type": "a",  "x": 1}'
    assert netlist.plugins[1].path == str(sub / "a.conf")
    assert netlist.bytes == main.read_bytes()
    assert netlist.path == str(main)


@pytest.mark.anyio
async def test_load_conflist_file_plugins_only_from_dir(tmp_path: Path) -> None:
    main = write(tmp_path / "10.conflist", conflist(name="net", plugins=...))
    write(tmp_path / "net" / "a.conf", {"type": "a"})
    assert [p.type for p in (await load_conflist_file(str(main))).plugins] == ["a"]


@pytest.mark.anyio
async def test_load_conflist_file_only_inlined(tmp_path: Path) -> None:
    main = write(tmp_path / "10.conflist", conflist(name="..", loadOnlyInlinedPlugins="True"))
    write(tmp_path / "net" / "a.conf", {"type": "a"})
    netlist = await load_conflist_file(str(main))
    assert [p.type for p in netlist.plugins] == ["bridge"]


@pytest.mark.anyio
async def test_load_conflist_file_no_plugins(tmp_path: Path) -> None:
    main = write(tmp_path / "10.conflist", conflist(plugins=...))
    (tmp_path / "net").mkdir()
    with pytest.raises(ConfigError, match="no plugin configs found") as info:
        await load_conflist_file(str(main))
    assert info.value.path == str(main)
    assert info.value.network == "net"


@pytest.mark.anyio
async def test_load_conflist_file_bad_plugin_in_dir(tmp_path: Path) -> None:
    main = write(tmp_path / "10.conflist", conflist())
    write(tmp_path / "net" / "a.conf", {"type": "a"})
    bad = write(tmp_path / "net" / "b.conf", {"name": "no-type"})
    with pytest.raises(ConfigError, match="missing 'type'") as info:
        await load_conflist_file(str(main))
    assert info.value.path == str(bad)
    assert str(bad) in str(info.value)
    assert info.value.network == "net"


@pytest.mark.anyio
async def test_load_conflist_file_plugin_dir_not_a_directory(tmp_path: Path) -> None:
    main = write(tmp_path / "10.conflist", conflist())
    write(tmp_path / "net", b"a file")
    with pytest.raises(ConfigError, match="failed to read plugin config files") as info:
        await load_conflist_file(str(main))
    assert info.value.path == str(tmp_path / "net")


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
async def test_load_conflist_file_unusable_directory_name(tmp_path: Path, name: str) -> None:
    main = write(tmp_path / "10.conflist", conflist(name=name))
    with pytest.raises(ConfigError, match="cannot name a plugin directory") as info:
        await load_conflist_file(str(main))
    assert info.value.path == str(main)


@pytest.mark.anyio
async def test_load_conflist_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conflist"
    with pytest.raises(ConfigError, match="error reading file") as info:
        await load_conflist_file(str(missing))
    assert info.value.path == str(missing)
    bad = write(tmp_path / "bad.conflist", b"{")
    with pytest.raises(ConfigError, match="invalid JSON") as info:
        await load_conflist_file(str(bad))
    assert str(info.value).startswith(f"{bad}: ")


@pytest.mark.anyio
@pytest.mark.parametrize("suffix", [".conf", ".json"])
async def test_load_config_file_single_conf(tmp_path: Path, suffix: str) -> None:
    unnamed = write(tmp_path / f"10-unnamed{suffix}", {"type": "bridge", "cniVersion": "0.3.1"})
    netlist = await load_config_file(str(unnamed))
    assert netlist.name == f"10-unnamed{suffix}"  # ocicni's path.Base: extension included
    assert netlist.bytes == (
        b'{"cniVersion":"0.3.1","name":"10-unnamed'
        + suffix.encode()
        + b'","plugins":[{"cniVersion":"0.3.1","type":"bridge"}]}'
    )
    assert netlist.plugins[0].name == ""
    assert netlist.path == str(unnamed)
    named = write(tmp_path / f"20-x{suffix}", {"type": "bridge", "name": "real"})
    assert (await load_config_file(str(named))).name == "real"


@pytest.mark.anyio
async def test_load_config_file_dispatch_and_errors(tmp_path: Path) -> None:
    listed = write(tmp_path / "10.conflist", conflist(loadOnlyInlinedPlugins=True))
    assert (await load_config_file(str(listed))).name == "net"
    other = write(tmp_path / "10.yaml", {"type": "bridge"})
    with pytest.raises(ConfigError, match=r"unsupported extension '\.yaml'") as info:
        await load_config_file(str(other))
    assert info.value.path == str(other)
    bad = write(tmp_path / "20.conf", {"name": "x"})
    with pytest.raises(ConfigError, match="missing 'type'") as info:
        await load_config_file(str(bad))
    assert info.value.path == str(bad)
    with pytest.raises(ConfigError, match="error reading file"):
        await load_config_file(str(tmp_path / "missing.conf"))


# --- loading a directory ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_load_config_dir_order_and_filtering(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside" / "target.txt", {"type": "t", "name": "linked"})
    conf_dir = tmp_path / "net.d"
    for name in ["a", "B", "_", "é", "z"]:
        write(conf_dir / f"{name}.conf", {"type": "t", "name": f"n-{name}"})
    write(conf_dir / "m.conflist", conflist(name="n-m", loadOnlyInlinedPlugins=True))
    write(conf_dir / "k.json", {"type": "t", "name": "n-k"})
    for ignored in ["x.CONF", "x.conf.bak", "README", "x.conflist~", "x.yaml"]:
        write(conf_dir / ignored, {"type": "t", "name": f"ignored {ignored}"})
    (conf_dir / "dir.conf").mkdir()
    (conf_dir / "y.conf").symlink_to(outside)
    loaded = await load_config_dir(str(conf_dir))
    names = [n.name for n in loaded.networks]
    assert names == ["n-B", "n-_", "n-a", "n-k", "n-m", "linked", "n-z", "n-é"]
    assert loaded.invalid == ()
    assert loaded.path == str(conf_dir)
    assert loaded.networks[5].path == str(conf_dir / "y.conf")
    default = loaded.default
    assert default is not None
    assert default.name == "n-B"
    assert loaded.get("n-k") is loaded.networks[3]
    assert loaded.get("nope") is None
    assert loaded.require("n-m") is loaded.networks[4]
    with pytest.raises(NetworkNotFound, match='no net configuration with name "nope"') as info:
        loaded.require("nope")
    assert info.value.path == str(conf_dir)


@pytest.mark.anyio
async def test_load_config_dir_bad_files_do_not_hide_good_ones(tmp_path: Path) -> None:
    write(tmp_path / "00-bad.conflist", b"{")
    write(tmp_path / "05-notype.conf", {"name": "x"})
    write(tmp_path / "10-good.conflist", conflist(name="good", loadOnlyInlinedPlugins=True))
    write(tmp_path / "15-empty.conflist", conflist(name="empty", plugins=...))
    (tmp_path / "20-dangling.conf").symlink_to(tmp_path / "missing")
    write(tmp_path / "30-good.conf", {"type": "bridge", "name": "good2"})
    loaded = await load_config_dir(str(tmp_path))
    assert [n.name for n in loaded.networks] == ["good", "good2"]
    bad = ["00-bad.conflist", "05-notype.conf", "15-empty.conflist", "20-dangling.conf"]
    assert [p for p, _ in loaded.invalid] == [str(tmp_path / n) for n in bad]
    for path, exc in loaded.invalid:
        assert exc.path == path
        assert str(exc).find(path) >= 0
    reasons = [exc.reason for _, exc in loaded.invalid]
    assert "invalid JSON" in reasons[0]
    assert reasons[1:3] == ["missing 'type'", "no plugin configs found"]
    assert "error reading file" in reasons[3]
    assert loaded.default is loaded.networks[0]


@pytest.mark.anyio
async def test_load_config_dir_bad_sub_plugin(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", conflist(name="net"))
    bad = write(tmp_path / "net" / "a.conf", b"[]")
    write(tmp_path / "20.conf", {"type": "bridge", "name": "other"})
    loaded = await load_config_dir(str(tmp_path))
    assert [n.name for n in loaded.networks] == ["other"]
    ((path, exc),) = loaded.invalid
    assert path == str(tmp_path / "10.conflist")
    assert exc.path == str(bad)


@pytest.mark.anyio
async def test_load_config_dir_duplicate_names(tmp_path: Path) -> None:
    first = write(tmp_path / "10-a.conflist", conflist(name="net", loadOnlyInlinedPlugins=True))
    write(tmp_path / "20-b.conf", {"type": "other", "name": "net"})
    write(tmp_path / "30-c.json", {"type": "third", "name": "net"})
    loaded = await load_config_dir(str(tmp_path))
    assert len(loaded.networks) == 1
    assert loaded.require("net").path == str(first)
    assert [p for p, _ in loaded.invalid] == [
        str(tmp_path / "20-b.conf"),
        str(tmp_path / "30-c.json"),
    ]
    for path, exc in loaded.invalid:
        assert exc.path == path
        assert exc.reason == f"duplicate network name 'net': already defined in {first}"


@pytest.mark.anyio
async def test_load_config_dir_sub_directories(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", conflist(name="one"))
    write(tmp_path / "one" / "a.conf", {"type": "a"})
    write(tmp_path / "20.conflist", conflist(name="two"))  # no sub-directory: still consulted
    write(tmp_path / "30.conflist", conflist(name="three", loadOnlyInlinedPlugins=True))
    write(tmp_path / "40.conflist", conflist(name="four", plugins=...))  # invalid, consulted
    write(tmp_path / "50.conf", {"type": "x", "name": "five"})
    loaded = await load_config_dir(str(tmp_path))
    assert loaded.sub_directories == tuple(str(tmp_path / n) for n in ["four", "one", "two"])
    assert [len(n.plugins) for n in loaded.networks] == [2, 1, 1, 1]


@pytest.mark.anyio
async def test_load_config_dir_missing_or_not_a_directory(tmp_path: Path) -> None:
    loaded = await load_config_dir(str(tmp_path / "missing"))
    assert loaded == ConfigDirectory(path=str(tmp_path / "missing"))
    assert (loaded.networks, loaded.invalid, loaded.sub_directories) == ((), (), ())
    assert loaded.default is None
    with pytest.raises(NetworkNotFound, match="no net configurations found"):
        loaded.require("net")
    afile = write(tmp_path / "file", b"")
    with pytest.raises(ConfigError, match="failed to read configuration directory") as info:
        await load_config_dir(str(afile))
    assert info.value.path == str(afile)


# --- stdin ------------------------------------------------------------------------------------


def make_list(
    plugin: dict[str, Any], *, name: str = "net", version: str = "1.1.0"
) -> NetworkConfigList:
    return parse_conflist(dumps({"name": name, "cniVersion": version, "plugins": [plugin]}))


def only_plugin(netlist: NetworkConfigList) -> PluginConfig:
    (plugin,) = netlist.plugins
    return plugin


def test_plugin_stdin_overrides_name_and_version() -> None:
    netlist = make_list({"type": "bridge", "name": "own", "cniVersion": "0.3.1"}, version="")
    out = plugin_stdin(netlist, only_plugin(netlist), prev_result=None, capability_args={})
    assert out == b'{"cniVersion":"","name":"net","type":"bridge"}'


def test_plugin_stdin_prev_result() -> None:
    static = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    netlist = make_list({"type": "bridge", "prevResult": static})
    plugin = only_plugin(netlist)
    assert (
        stdin_of(plugin_stdin(netlist, plugin, prev_result=None, capability_args={}))["prevResult"]
        == static
    )
    prev = MappingProxyType({"cniVersion": "1.1.0", "interfaces": [{"name": "eth0"}]})
    out = stdin_of(plugin_stdin(netlist, plugin, prev_result=prev, capability_args={}))
    assert out["prevResult"] == dict(prev)
    bare = make_list({"type": "bridge"})
    out = stdin_of(plugin_stdin(bare, only_plugin(bare), prev_result=None, capability_args={}))
    assert "prevResult" not in out
    assert plugin.config["prevResult"] == static  # the shared config is untouched


def test_plugin_stdin_runtime_config() -> None:
    caps = {"portMappings": True, "bandwidth": False, "ipRanges": True, "mac": True}
    config = {"type": "portmap", "capabilities": caps, "runtimeConfig": {"static": 1}}
    netlist = make_list(config)
    plugin = only_plugin(netlist)
    args = {"portMappings": [{"hostPort": 80}], "bandwidth": {"rate": 1}, "ips": ["10.0.0.1"]}
    out = stdin_of(plugin_stdin(netlist, plugin, prev_result=None, capability_args=args))
    assert out["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert out["capabilities"] == caps
    # A value of null is forwarded verbatim.
    out = stdin_of(plugin_stdin(netlist, plugin, prev_result=None, capability_args={"mac": None}))
    assert out["runtimeConfig"] == {"mac": None}
    # Nothing to forward: the configuration's runtimeConfig passes through.
    out = stdin_of(
        plugin_stdin(netlist, plugin, prev_result=None, capability_args={"bandwidth": 1})
    )
    assert out["runtimeConfig"] == {"static": 1}
    assert plugin.config["runtimeConfig"] == {"static": 1}
    bare = make_list({"type": "x", "capabilities": {"mac": True}})
    out = stdin_of(plugin_stdin(bare, only_plugin(bare), prev_result=None, capability_args={}))
    assert "runtimeConfig" not in out


def test_plugin_stdin_passes_everything_else_sorted() -> None:
    netlist = parse_conflist(
        b'{"name": "net", "cniVersion": "1.0.0", "plugins": [{"zeta": [3, {"b": 1, "a": 2}],'
        b' "type": "bridge", "args": {"cni": {"x": 1}}, "ipam": {"type": "host-local"},'
        b' "dns": {"nameservers": ["1.1.1.1"]}, "mtu": 123456789012345678901234567890,'
        b' "big": 9007199254740993, "f": 1.5}]}'
    )
    out = plugin_stdin(netlist, only_plugin(netlist), prev_result=None, capability_args={})
    assert out == (
        b'{"args":{"cni":{"x":1}},"big":9007199254740993,"cniVersion":"1.0.0",'
        b'"dns":{"nameservers":["1.1.1.1"]},"f":1.5,"ipam":{"type":"host-local"},'
        b'"mtu":123456789012345678901234567890,"name":"net","type":"bridge",'
        b'"zeta":[3,{"a":2,"b":1}]}'
    )


def test_plugin_stdin_from_single_conf_keeps_exact_integers() -> None:
    conf = parse_plugin_config(b'{"type": "x", "n": 18446744073709551617, "name": "p"}')
    netlist = conflist_from_plugin(conf)
    out = plugin_stdin(netlist, conf, prev_result=None, capability_args={})
    assert out == b'{"cniVersion":"","n":18446744073709551617,"name":"p","type":"x"}'
    assert b"18446744073709551617" in netlist.bytes


def test_plugin_stdin_rejects_unencodable_values() -> None:
    netlist = make_list({"type": "x", "capabilities": {"c": True}})
    with pytest.raises(TypeError):
        plugin_stdin(
            netlist, only_plugin(netlist), prev_result=None, capability_args={"c": object()}
        )


GC_CONF = {"type": "x", "capabilities": {"c": True}, "prevResult": {"a": 1}}


@pytest.mark.parametrize(
    ("attachments", "expected"),
    [
        (
            [("c1", "eth0"), ("c2", "net1")],
            [{"containerID": "c1", "ifname": "eth0"}, {"containerID": "c2", "ifname": "net1"}],
        ),
        ((), []),
        (None, None),
    ],
)
def test_gc_stdin(attachments: Any, expected: Any) -> None:
    netlist = make_list(GC_CONF, version="1.1.0")
    out = stdin_of(gc_stdin(netlist, only_plugin(netlist), attachments))
    assert out == {
        **GC_CONF,
        "name": "net",
        "cniVersion": "1.1.0",
        "cni.dev/valid-attachments": expected,
        "cni.dev/attachments": expected,
    }


def test_gc_stdin_exact_bytes_and_absent_keys() -> None:
    netlist = make_list({"type": "x"})
    plugin = only_plugin(netlist)
    assert gc_stdin(netlist, plugin, [("id", "eth0")]) == (
        b'{"cni.dev/attachments":[{"containerID":"id","ifname":"eth0"}],'
        b'"cni.dev/valid-attachments":[{"containerID":"id","ifname":"eth0"}],'
        b'"cniVersion":"1.1.0","name":"net","type":"x"}'
    )
    assert gc_stdin(netlist, plugin, None).count(b"null") == 2
    assert (
        gc_stdin(netlist, plugin, msgspec.UNSET)
        == b'{"cniVersion":"1.1.0","name":"net","type":"x"}'
    )


def test_status_stdin() -> None:
    netlist = make_list({"type": "x", "name": "own", "cniVersion": "0.4.0", "runtimeConfig": {}})
    assert status_stdin(netlist, only_plugin(netlist)) == (
        b'{"cniVersion":"1.1.0","name":"net","runtimeConfig":{},"type":"x"}'
    )


# --- property tests ---------------------------------------------------------------------------

KEYS = [
    "name", "cniVersion", "cniVersions", "disableCheck", "disableGC", "loadOnlyInlinedPlugins",
    "plugins", "type", "capabilities", "ipam", "dns", "prevResult", "cni.dev/valid-attachments",
    "containerID", "ifname", "nameservers",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["true", "FALSE", "1.0.0", "1.1.0", "99.0.0", "0.-1", "bridge", ""]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), children, max_size=6)
    ),
    max_leaves=30,
)


def only_config_errors(data: bytes) -> None:
    errors: list[ConfigError] = []
    for parse in (parse_conflist, parse_plugin_config):
        try:
            parsed = parse(data, path="/p")
        except ConfigError as exc:
            errors.append(exc)
            continue
        netlist = conflist_from_plugin(parsed) if isinstance(parsed, PluginConfig) else parsed
        for plugin in netlist.plugins:
            plugin_stdin(netlist, plugin, prev_result=None, capability_args={"a": 1})
    assert all(exc.path == "/p" and str(exc).startswith("/p: ") for exc in errors)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_only_raises_config_error(value: Any) -> None:
    only_config_errors(dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | json_values.map(dumps).map(lambda b: b[: len(b) // 2]))
def test_arbitrary_bytes_only_raise_config_error(data: bytes) -> None:
    only_config_errors(data)


def test_deep_nesting_is_a_config_error() -> None:
    deep = b'{"name": "x", "plugins": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    expect_error(parse_conflist, deep, "invalid JSON")
    expect_error(parse_plugin_config, b"[" * 100_000 + b"]" * 100_000, "invalid JSON")


def test_big_numbers_are_config_errors() -> None:
    expect_error(parse_conflist, b'{"name": "x", "plugins": [{"type": "a", "f": 1e400}]}', "JSON")


def test_versions_with_thousands_of_digits_are_version_errors() -> None:
    """int() refuses strings of over 4300 digits; Go's Atoi says out of range, or reads the
    leading zeros away."""
    with pytest.raises(VersionError, match="out of range"):
        parse_version("1." + "9" * 5000 + ".0")
    assert parse_version("1." + "0" * 5000 + "1.0") == (1, 1, 0)


@pytest.mark.anyio
async def test_a_directory_is_parsed_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of files took most of a second to parse: none of it runs on the loop."""
    for i in range(300):  # more than one worker-thread hop's worth
        (tmp_path / f"{i:03d}.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": f"n{i}", "plugins": [{"type": "x"}]})
        )
    (tmp_path / "zz.conf").write_text('{"cniVersion":"1.0.0","name":"single","type":"x"}')
    on_loop: list[bool] = []
    real = parse_conflist

    def parse(data: bytes, **kw: Any) -> Any:
        on_loop.append(threading.current_thread() is threading.main_thread())
        return real(data, **kw)

    monkeypatch.setattr(confload_module, "parse_conflist", parse)
    loaded = await load_config_dir(str(tmp_path))
    assert len(loaded.networks) == 301
    assert on_loop == [False] * 300  # every list parsed, none on the loop
