"""A blocking facade over [`CNIPlugin`][cni_async.CNIPlugin], for callers without an event loop.

It runs one event loop in a thread of its own (an anyio blocking portal) and forwards each call
to it, so ocicni-style synchronous use works from any number of plain threads::

    with BlockingCNIPlugin("/etc/cni/net.d", ["/opt/cni/bin"]) as cni:
        results = cni.set_up_pod(pod, timeout=30)   # SetUpPodWithContext with a deadline
        cni.tear_down_pod(pod)
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from .._confdir.snapshot import ConfigSnapshot
from .models import NetResult, PodNetwork
from .plugin import CNIPlugin

__all__ = ["BlockingCNIPlugin"]

T = TypeVar("T")


class BlockingCNIPlugin:
    """[`CNIPlugin`][cni_async.CNIPlugin] for synchronous code; takes the same arguments.

    Entering starts the event loop thread and the plugin (loading the configuration and
    watching it); leaving closes both. Every method blocks until the operation is done; a
    ``timeout`` (seconds) bounds it like Go's context deadline: the operation is cancelled (a
    set-up is rolled back) and ``TimeoutError`` is raised. Methods may be called from
    several threads at once; pods still run in parallel.

    :param backend: the anyio backend of the event loop thread (``"asyncio"`` or ``"trio"``)
    """

    def __init__(self, *args: Any, backend: str = "asyncio", **kwargs: Any) -> None:
        self._plugin = CNIPlugin(*args, **kwargs)
        self._backend = backend
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None

    def __enter__(self) -> Self:
        if self._portal is not None:
            raise RuntimeError("this BlockingCNIPlugin is open already")
        portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(self._backend)
        self._portal = self._stack.enter_context(portal_cm)
        try:
            self._stack.enter_context(self._portal.wrap_async_context_manager(self._plugin))
        except BaseException:
            self._stack.close()
            self._portal = None
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the plugin and stop the event loop thread. Idempotent."""
        self._portal = None
        self._stack.close()

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, timeout: float | None) -> T:
        portal = self._portal
        if portal is None:
            raise anyio.ClosedResourceError("this BlockingCNIPlugin is not open")
        scopes: list[anyio.CancelScope] = []
        interrupted = False

        async def bounded() -> T:
            with anyio.CancelScope() as scope, anyio.fail_after(timeout):
                scopes.append(scope)
                if interrupted:
                    scope.cancel()
                return await fn(*args)
            raise anyio.get_cancelled_exc_class()  # interrupted: the caller raises its own

        def interrupt() -> None:  # in the event loop's thread, as bounded()
            nonlocal interrupted
            interrupted = True
            for scope in scopes:
                scope.cancel()

        future = portal.start_task_soon(bounded)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                # Interrupted while waiting (^C): cancel the operation as a deadline would
                # (a set-up is rolled back), wait for that, then let the interrupt through.
                portal.call(interrupt)
                concurrent.futures.wait([future])
            raise

    @property
    def name(self) -> str:
        """``"cni"``, as ocicni's ``Name()``."""
        return self._plugin.name

    @property
    def default_network_name(self) -> str | None:
        """The default network's name, or ``None`` while there is none."""
        return self._plugin.default_network_name

    @property
    def config(self) -> ConfigSnapshot:
        """The configuration snapshot new operations will use."""
        return self._plugin.config

    def set_up_pod(self, pod: PodNetwork, *, timeout: float | None = None) -> list[NetResult]:
        """[`CNIPlugin.set_up_pod`][cni_async.CNIPlugin.set_up_pod], blocking."""
        return self._run(self._plugin.set_up_pod, pod, timeout=timeout)

    def tear_down_pod(self, pod: PodNetwork, *, timeout: float | None = None) -> None:
        """[`CNIPlugin.tear_down_pod`][cni_async.CNIPlugin.tear_down_pod], blocking."""
        self._run(self._plugin.tear_down_pod, pod, timeout=timeout)

    def get_pod_network_status(
        self, pod: PodNetwork, *, timeout: float | None = None
    ) -> list[NetResult]:
        """[`CNIPlugin.get_pod_network_status`][cni_async.CNIPlugin.get_pod_network_status],
        blocking."""
        return self._run(self._plugin.get_pod_network_status, pod, timeout=timeout)

    def status(self, *, timeout: float | None = None) -> None:
        """[`CNIPlugin.status`][cni_async.CNIPlugin.status], blocking."""
        self._run(self._plugin.status, timeout=timeout)

    def gc(self, valid_pods: Iterable[PodNetwork], *, timeout: float | None = None) -> None:
        """[`CNIPlugin.gc`][cni_async.CNIPlugin.gc], blocking."""
        self._run(self._plugin.gc, list(valid_pods), timeout=timeout)

    def reload(self, *, timeout: float | None = None) -> ConfigSnapshot:
        """[`CNIPlugin.reload`][cni_async.CNIPlugin.reload], blocking."""
        return self._run(self._plugin.reload, timeout=timeout)
