"""Public objects shown under the namespace that documents them, not their private module."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import suppress

__all__ = ["show_as"]


def show_as(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Set ``__module__`` of each object ``names`` picks from ``namespace`` to ``module`` when it
    is still a private module's, so reprs, tracebacks and docs say ``cni_async.X``."""
    for name in names:
        obj = namespace[name]
        if getattr(obj, "__module__", "").startswith("cni_async._"):
            with suppress(AttributeError, TypeError):
                obj.__module__ = module
