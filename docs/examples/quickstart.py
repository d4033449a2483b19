"""Attach a pod to the default network, read its status, detach it.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python quickstart.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the configuration
directory, the plugin directories, the cache directory and the pod's namespace.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from cni_async import CNIPlugin, PodNetwork


async def main(
    conf_dir: str, bin_dirs: Sequence[str], netns: str, cache_dir: str | None = None
) -> list[str]:
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir) as cni:
        await cni.status()  # raises NetworkNotFound while there is no usable default network
        print("default network:", cni.default_network_name)

        # What the runtime knows about the sandbox; networks=[] means the default network.
        pod = PodNetwork(
            name="web", namespace="default", id="4f1c0a9e7b2d", uid="7d4e-91aa", netns=netns
        )
        with anyio.fail_after(60):  # SetUpPodWithContext with a 60 s deadline
            results = await cni.set_up_pod(pod)
        addresses = [ip.address for r in results for ip in r.result.ips]
        for r in results:
            print(f"{r.name} on {r.ifname}: {[ip.address for ip in r.result.ips]}")

        for r in await cni.get_pod_network_status(pod):  # CHECK, then the cached result
            print(f"status of {r.name}: {[ip.address for ip in r.result.ips]}")

        with anyio.fail_after(60):
            await cni.tear_down_pod(pod)
        print("torn down")
        return addresses


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
    )
