"""Helpers to install fake plugins and network configurations for tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

_SOURCE = Path(__file__).with_name("fakeplugin.py")


class FakePlugin:
    """A fake plugin binary installed in a test's bin dir; see ``fakeplugin.py``."""

    def __init__(self, bin_dir: Path, name: str) -> None:
        self.path = bin_dir / name
        state = bin_dir.parent / "fakes"
        state.mkdir(exist_ok=True)
        self.log = state / f"{name}.log"
        self._behaviour_file = state / f"{name}.behaviour.json"
        self._behaviour: dict[str, dict[str, Any]] = {}
        self._save()
        self.path.write_text(f"#!{sys.executable} -SE\n" + _SOURCE.read_text())
        self.path.chmod(0o755)

    def _save(self) -> None:
        # Atomically: a plugin running meanwhile reads the old behaviour or the new, never half.
        tmp = self._behaviour_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._behaviour))
        os.replace(tmp, self._behaviour_file)

    def on(self, command: str, **behaviour: Any) -> FakePlugin:
        """Set what the plugin does for ``command`` (``"*"`` for every command,
        ``"ADD:<container ID>"`` for one container's ADD only); with ``times=N`` only the
        first N runs of ``command`` in the plugin's whole log behave so, later ones as if
        nothing were set."""
        self._behaviour[command] = behaviour
        self._save()
        return self

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        """Every recorded run (only those of ``command`` when given), oldest first."""
        if not self.log.exists():
            return []
        records = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [r for r in records if command is None or r["command"] == command]

    def stdins(self, command: str) -> list[dict[str, Any]]:
        return [json.loads(r["stdin"]) for r in self.calls(command)]

    def commands(self) -> list[str]:
        return [r["command"] for r in self.calls()]


def write_conflist(
    conf_dir: Path,
    name: str,
    plugins: list[dict[str, Any]],
    *,
    version: str = "1.1.0",
    filename: str | None = None,
    **extra: Any,
) -> Path:
    """Write ``<conf_dir>/<filename or name.conflist>`` and return its path."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / (filename or f"{name}.conflist")
    body = {"cniVersion": version, "name": name, "plugins": plugins, **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)
    return path


def two_networks(dirs: dict[str, Path]) -> dict[str, FakePlugin]:
    """``neta`` (plugin ``fa``) and ``netb`` (plugin ``fb``), in that file order; the fakes."""
    write_conflist(dirs["conf"], "neta", [{"type": "fa"}], filename="10-neta.conflist")
    write_conflist(dirs["conf"], "netb", [{"type": "fb"}], filename="20-netb.conflist")
    return {name: FakePlugin(dirs["bin"], name) for name in ("fa", "fb")}


def observed_plugin(dirs: dict[str, Path], *observers: Any, **kw: Any) -> Any:
    """A non-watching ``CNIPlugin`` on ``dirs`` with ``observers``."""
    from cni_async import CNIPlugin

    options: dict[str, Any] = {"watch": False, "cleanup_timeout": 10, **kw}
    return CNIPlugin(
        str(dirs["conf"]), [str(dirs["bin"])], str(dirs["cache"]), observers=observers, **options
    )
