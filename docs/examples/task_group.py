"""Set several pods up at once in a task group: one failure cancels the others.

A failing set-up has rolled itself back when its error reaches the task group; the group then
cancels the set-ups still running, and each of those rolls back too. Pods that had already
finished stay attached: this program tears them down itself, in a shielded scope, before the
error propagates.

Run as root, with a network namespace per pod (``ip netns add pod1; ip netns add pod2``)::

    python task_group.py

``NETCONFPATH``, ``CNI_PATH`` and ``CNI_CACHE_DIR`` override the directories; ``POD_NETNS``
lists the pods' namespaces, separated by ``:``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from cni_async import CNIError, CNIPlugin, NetResult, PodNetwork


async def set_up_all(
    cni: CNIPlugin, pods: Sequence[PodNetwork], cleanup_timeout: float = 60.0
) -> dict[str, list[NetResult]]:
    """Set every pod up concurrently; if one fails, leave none of them attached."""
    done: dict[str, list[NetResult]] = {}

    async def set_up(pod: PodNetwork) -> None:
        done[pod.id] = await cni.set_up_pod(pod)

    try:
        async with anyio.create_task_group() as tg:
            for pod in pods:
                tg.start_soon(set_up, pod)
    except BaseException:
        # Here the group is done: failed and cancelled set-ups have rolled back. Undo the ones
        # that succeeded, shielded (we may be here because we were cancelled) and bounded.
        with anyio.move_on_after(cleanup_timeout, shield=True):
            for pod in pods:
                if pod.id in done:
                    await cni.tear_down_pod(pod)
        raise
    return done


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns_paths: Sequence[str],
    cache_dir: str | None = None,
) -> bool:
    pods = [
        PodNetwork(f"web-{i}", "default", f"sandbox-{i}", f"uid-{i}", path)
        for i, path in enumerate(netns_paths)
    ]
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir) as cni:
        results: dict[str, list[NetResult]] = {}
        try:
            with anyio.fail_after(120):
                results = await set_up_all(cni, pods)
        except* CNIError as group:  # a PodNetworkError per failed pod
            for error in group.exceptions:
                print("set-up failed:", error)
        if not results:
            return False
        for pod_id, pod_results in results.items():
            print(pod_id, [ip.address for r in pod_results for ip in r.result.ips])
        for pod in pods:
            await cni.tear_down_pod(pod)
        return True


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1:/run/netns/pod2").split(":"),
        os.environ.get("CNI_CACHE_DIR"),
    )
