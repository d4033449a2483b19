"""The ``cni-async`` command line: cnitool's verbs and environment, plus a look at the config.

    cni-async [-i IFNAME] [-v|-vv] [--version] VERB ...
    cni-async networks                 what is loaded, the default, invalid files and why
    cni-async add|check|del NET NETNS  run a network on a namespace, as cnitool does
    cni-async status NET [NETNS]       readiness: STATUS to each plugin (cniVersion 1.1.0 and
                                       later; skipped, with the reason, before; not sent and
                                       exit 1 when a plugin does not support the version)
    cni-async gc NET [NETNS]           without NETNS: DEL every cached attachment of the network,
                                       then GC with no valid-attachments list (cnitool's gc);
                                       with NETNS: DEL only NETNS's cached attachments, no GC
    cni-async watch                    stream configuration events, one JSON object per line
    cni-async pod add|status|del NAMESPACE NAME ID NETNS [-networks a,b]
                                       a whole pod through CNIPlugin, with ocicnitool's arguments
                                       (of the environment, CNI_ARGS applies; CAP_ARGS and
                                       CNI_IFNAME do not)
    cni-async bench [ARGS...]          the pod-churn benchmark (benchmarks/churn.py's arguments;
                                       offered only from a source checkout)

Every verb takes ``--json``. ``-i``/``--ifname`` is cnitool's: the interface name for add, check
and del (default ``CNI_IFNAME``, else ``eth0``). ``-v`` logs the library's INFO messages to
stderr, ``-vv`` its DEBUG ones too. What a plugin writes to stderr is shown on stderr, as cnitool
shows it (cnitool lets plugins inherit its stderr; here it is shown once the plugin has exited).

Environment, as cnitool: ``NETCONFPATH`` (default ``/etc/cni/net.d``), ``CNI_PATH`` (``:``
separated, default ``/opt/cni/bin``), ``CAP_ARGS`` (a JSON object of capability arguments),
``CNI_ARGS`` (``K=V;K=V``), ``CNI_IFNAME`` (default ``eth0``), ``CNI_CACHE_DIR`` (default
``/var/lib/cni``); ocicnitool's ``CONF_PATH`` and ``BIN_PATH`` stand in for the first two when
those are not set. The container ID is cnitool's: ``cnitool-`` and the first 20 hex digits of
the SHA-512 of the namespace path. Exit status: 0 success, 1 a CNI error (its message on
stderr, no traceback), 2 a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
import msgspec

from ._cliargs import CHURN, bench_available, bench_index
from ._cliargs import parser as make_parser
from ._confdir.source import watch_config
from ._errors import CNIError, ConfigError, NetworkNotFound, VersionError
from ._files import read_regular_file
from ._json import decode_like_go
from ._libcni.cache import CacheEntry
from ._libcni.confload import ConfigDirectory, load_config_dir
from ._libcni.engine import CNIEngine
from ._libcni.exec import SpawnExecutor
from ._libcni.runtime import RuntimeConf
from ._pod.models import NetAttachment, NetResult, PodNetwork
from ._pod.namespaces import NetlinkNamespaces, usable_netns
from ._pod.plugin import CNIPlugin
from ._spec.netconf import NetworkConfigList
from ._spec.results import result_to_builtins
from ._spec.versions import parse_version, version_at_least_or_false

__all__ = ["main"]

logger = logging.getLogger("cni_async.cli")

_STATUS_VERSION = "1.1.0"


class _UsageError(Exception):
    """A bad argument or environment variable: exit status 2."""


class _Failure(Exception):
    """A failure found by the command line itself (not a CNIError): exit status 1."""


@dataclass(frozen=True)
class _Env:
    conf_dir: str
    bin_dirs: list[str]
    cache_dir: str | None
    ifname: str
    cap_args: dict[str, Any]
    args: tuple[tuple[str, str], ...]


def _environment(ifname: str | None) -> _Env:
    cap_args: Any = {}
    if os.environ.get("CAP_ARGS"):
        try:
            cap_args = json.loads(os.environ["CAP_ARGS"])
        except ValueError as exc:
            raise _UsageError(f"CAP_ARGS is not valid JSON: {exc}") from None
        if not isinstance(cap_args, dict):
            raise _UsageError("CAP_ARGS must be a JSON object")
    args: list[tuple[str, str]] = []
    raw_args = os.environ.get("CNI_ARGS", "")
    for pair in raw_args.split(";") if raw_args else ():
        key, sep, value = pair.partition("=")
        if not sep or not key or not value or "=" in value:  # as libcni's LoadArgs
            raise _UsageError(f"invalid CNI_ARGS pair {pair!r}: expected KEY=VALUE")
        args.append((key, value))
    return _Env(
        conf_dir=os.environ.get("NETCONFPATH") or os.environ.get("CONF_PATH", "/etc/cni/net.d"),
        bin_dirs=[
            d
            for d in (
                os.environ.get("CNI_PATH") or os.environ.get("BIN_PATH", "/opt/cni/bin")
            ).split(":")
            if d
        ],
        cache_dir=os.environ.get("CNI_CACHE_DIR") or None,
        # as cnitool: the -i flag, else CNI_IFNAME, else eth0
        ifname=ifname or os.environ.get("CNI_IFNAME") or "eth0",
        cap_args=cap_args,
        args=tuple(args),
    )


def _container_id(netns: str) -> str:
    # The path's bytes, as Go hashes them: an undecodable name must not end in a traceback.
    digest = hashlib.sha512(os.fsencode(os.path.abspath(netns))).hexdigest()
    return f"cnitool-{digest[:20]}"


def _print_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")


def _show_plugin_stderr(path: str, data: bytes) -> None:
    """What a plugin wrote to stderr, on ours (cnitool's plugins inherit its stderr)."""
    logger.debug("%s wrote %d bytes to stderr", path, len(data))
    if not data.endswith(b"\n"):
        data += b"\n"
    sys.stderr.flush()
    buffer = getattr(sys.stderr, "buffer", None)  # None when replaced by a text-only stream
    if buffer is None:
        sys.stderr.write(data.decode("utf-8", "replace"))
        sys.stderr.flush()
    else:
        buffer.write(data)
        buffer.flush()


def _require_conf_dir(conf_dir: str) -> None:
    if not os.path.exists(conf_dir):
        raise _Failure(
            f"configuration directory {conf_dir} does not exist "
            "(set NETCONFPATH to the directory of the network configuration files)"
        )


# -- the network asked for -------------------------------------------------------------------


async def _network(env: _Env, name: str) -> NetworkConfigList:
    directory = await load_config_dir(env.conf_dir)
    try:
        network = directory.require(name)
    except NetworkNotFound:
        raise _not_found(directory, name) from None
    logger.info(
        "network %s (cniVersion %s, plugins %s) from %s",
        network.name,
        network.cni_version or "-",
        " -> ".join(p.type for p in network.plugins),
        network.path,
    )
    return network


class _Named(msgspec.Struct):
    name: Any = None


_named: Final = msgspec.json.Decoder(_Named)


def _declared_name(path: str) -> str | None:
    """The network name an invalid file declares, or ``None`` when that cannot be told (it
    cannot be read, is not a JSON object, or its name is missing or not a string)."""
    try:
        name = decode_like_go(_named, read_regular_file(path)).name  # a FIFO must not hang
    except (OSError, msgspec.DecodeError):  # unreadable, not a JSON object, nested too deep
        return None
    if isinstance(name, str) and name:
        return name
    if name in (None, "") and not path.endswith(".conflist"):
        return os.path.basename(path)  # a single plugin file is named after its file
    return None  # a list without a name, or a name that is not a string


def _why(file: str, error: ConfigError) -> str:
    reason = error.reason if error.path in (None, file) else f"{error.path}: {error.reason}"
    return f"{file}: {reason}"


def _not_found(directory: ConfigDirectory, name: str) -> Exception:
    """The error for a network that is not among the valid ones: the invalid file that
    defines it, with its reason, when there is one."""
    defining: list[str] = []
    unknown: list[str] = []
    for file, error in directory.invalid:
        declared = error.network or _declared_name(file)
        if declared == name:
            defining.append(_why(file, error))
        elif declared is None:
            unknown.append(_why(file, error))
    if defining:
        return _Failure(f'network "{name}" is defined in an invalid file: ' + "; ".join(defining))
    if unknown:
        return _Failure(
            f'no valid net configuration with name "{name}"; these files could not be read or '
            "parsed and may define it: " + "; ".join(unknown)
        )
    try:
        directory.require(name)
    except NetworkNotFound as exc:
        return exc
    raise AssertionError("unreachable")  # pragma: no cover


# -- verbs -----------------------------------------------------------------------------------


async def _run(options: argparse.Namespace) -> int:
    env = _environment(options.ifname)
    if options.command == "watch":
        async with watch_config(env.conf_dir, env.bin_dirs) as events:
            async for event in events:
                record = msgspec.to_builtins(event, enc_hook=str)
                print(json.dumps({"event": type(event).__name__, **record}), flush=True)
        return 0
    _require_conf_dir(env.conf_dir)
    executor = SpawnExecutor(stderr_sink=_show_plugin_stderr)
    if options.command == "pod":
        return await _pod(env, options, executor)
    engine = CNIEngine(env.bin_dirs, cache_dir=env.cache_dir, executor=executor)
    if options.command == "networks":
        return await _networks(env, engine, options.json)
    network = await _network(env, options.network)
    if options.command == "status":
        return await _status(engine, network, options.json)
    if options.command == "gc":
        return await _gc(engine, network, options.netns, options.json)
    rt = RuntimeConf(
        container_id=_container_id(options.netns),
        netns=options.netns,
        ifname=env.ifname,
        args=env.args,
        capability_args=env.cap_args,
    )
    logger.info(
        "%s %s: container %s, interface %s in %s",
        options.command.upper(),
        network.name,
        rt.container_id,
        rt.ifname,
        rt.netns,
    )
    attachment = {
        "network": network.name,
        "containerID": rt.container_id,
        "ifname": rt.ifname,
        "netns": rt.netns,
    }
    if options.command == "add":  # the result, with or without --json, as cnitool
        _print_json(result_to_builtins(await engine.add_network_list(network, rt)))
    elif options.command == "check":
        cached = await engine.check_network_list(network, rt)
        if options.json:
            _print_json(
                {
                    **attachment,
                    "checked": not network.disable_check,
                    "prevResult": result_to_builtins(cached) if cached is not None else None,
                }
            )
    else:
        await engine.del_network_list(network, rt)
        if options.json:
            _print_json({**attachment, "deleted": True})
    return 0


async def _status_skipped(engine: CNIEngine, network: NetworkConfigList) -> tuple[str, bool] | None:
    """Why STATUS is not sent to this network, and whether the network can be used anyway;
    ``None`` when it is sent."""
    if not version_at_least_or_false(network.cni_version, _STATUS_VERSION):
        # libcni: no STATUS before 1.1.0, and that is no reason to think the network unready
        reason = (
            f"the network's cniVersion is {network.cni_version or 'unset'}; STATUS needs "
            f"{_STATUS_VERSION} or later"
        )
        return reason, True
    behind: list[str] = []
    for plugin_type in dict.fromkeys(p.type for p in network.plugins):
        info = await engine.get_version_info(plugin_type)
        if network.cni_version not in info.supported_versions:
            behind.append(f"{plugin_type} supports up to {_highest(info.supported_versions)}")
    if behind:
        # Neither STATUS nor ADD could work: not ready, whatever the plugins would say.
        reason = (
            f"the network's cniVersion is {network.cni_version} but plugin "
            f"{', '.join(behind)}; the network cannot be used with these plugins"
        )
        return reason, False
    return None


def _highest(versions: Sequence[str]) -> str:
    parsed: list[tuple[tuple[int, int, int], str]] = []
    for version in versions:
        try:
            parsed.append((parse_version(version), version))
        except VersionError:
            continue
    return max(parsed)[1] if parsed else "(none)"


async def _status(engine: CNIEngine, network: NetworkConfigList, as_json: bool) -> int:
    skipped = await _status_skipped(engine, network)
    if skipped is None:
        await engine.status_network_list(network)
        record = {"network": network.name, "status": "ready"}
        text = f"{network.name}: ready"
    else:
        reason, usable = skipped
        logger.info("STATUS %s not sent: %s", network.name, reason)
        status = "skipped" if usable else "unusable"
        record = {"network": network.name, "status": status, "reason": reason}
        text = f"{network.name}: STATUS {'skipped' if usable else 'not sent'}: {reason}"
    if as_json:
        _print_json(record)
    else:
        print(text)
    return 0 if skipped is None or skipped[1] else 1


def _of_network(entries: Sequence[CacheEntry], network: NetworkConfigList) -> list[tuple[str, str]]:
    return [(e.container_id, e.if_name) for e in entries if e.network_name == network.name]


async def _gc(
    engine: CNIEngine, network: NetworkConfigList, netns: str | None, as_json: bool
) -> int:
    if netns is None:
        before = _of_network(await engine.get_cached_attachments(), network)
        await engine.gc_network_list(network, None)
        after = set(_of_network(await engine.get_cached_attachments(), network))
        removed = [a for a in before if a not in after]
        if network.disable_gc:
            gc_sent, note = False, "disableGC is set: nothing was done"
        elif not version_at_least_or_false(network.cni_version, "1.1.0"):
            gc_sent, note = (
                False,
                f"no GC verb: cniVersion {network.cni_version or 'unset'} < 1.1.0",
            )
        else:
            gc_sent, note = True, "GC sent to the plugins (valid attachments: not given)"
    else:
        # Exactly NETNS's attachments, and no GC verb: a valid list built from this cache
        # would free whatever another runtime attached meanwhile, or keeps elsewhere.
        container_id = _container_id(netns)
        entries = [
            e
            for e in await engine.get_cached_attachments(container_id)
            if e.network_name == network.name
        ]
        for entry in entries:
            await engine.del_network_list(
                network,
                RuntimeConf(
                    container_id=container_id,
                    netns=await usable_netns(NetlinkNamespaces(), netns),
                    ifname=entry.if_name,
                    args=tuple(entry.cni_args),
                    capability_args=entry.capability_args,
                ),
            )
        removed = [(container_id, e.if_name) for e in entries]
        gc_sent, note = False, f"only {netns}'s attachments: DEL sent, no GC verb"
    if as_json:
        _print_json(
            {
                "network": network.name,
                "netns": netns,
                "removed": [{"containerID": c, "ifname": i} for c, i in removed],
                "gcSent": gc_sent,
                "note": note,
            }
        )
    else:
        listed = "".join(f" {c}/{i}" for c, i in removed)
        print(f"{network.name}: removed {len(removed)} cached attachment(s){listed}; {note}")
    return 0


async def _pod(env: _Env, options: argparse.Namespace, executor: SpawnExecutor) -> int:
    for name, given in (
        ("CAP_ARGS", os.environ.get("CAP_ARGS")),
        ("CNI_IFNAME", os.environ.get("CNI_IFNAME")),
        ("-i/--ifname", options.ifname),
    ):
        if given:
            print(
                f"cni-async: {name} does not apply to pods (interface names are assigned as "
                "ocicni does, capabilities come from the pod); ignoring it",
                file=sys.stderr,
            )
    try:
        networks = [NetAttachment(n) for n in options.networks.split(",") if n]
        pod = PodNetwork(
            options.name, options.namespace, options.id, options.uid, options.netns, networks
        )
    except ValueError as exc:  # an empty ID: the models refuse it at construction
        raise _UsageError(str(exc)) from None
    async with CNIPlugin(
        env.conf_dir,
        env.bin_dirs,
        env.cache_dir,
        watch=False,
        executor=executor,
        cni_args=env.args,
        allow_host_netns=options.allow_host_netns,
    ) as cni:
        if options.verb == "del":
            await cni.tear_down_pod(pod)
            if options.json:
                _print_json({"namespace": pod.namespace, "name": pod.name, "deleted": True})
            return 0
        if options.verb == "add":
            results = await cni.set_up_pod(pod)
        else:
            results = await cni.get_pod_network_status(pod)
    if options.json:
        _print_json(
            [
                {"name": r.name, "ifname": r.ifname, "result": result_to_builtins(r.result)}
                for r in results
            ]
        )
    else:
        for r in results:
            print(f"{r.name:<24} {r.ifname:<8} {_addresses(r)}")
    return 0


def _addresses(result: NetResult) -> str:
    return " ".join(ip.address for ip in result.result.ips) or "(no addresses)"


def _bench(args: Sequence[str], *, replace_process: bool) -> int:
    """Run the churn benchmark of the source tree: in place of this process when it is the
    command line itself, else as a child whose exit status is returned."""
    command = [sys.executable, str(CHURN), *args]
    if replace_process:
        os.execv(sys.executable, command)
    return subprocess.run(command, check=False).returncode


async def _networks(env: _Env, engine: CNIEngine, as_json: bool) -> int:
    directory = await load_config_dir(env.conf_dir)
    rows: list[dict[str, Any]] = []
    for network in directory.networks:
        try:
            await engine.validate_network_list(network)
            problem = ""
        except CNIError as exc:
            problem = exc.message
        rows.append(
            {
                "name": network.name,
                "cniVersion": network.cni_version,
                "plugins": [p.type for p in network.plugins],
                "file": network.path,
                "usable": not problem,
                "problem": problem,
            }
        )
    invalid = [{"file": path, "reason": error.reason} for path, error in directory.invalid]
    default = next((r["name"] for r in rows if r["usable"]), None)
    if as_json:
        _print_json({"default": default, "networks": rows, "invalid": invalid})
        return 0
    print(f"configuration directory: {env.conf_dir}")
    print(f"default network: {default or '(none)'}")
    for r in rows:
        state = "ok" if r["usable"] else f"NOT USABLE: {r['problem']}"
        print(
            f"  {r['name']:<24} {r['cniVersion'] or '-':<7} {' -> '.join(r['plugins'])}  [{state}]"
        )
    for item in invalid:
        print(f"  invalid: {item['file']}: {item['reason']}")
    return 0


def _configure_logging(verbosity: int) -> None:
    if not verbosity:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cni-async: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("cni_async")
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    bench = bench_available()
    at = bench_index(args) if bench else None
    if at is not None:
        return _bench(args[at + 1 :], replace_process=argv is None)
    parser = make_parser(bench=bench)
    options = parser.parse_args(args)
    _configure_logging(options.verbose)
    if getattr(options, "netns", None):  # as cnitool: the cache records where it is
        options.netns = os.path.abspath(options.netns)
    try:
        return anyio.run(_run, options)
    except _UsageError as exc:
        parser.error(str(exc))
    except (CNIError, _Failure) as exc:
        print(f"cni-async: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - parser.error exits
