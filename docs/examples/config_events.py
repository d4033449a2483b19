"""Wait until pods can be set up, reporting configuration changes on the way.

A node whose network provider has not installed its configuration yet is not ready; this
program waits (up to ``TIMEOUT`` seconds) for a usable default network, printing each event
that the configuration directory's changes produce.

    python config_events.py

``NETCONFPATH``, ``CNI_PATH`` and ``CNI_CACHE_DIR`` override the directories.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import anyio

from cni_async import CNIPlugin, FileInvalid, NotReady, Ready


async def wait_until_ready(cni: CNIPlugin) -> str:
    """The default network's name, once there is one."""
    async with cni.config_events() as events:  # the current state first, then each change
        async for event in events:
            match event:
                case Ready(default_network=name):
                    return name
                case NotReady(reason=reason):
                    print("not ready:", reason)
                case FileInvalid(path=path, reason=reason, kept_last_good=kept):
                    print(f"{path} is invalid ({reason}); last good version kept: {kept}")
                case _:
                    print(event)
    raise RuntimeError("the plugin was closed before it became ready")


async def main(
    conf_dir: str, bin_dirs: Sequence[str], cache_dir: str | None = None, timeout: float = 300.0
) -> str:
    # The deadline covers the start-up too: loading and validating the configuration.
    with anyio.fail_after(timeout):
        async with CNIPlugin(conf_dir, bin_dirs, cache_dir) as cni:
            name = await wait_until_ready(cni)
    print("ready; the default network is", name)
    return name


if __name__ == "__main__":
    anyio.run(
        main,
        os.environ.get("NETCONFPATH", "/etc/cni/net.d"),
        os.environ.get("CNI_PATH", "/usr/lib/cni").split(":"),
        os.environ.get("CNI_CACHE_DIR"),
        float(os.environ.get("TIMEOUT", "300")),
    )
