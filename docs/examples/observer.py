"""An observer of your own: warn about slow plugin runs and failed rollbacks.

Subclass ``Observer`` and override what you need; ``plugin_run`` and ``operation`` wrap their
operation, so a ``@contextmanager`` sees its duration and, around ``yield``, its exception.

Run as root, with a network namespace for the pod (``ip netns add pod1``)::

    python observer.py

``NETCONFPATH``, ``CNI_PATH``, ``CNI_CACHE_DIR`` and ``POD_NETNS`` override the directories and
the namespace; ``SLOW`` the threshold in seconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager

import anyio

from cni_async import (
    CNIError,
    CNIPlugin,
    Observer,
    OperationInfo,
    PluginRunInfo,
    PodNetwork,
)

logger = logging.getLogger("my_runtime.cni")


class SlowRuns(Observer):
    """Logs every plugin run slower than ``threshold`` seconds and every failed rollback."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.slow: list[tuple[str, str, float]] = []

    @contextmanager
    def plugin_run(self, info: PluginRunInfo, env: MutableMapping[str, str]) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - started
            if took >= self.threshold:
                self.slow.append((info.verb, info.plugin, took))
                logger.warning(
                    "%s %s on %s took %.2f s",
                    info.verb,
                    info.plugin,
                    info.network,
                    took,
                )

    def rolled_back(
        self, info: OperationInfo, networks: Sequence[str], errors: Sequence[CNIError]
    ) -> None:
        if errors:
            logger.error(
                "pod %s/%s: %d networks not detached",
                info.pod_namespace,
                info.pod_name,
                len(errors),
            )


async def main(
    conf_dir: str,
    bin_dirs: Sequence[str],
    netns: str,
    cache_dir: str | None = None,
    threshold: float = 1.0,
) -> list[tuple[str, str, float]]:
    slow = SlowRuns(threshold)
    async with CNIPlugin(conf_dir, bin_dirs, cache_dir, observers=[slow]) as cni:
        pod = PodNetwork(name="web", namespace="default", id="4f1c0a9e7b2d", uid="", netns=netns)
        with anyio.fail_after(60):
            await cni.set_up_pod(pod)
            await cni.tear_down_pod(pod)
    for verb, plugin, took in slow.slow:
        print(f"slow: {verb} {plugin} {took:.2f} s")
    return slow.slow


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("POD_NETNS", "/run/netns/pod1"),
        os.environ.get("CNI_CACHE_DIR"),
        float(os.environ.get("SLOW", "1.0")),
    )
