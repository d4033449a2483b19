"""The ``cni-async`` command line's arguments: the parser, its help texts, and where ``bench``
is (it takes the rest of the line as the benchmark's own arguments)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ._version import __version__

__all__ = ["CHURN", "bench_available", "bench_index", "parser"]

# The benchmark a source checkout has next to the package (an installed wheel has none).
CHURN = Path(__file__).resolve().parent.parent / "benchmarks" / "churn.py"


def bench_available() -> bool:
    """Whether this is a source checkout, with benchmarks/churn.py next to the package."""
    return CHURN.is_file()


def parser(*, bench: bool) -> argparse.ArgumentParser:
    """The command line's parser (``bench`` offered only from a source checkout)."""
    parser = argparse.ArgumentParser(
        prog="cni-async",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run CNI networks from the shell (cnitool's verbs and environment).\n\n"
        "  cni-async [-i IFNAME] add|check|del NETWORK NETNS\n"
        "  cni-async status|gc NETWORK [NETNS]\n"
        "  cni-async networks|watch\n"
        "  cni-async pod add|status|del NAMESPACE NAME ID NETNS [-networks a,b]\n\n"
        "Every verb takes --json; 'cni-async VERB --help' tells more.",
        epilog="environment: NETCONFPATH (or CONF_PATH), CNI_PATH (or BIN_PATH), CAP_ARGS,\n"
        "CNI_ARGS, CNI_IFNAME, CNI_CACHE_DIR, as cnitool. What plugins write to stderr\n"
        "is shown on stderr. Exit status: 0 success, 1 a CNI error, 2 a usage error.",
    )
    parser.add_argument("--version", action="version", version=f"cni-async {__version__}")
    parser.add_argument(
        "-i",
        "--ifname",
        metavar="IFNAME",
        help="the interface name in the namespace for add, check and del, as cnitool's -i "
        "(default: CNI_IFNAME, else eth0)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log cni_async's INFO messages to stderr; -vv adds DEBUG (every plugin run)",
    )
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", help="print JSON for scripts")
    sub = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    sub.add_parser(
        "networks", parents=[json_option], help="what is loaded, the default, invalid files"
    )
    for verb, text in (
        ("add", "ADD a network to a namespace and print the result as JSON (as cnitool)"),
        ("check", "CHECK a network's attachment in a namespace"),
        ("del", "DEL a network's attachment from a namespace"),
    ):
        cmd = sub.add_parser(verb, parents=[json_option], help=text, description=text + ".")
        cmd.add_argument("network", metavar="NETWORK", help="the network's name")
        cmd.add_argument("netns", metavar="NETNS", help="the namespace path, e.g. /run/netns/pod1")
    status_text = (
        "STATUS: is the network ready. Sent to networks of cniVersion 1.1.0 or later. Before "
        "1.1.0 it is skipped, with the reason, and the exit status is 0 (as libcni). When a "
        "plugin does not support the network's version (asked through VERSION), STATUS is not "
        "sent either, but the network cannot be used: the reason, and exit status 1."
    )
    status = sub.add_parser(
        "status",
        parents=[json_option],
        help="is the network ready (STATUS, cniVersion 1.1.0)",
        description=status_text,
    )
    status.add_argument("network", metavar="NETWORK", help="the network's name")
    status.add_argument(
        "netns",
        metavar="NETNS",
        nargs="?",
        help="accepted for cnitool's argument shape and not used: STATUS is per network",
    )
    gc_text = (
        "Garbage-collect a network. Without NETNS (cnitool's gc): DEL every cached attachment "
        "of the network, then send GC with no valid-attachments list (to networks of "
        "cniVersion 1.1.0 or later; disableGC turns it all off). With NETNS: DEL the cached "
        "attachments of NETNS's container ID (every interface) and nothing else; no GC is sent, "
        "since the plugins would free every attachment missing from this cache."
    )
    gc = sub.add_parser(
        "gc",
        parents=[json_option],
        help="DEL cached attachments (all, then GC; or only NETNS's)",
        description=gc_text,
    )
    gc.add_argument("network", metavar="NETWORK", help="the network's name")
    gc.add_argument(
        "netns",
        metavar="NETNS",
        nargs="?",
        help="only this namespace's attachments (default: every cached attachment, then GC)",
    )
    sub.add_parser(
        "watch",
        parents=[json_option],
        help="stream configuration events as JSON lines (always JSON)",
    )
    pod = sub.add_parser(
        "pod",
        parents=[json_option],
        help="add, status or del a whole pod (ocicnitool's arguments)",
        description="A pod through CNIPlugin, as ocicnitool does: add sets it up on its "
        "networks, status CHECKs each of its attachments and prints its result, del tears it "
        "down. Its default network, or those named with -networks; results as a table, or "
        "JSON with --json.",
    )
    pod.add_argument("verb", choices=("add", "status", "del"))
    pod.add_argument("namespace", help="the pod's namespace")
    pod.add_argument("name", help="the pod's name")
    pod.add_argument("id", help="the sandbox (container) ID")
    pod.add_argument("netns", help="the namespace path, e.g. /run/netns/pod1")
    pod.add_argument("-networks", "--networks", default="", help="networks to use, comma separated")
    pod.add_argument("--uid", default="", help="the pod's UID (K8S_POD_UID)")
    pod.add_argument(
        "--allow-host-netns",
        action="store_true",
        help="accept this process's own network namespace (or PID 1's) as the pod's; "
        "refused otherwise, since the plugins would configure the host's network",
    )
    if bench:
        sub.add_parser(
            "bench",
            help="the pod-churn benchmark on real plugins (arguments go to benchmarks/churn.py; "
            "source checkouts only)",
            add_help=False,
        )
    return parser


def bench_index(args: Sequence[str]) -> int | None:
    """Where ``bench`` is, when it is the verb (after global options only)."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "bench":
            return index
        if arg in ("-i", "--ifname"):
            index += 2
        elif arg.startswith(("-v", "--verbose", "--ifname=")) or (
            arg.startswith("-i") and len(arg) > 2
        ):
            index += 1
        else:
            return None
    return None
