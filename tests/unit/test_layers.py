"""The package's layers (docs/architecture.md): every import points down, and none in a circle.

A module's floor is its sub-package's (``_spec``, ``_libcni``, ...) or, for the modules beside
``__init__``, its own. Imports under ``TYPE_CHECKING`` count too; a module or package the table
does not place fails the test, so a new one is placed deliberately.
"""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cni_async"
ARCHITECTURE = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"

LAYERS: dict[str, list[str]] = {
    "ground": ["_errors", "_json", "_files", "_fanout", "_names", "_version"],
    "spec": ["_spec"],
    "libcni": ["_libcni"],
    "confdir": ["_confdir"],
    "observers": ["_observers"],
    "pod": ["_pod"],
    "faces": ["__init__", "__main__", "_cli", "_cliargs", "libcni", "_testing"],
}
FLOOR = {unit: floor for floor, units in enumerate(LAYERS.values()) for unit in units}
_IMPORT = re.compile(r"^\s*from (\.+)([\w.]*) import ([\w, ()\n]+?)(?:\)|$)", re.MULTILINE)


def modules() -> dict[str, Path]:
    """Every module by its dotted name under ``cni_async`` (``_pod.setup``, ``_errors``)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ours that ``name`` imports (``from .x import y`` and ``from . import x``)."""
    here = name.split(".")[:-1]
    found = set()
    for dots, target, names in _IMPORT.findall(path.read_text()):
        base = here[: len(here) - (len(dots) - 1)] if len(dots) > 1 else here
        stem = [*base, *target.split(".")] if target else base
        module = ".".join(stem) or "__init__"
        if module in known:
            found.add(module)
        elif f"{module}.__init__" in known:
            found.add(f"{module}.__init__")
        if not target:  # from . import x: x may be a module
            for item in re.findall(r"\w+", names):
                if ".".join([*stem, item]) in known:
                    found.add(".".join([*stem, item]))
    found.discard(name)
    return found


def unit(module: str) -> str:
    return module.split(".")[0]


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_every_module_has_a_layer() -> None:
    units = {unit(m) for m in GRAPH}
    assert units - FLOOR.keys() == set()
    assert FLOOR.keys() - units == set()


def test_the_package_is_not_flat() -> None:
    assert len([m for m in GRAPH if "." not in m]) <= 12


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    upward = sorted(m for m in GRAPH[module] if FLOOR[unit(m)] > FLOOR[unit(module)])
    assert upward == []


def test_no_import_cycles() -> None:
    try:
        TopologicalSorter(GRAPH).prepare()
    except CycleError as exc:  # pragma: no cover - the message is the point
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_graph_sees_imports() -> None:
    # The parser must find what it polices: the facade's imports reach every layer below.
    assert {"_pod.setup", "_confdir.source", "_libcni.engine", "_errors"} <= GRAPH["_pod.plugin"]
    assert "_libcni.runtime" in GRAPH["_libcni.engine"]


def test_the_architecture_page_places_every_module() -> None:
    page = ARCHITECTURE.read_text()
    for module in GRAPH:
        if module.endswith("__init__") or module in {"__main__", "_version"}:
            continue
        assert f"`{module}`" in page, module
