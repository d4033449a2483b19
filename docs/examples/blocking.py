"""The same pod API from plain threads, without an event loop of your own.

``BlockingCNIPlugin`` runs one event loop in a thread of its own; every method blocks until the
operation is done, and ``timeout=`` is the deadline a Go caller would put on its context.

Run as root, with a network namespace per pod (``ip netns add pod1; ip netns add pod2``)::

    python blocking.py

``NETCONFPATH``, ``CNI_PATH`` and ``CNI_CACHE_DIR`` override the directories; ``POD_NETNS``
lists the pods' namespaces, separated by ``:``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cni_async import BlockingCNIPlugin, NetResult, PodNetwork


def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns_paths: Sequence[str],
    cache_dir: str | None = None,
    backend: str = "asyncio",
) -> dict[str, list[str]]:
    pods = [
        PodNetwork(f"web-{i}", "default", f"sandbox-{i}", f"uid-{i}", path)
        for i, path in enumerate(netns_paths)
    ]
    with BlockingCNIPlugin(conf_dir, bin_dirs, cache_dir, backend=backend) as cni:
        cni.status(timeout=30)  # Status(): raises while there is no usable default network

        def set_up(pod: PodNetwork) -> list[NetResult]:
            # Past the timeout the set-up is cancelled, rolled back, and TimeoutError raised.
            return cni.set_up_pod(pod, timeout=60)

        with ThreadPoolExecutor(max_workers=4) as pool:  # the pods are set up in parallel
            results = dict(zip((p.id for p in pods), pool.map(set_up, pods), strict=True))
        addresses = {
            pod_id: [ip.address for r in rs for ip in r.result.ips]
            for pod_id, rs in results.items()
        }
        print(addresses)
        for pod in pods:
            cni.tear_down_pod(pod, timeout=60)
    return addresses


if __name__ == "__main__":
    main(
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1:/run/netns/pod2").split(":"),
        os.environ.get("CNI_CACHE_DIR"),
    )
