"""The package's layers (docs/architecture.md): every import points down or sideways.

Imports under ``TYPE_CHECKING`` count too; a module the table does not place fails the test,
so a new module is placed deliberately.
"""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cni_async"
ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"

LAYERS: dict[str, list[str]] = {
    "ground": ["_errors", "_json", "_files", "_locks", "_fanout", "_version"],
    "spec": [
        "_specversion",
        "_runtime",
        "_validation",
        "_results",
        "_config",
        "_models",
        "_snapshot",
    ],
    "observing": ["_observe"],
    "libcni": ["_exec", "_groupcommit", "_cache", "_engine", "_confload"],
    "namespaces": ["_netns", "_namespaces"],
    "configuration": ["_snapshot_build", "_events", "_watch", "_confsource"],
    "observers": ["_metrics", "_otel", "_otel_metrics", "_prometheus"],
    "pods": ["_attachments", "_podctx", "_setup", "_teardown", "_status", "_gc"],
    "faces": ["_plugin", "_blocking", "_cli", "_cliargs", "__init__", "__main__"],
}
FLOOR = {module: floor for floor, modules in enumerate(LAYERS.values()) for module in modules}


def imports(module: Path) -> set[str]:
    return set(re.findall(r"^\s*from \.(_\w+) import", module.read_text(), re.MULTILINE))


def test_every_module_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - FLOOR.keys() == set()
    assert FLOOR.keys() - modules == set()


def test_imports_point_down() -> None:
    upward = [
        f"{path.stem} -> {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in sorted(imports(path))
        if FLOOR[name] > FLOOR[path.stem]
    ]
    assert upward == []


def test_the_architecture_page_places_every_module() -> None:
    page = ARCHITECTURE.read_text()
    for module in FLOOR:
        if not module.startswith("__") and module != "_version":
            assert f"`{module}`" in page, module
