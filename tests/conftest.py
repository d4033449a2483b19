from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support.netns import Sandbox, require_real_plugins, sandbox


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def net() -> Iterator[Sandbox]:
    """A test prefix for namespaces and links, all removed afterwards (needs root)."""
    require_real_plugins()
    with sandbox() as s:
        yield s


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    """Empty ``conf``, ``bin`` and ``cache`` directories."""
    d = {name: tmp_path / name for name in ("conf", "bin", "cache")}
    for path in d.values():
        path.mkdir()
    return d
