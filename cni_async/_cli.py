"""The ``cni-async`` command line: cnitool's verbs and environment, plus a look at the config.

    cni-async networks                 what is loaded, the default, invalid files and why
    cni-async add|check|del NET NETNS  run a network on a namespace, as cnitool does
    cni-async status NET               readiness (STATUS for 1.1.0 networks)
    cni-async gc NET                   remove the network's cached attachments (cnitool's gc)
    cni-async watch                    stream configuration events, one JSON object per line
    cni-async pod add|status|del NAMESPACE NAME ID NETNS [-networks a,b]
                                       a whole pod through CNIPlugin, with ocicnitool's arguments
                                       (of the environment, CNI_ARGS applies; CAP_ARGS and
                                       CNI_IFNAME do not)
    cni-async bench [ARGS...]          the pod-churn benchmark (benchmarks/churn.py's arguments)

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
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ._config import NetworkConfigList, load_config_dir
from ._engine import CNIEngine, RuntimeConf
from ._errors import CNIError
from ._models import NetAttachment, NetResult, PodNetwork
from ._plugin import CNIPlugin
from ._results import result_to_builtins
from ._watch import watch_config

__all__ = ["main"]


class _UsageError(Exception):
    pass


def _environment() -> dict[str, Any]:
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
    return {
        "conf_dir": os.environ.get("NETCONFPATH") or os.environ.get("CONF_PATH", "/etc/cni/net.d"),
        "bin_dirs": [
            d
            for d in (
                os.environ.get("CNI_PATH") or os.environ.get("BIN_PATH", "/opt/cni/bin")
            ).split(":")
            if d
        ],
        "cache_dir": os.environ.get("CNI_CACHE_DIR") or None,
        "ifname": os.environ.get("CNI_IFNAME", "eth0"),
        "cap_args": cap_args,
        "args": tuple(args),
    }


def _container_id(netns: str) -> str:
    digest = hashlib.sha512(os.path.abspath(netns).encode()).hexdigest()
    return f"cnitool-{digest[:20]}"


async def _network(env: dict[str, Any], name: str) -> NetworkConfigList:
    directory = await load_config_dir(env["conf_dir"])
    return directory.require(name)


def _print_json(obj: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(obj), indent=2).decode() + "\n")


async def _run(options: argparse.Namespace) -> int:
    env = _environment()
    engine = CNIEngine(env["bin_dirs"], cache_dir=env["cache_dir"])
    if options.command == "networks":
        return await _networks(env, engine, options.json)
    if options.command == "watch":
        async with watch_config(env["conf_dir"], env["bin_dirs"]) as events:
            async for event in events:
                record = msgspec.to_builtins(event, enc_hook=str)
                print(json.dumps({"event": type(event).__name__, **record}), flush=True)
        return 0
    if options.command == "pod":
        return await _pod(env, options)
    network = await _network(env, options.network)
    if options.command == "status":
        await engine.status_network_list(network)
        print(f"{network.name}: ready")
        return 0
    if options.command == "gc":
        await engine.gc_network_list(network, None)
        return 0
    rt = RuntimeConf(
        container_id=_container_id(options.netns),
        netns=options.netns,
        ifname=env["ifname"],
        args=env["args"],
        capability_args=env["cap_args"],
    )
    if options.command == "add":
        _print_json(result_to_builtins(await engine.add_network_list(network, rt)))
    elif options.command == "check":
        await engine.check_network_list(network, rt)
    else:
        await engine.del_network_list(network, rt)
    return 0


async def _pod(env: dict[str, Any], options: argparse.Namespace) -> int:
    for name in ("CAP_ARGS", "CNI_IFNAME"):
        if os.environ.get(name):
            print(
                f"cni-async: {name} does not apply to pods (interface names are assigned as "
                "ocicni does, capabilities come from the pod); ignoring it",
                file=sys.stderr,
            )
    networks = [NetAttachment(n) for n in options.networks.split(",") if n]
    pod = PodNetwork(
        options.name, options.namespace, options.id, options.uid, options.netns, networks
    )
    async with CNIPlugin(
        env["conf_dir"],
        env["bin_dirs"],
        env["cache_dir"],
        watch=False,
        cni_args=env["args"],
    ) as cni:
        if options.verb == "del":
            await cni.tear_down_pod(pod)
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
    churn = Path(__file__).resolve().parent.parent / "benchmarks" / "churn.py"
    if not churn.is_file():
        print(
            "cni-async: bench runs benchmarks/churn.py from a source checkout of cni_async; "
            f"there is none next to {Path(__file__).resolve().parent}",
            file=sys.stderr,
        )
        return 1
    command = [sys.executable, str(churn), *args]
    if replace_process:
        os.execv(sys.executable, command)
    return subprocess.run(command, check=False).returncode


async def _networks(env: dict[str, Any], engine: CNIEngine, as_json: bool) -> int:
    directory = await load_config_dir(env["conf_dir"])
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
    print(f"configuration directory: {env['conf_dir']}")
    print(f"default network: {default or '(none)'}")
    for r in rows:
        state = "ok" if r["usable"] else f"NOT USABLE: {r['problem']}"
        print(
            f"  {r['name']:<24} {r['cniVersion'] or '-':<7} {' -> '.join(r['plugins'])}  [{state}]"
        )
    for item in invalid:
        print(f"  invalid: {item['file']}: {item['reason']}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cni-async",
        description="Run CNI networks from the shell (cnitool's verbs and environment).",
        epilog="Environment: NETCONFPATH (or CONF_PATH), CNI_PATH (or BIN_PATH), CAP_ARGS, "
        "CNI_ARGS, CNI_IFNAME, CNI_CACHE_DIR.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    networks = sub.add_parser("networks", help="what is loaded, the default, invalid files")
    networks.add_argument("--json", action="store_true", help="print JSON for scripts")
    for verb in ("add", "check", "del"):
        cmd = sub.add_parser(verb, help=f"{verb.upper()} a network on a network namespace")
        cmd.add_argument("network")
        cmd.add_argument("netns", help="the namespace path, e.g. /run/netns/pod1")
    status = sub.add_parser("status", help="is the network ready (STATUS, CNI 1.1.0)")
    status.add_argument("network")
    gc = sub.add_parser("gc", help="remove every cached attachment of a network, then GC")
    gc.add_argument("network")
    sub.add_parser("watch", help="stream configuration events as JSON lines")
    pod = sub.add_parser(
        "pod",
        help="set up, check or tear down a whole pod (ocicnitool's arguments)",
        description="A pod through CNIPlugin, as ocicnitool does: its default network, or "
        "those named with -networks; results as a table, or JSON with --json.",
    )
    pod.add_argument("verb", choices=("add", "status", "del"))
    pod.add_argument("namespace", help="the pod's namespace")
    pod.add_argument("name", help="the pod's name")
    pod.add_argument("id", help="the sandbox (container) ID")
    pod.add_argument("netns", help="the namespace path, e.g. /run/netns/pod1")
    pod.add_argument("-networks", "--networks", default="", help="networks to use, comma separated")
    pod.add_argument("--uid", default="", help="the pod's UID (K8S_POD_UID)")
    pod.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub.add_parser(
        "bench",
        help="the pod-churn benchmark on real plugins (arguments go to benchmarks/churn.py)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:
        return _bench(args[1:], replace_process=argv is None)
    options = parser.parse_args(args)
    if getattr(options, "netns", None):  # as cnitool: the cache records where it is
        options.netns = os.path.abspath(options.netns)
    try:
        return anyio.run(_run, options)
    except _UsageError as exc:
        parser.error(str(exc))
    except CNIError as exc:
        print(f"cni-async: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2  # pragma: no cover - parser.error exits
