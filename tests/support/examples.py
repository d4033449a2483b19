"""The documentation's example programs, for the tests that run them."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from .plugins import FakePlugin, write_conflist

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def load(name: str, directory: Path = EXAMPLES) -> ModuleType:
    """Import ``<directory>/<name>.py`` (``docs/examples`` by default) as a private module."""
    spec = importlib.util.spec_from_file_location(f"_docs_example_{name}", directory / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def podnet(dirs: dict[str, Path]) -> FakePlugin:
    """The examples' default network ``podnet`` on a fake plugin ``fa``."""
    plugin = FakePlugin(dirs["bin"], "fa")
    write_conflist(dirs["conf"], "podnet", [{"type": "fa"}], filename="10-podnet.conflist")
    return plugin
