"""Keep a pod attached while its workload runs, and detach it however the workload ends.

The cleanup runs in a ``finally`` clause that may be reached because the surrounding scope was
cancelled. Without a shield, ``tear_down_pod`` would be cancelled at its first checkpoint and no
DEL would run (the trap Go runtimes fall into when they clean up with the context that just
expired). The shield gets its own deadline so the cleanup cannot hang forever either.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python shielded_cleanup.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace; ``LIFETIME`` how long the pod stays attached, in seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from cni_async import CNIPlugin, NetResult, PodNetwork, PodNetworkError

logger = logging.getLogger("runtime")


@asynccontextmanager
async def attached(
    cni: CNIPlugin, pod: PodNetwork, cleanup_timeout: float = 60.0
) -> AsyncIterator[list[NetResult]]:
    """Attach ``pod`` for the body of ``async with``; detach it when the body ends."""
    results = await cni.set_up_pod(pod)  # rolls itself back if it fails or is cancelled
    try:
        yield results
    finally:
        with anyio.move_on_after(cleanup_timeout, shield=True) as cleanup:
            try:
                await cni.tear_down_pod(pod)
            except PodNetworkError as exc:
                # Every network was tried; what failed keeps its cache entry, so a later
                # tear_down_pod or gc can finish the job. Raising here would hide the reason
                # the body ended (a cancellation, say).
                logger.error("teardown of %s failed: %s", pod.id, exc)
        if cleanup.cancelled_caught:
            logger.error("teardown of %s took longer than %s s", pod.id, cleanup_timeout)


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    lifetime: float = 10.0,
) -> bool:
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir) as cni:
        pod = PodNetwork("web", "default", "4f1c0a9e7b2d", "7d4e-91aa", netns)
        with anyio.move_on_after(lifetime):  # stands for "until the runtime stops the pod"
            async with attached(cni, pod) as results:
                print("attached:", [ip.address for r in results for ip in r.result.ips])
                await anyio.sleep_forever()  # the pod's workload runs here
        left = await cni.engine.get_cached_attachments(pod.id)
        print("detached; attachments left:", len(left))
        return not left


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
        float(os.environ.get("LIFETIME", "10")),
    )
