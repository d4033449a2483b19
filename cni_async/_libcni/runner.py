"""One plugin run for the engine: its environment, a process slot, the verb's timeout, the
observers around it, and its output decoded.

[`CNIEngine`][cni_async.libcni.CNIEngine] builds chains from these runs; everything that holds for
a single plugin process, whatever the verb, is here.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from typing import Final, TypeVar

import anyio

from .._errors import CNIError, PluginTimeout
from .._spec.netconf import PluginConfig
from .exec import PluginExecutor, cni_env
from .observing import PluginRunInfo, PluginRunObserver, PluginRunObservers, observed_env
from .runtime import DEFAULT_TIMEOUTS, RuntimeConf

__all__ = ["PluginRunner", "raw"]

logger = logging.getLogger("cni_async.engine")

T = TypeVar("T")

# Outputs larger than this are decoded in a worker thread: a result with 100 000 addresses
# takes more than a second to parse and check, which on the event loop would stall every pod.
_DECODE_IN_THREAD: Final = 256 * 1024


def raw(output: bytes) -> bytes:
    """A plugin's output as it is (for verbs whose output is not a result)."""
    return output


class PluginRunner:
    """Runs single plugins for one engine (see ``CNIEngine``'s parameters of the same names)."""

    def __init__(
        self,
        bin_dirs: Sequence[str],
        *,
        executor: PluginExecutor,
        inherit_env: Iterable[str],
        extra_env: Mapping[str, str] | None,
        max_concurrent_execs: int | None,
        timeouts: Mapping[str, float | None] | None,
        observers: Sequence[PluginRunObserver],
    ) -> None:
        self.bin_dirs = tuple(bin_dirs)
        self.timeouts: dict[str, float | None] = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.executor = executor
        base = {k: os.environ[k] for k in inherit_env if k in os.environ}
        base.update(extra_env or {})
        self.base_env = base
        if max_concurrent_execs is not None and max_concurrent_execs < 1:
            raise ValueError(f"max_concurrent_execs must be at least 1, not {max_concurrent_execs}")
        self._limiter = (
            anyio.CapacityLimiter(max_concurrent_execs) if max_concurrent_execs else None
        )
        self.observers = PluginRunObservers(observers)

    def env(self, verb: str, rt: RuntimeConf | None = None) -> dict[str, str]:
        """The environment a plugin gets for ``verb`` (for GC and STATUS, ``rt`` is ``None``)."""
        if rt is None:
            return cni_env(verb, bin_dirs=self.bin_dirs, base=self.base_env)
        return cni_env(
            verb,
            container_id=rt.container_id,
            netns=rt.netns,
            ifname=rt.ifname,
            args=rt.args,
            bin_dirs=self.bin_dirs,
            base=self.base_env,
        )

    async def run_in_chain(
        self,
        network: str,
        plugin: PluginConfig,
        verb: str,
        stdin: bytes,
        rt: RuntimeConf | None,
        decode: Callable[[bytes], T],
    ) -> T:
        """Run ``plugin`` of ``network``'s chain for ``verb`` with the environment of ``rt``."""
        return await self.run(
            plugin.type, verb, stdin, self.env(verb, rt), network, rt, decode=decode
        )

    async def run(
        self,
        plugin_type: str,
        verb: str,
        stdin: bytes,
        env: Mapping[str, str],
        network: str | None,
        rt: RuntimeConf | None = None,
        *,
        decode: Callable[[bytes], T],
        limited: bool = True,
    ) -> T:
        """Run one plugin once a process slot is free (``max_concurrent_execs``), observed;
        return its output through ``decode``.

        The wait for a slot counts neither against the verb's timeout nor in what observers
        see: both cover the plugin run alone, ``decode`` included (a plugin that exits 0 but
        prints garbage is a failed run). ``limited=False`` (VERSION probes) takes no slot, so
        a reload never waits behind slow pod operations.
        """
        async with self._limiter if limited and self._limiter else nullcontext():
            if not self.observers:
                return await _decoded(
                    decode, await self._run_plugin(plugin_type, verb, stdin, env, network)
                )
            info = PluginRunInfo(
                verb=verb,
                plugin=plugin_type,
                network=network,
                container_id=rt.container_id if rt else None,
                ifname=rt.ifname if rt else None,
            )
            observed = dict(env)
            with self.observers.plugin_run(info, observed):
                return await _decoded(
                    decode,
                    await self._run_plugin(
                        plugin_type, verb, stdin, observed_env(env, observed), network
                    ),
                )

    async def _run_plugin(
        self, plugin_type: str, verb: str, stdin: bytes, env: Mapping[str, str], network: str | None
    ) -> bytes:
        """Find and run one plugin under the verb's timeout."""
        started = time.perf_counter()
        timeout = self.timeouts.get(verb)
        try:
            path = self.executor.find_plugin(plugin_type, self.bin_dirs)
            with anyio.move_on_after(timeout if timeout is not None else math.inf):
                return await self.executor.exec_plugin(path, stdin=stdin, env=env)
            raise PluginTimeout(
                f"the plugin did not finish {verb} within {timeout} s and was stopped; raise "
                f"timeouts[{verb!r}] if it is just slow",
                plugin=plugin_type,
                verb=verb,
                network=network,
            )
        except CNIError as exc:
            exc.add_context(plugin=plugin_type, verb=verb, network=network)
            logger.debug("%s %s on %s failed: %s", verb, plugin_type, network, exc)
            raise
        finally:
            logger.debug(
                "%s %s on %s took %.1f ms",
                verb,
                plugin_type,
                network,
                (time.perf_counter() - started) * 1000,
            )


async def _decoded(decode: Callable[[bytes], T], output: bytes) -> T:
    if len(output) <= _DECODE_IN_THREAD:
        return decode(output)
    return await anyio.to_thread.run_sync(decode, output)
