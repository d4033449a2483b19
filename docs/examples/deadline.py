"""Set a pod up under a deadline; when it expires, nothing stays attached.

``fail_after`` is Go's ``context.WithTimeout`` followed by a check of ``ctx.Err()``: it raises
``TimeoutError``. ``move_on_after`` gives up quietly instead. Either way the set-up is cancelled,
every network it started gets DEL, and only then does the call return.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python deadline.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace; ``DEADLINE`` the deadline in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from cni_async import CNIPlugin, NetResult, PodNetwork


async def set_up_or_fail(cni: CNIPlugin, pod: PodNetwork, seconds: float) -> list[NetResult]:
    """Set ``pod`` up within ``seconds`` or raise ``TimeoutError``, with nothing attached."""
    with anyio.fail_after(seconds):
        return await cni.set_up_pod(pod)


async def set_up_or_give_up(
    cni: CNIPlugin, pod: PodNetwork, seconds: float
) -> list[NetResult] | None:
    """Set ``pod`` up within ``seconds``, or return ``None`` with nothing attached."""
    with anyio.move_on_after(seconds):
        return await cni.set_up_pod(pod)
    return None  # only reached when the deadline expired


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    deadline: float = 30.0,
) -> bool:
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir) as cni:
        pod = PodNetwork("web", "default", "4f1c0a9e7b2d", "7d4e-91aa", netns)
        try:
            results = await set_up_or_fail(cni, pod, deadline)
        except TimeoutError:
            # The rollback finished before TimeoutError was raised: no cache entry, no
            # interface, no IP lease is left (each started network got DEL).
            left = await cni.engine.get_cached_attachments(pod.id)
            print(f"not attached within {deadline} s; attachments left: {len(left)}")
            return False
        print("attached:", [ip.address for r in results for ip in r.result.ips])
        await cni.tear_down_pod(pod)
        return True


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
        float(os.environ.get("DEADLINE", "30")),
    )
