"""One network list on one namespace with the protocol engine: libcni's level, no pod API.

``CNIEngine`` runs a chain for one verb and keeps libcni's cache; it does not bring ``lo`` up,
take locks or roll back. A chain that fails half-way must be deleted by the caller, as the CNI
specification says, which this program does.

Run as root, with a network namespace (``ip netns add pod1``)::

    python engine.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace; ``NETWORK`` names the network (default: the first valid file's).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from cni_async import CNIError
from cni_async.libcni import CNIEngine, RuntimeConf, load_config_dir


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    network: str | None = None,
) -> str:
    configs = await load_config_dir(conf_dir)
    for path, error in configs.invalid:  # one bad file does not hide the others
        print(f"skipping {path}: {error}")
    netlist = configs.require(network) if network else configs.default
    if netlist is None:
        raise SystemExit(f"no valid network configuration in {conf_dir}")

    engine = CNIEngine(bin_dirs, cache_dir=cache_dir)
    rt = RuntimeConf(container_id="engine-example", netns=netns, ifname="eth0")
    try:
        with anyio.fail_after(30):
            result = await engine.add_network_list(netlist, rt)
    except BaseException:
        # A failed or cancelled ADD may have left some plugins of the chain done: DEL them,
        # shielded and bounded, before the error or the cancellation goes on.
        with anyio.move_on_after(30, shield=True):
            try:
                await engine.del_network_list(netlist, rt)
            except CNIError as exc:
                print("DEL after the failed ADD failed too:", exc)
        raise
    print(f"{netlist.name} ({result.cni_version}):", result)

    cached = await engine.get_cached_attachments(rt.container_id)
    print("cached attachments:", [(e.network_name, e.if_name) for e in cached])
    try:
        await engine.check_network_list(netlist, rt)  # needs version 0.4.0 or later
    except CNIError as exc:
        print("CHECK failed:", exc)
    await engine.del_network_list(netlist, rt)
    return netlist.name


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
        os.environ.get("NETWORK"),
    )
