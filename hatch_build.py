"""The build's one native step: the C spawner thread, ``cni_async/_libcni/_spawnloop.so``.

It is compiled with the machine's C compiler (``$CC``, else ``cc`` or ``gcc``) into the source
tree, where an editable install finds it, and shipped in the wheel, which is then tagged for
this platform (``py3-none-linux_x86_64``, say). Without a compiler, or if the compilation fails, the package is built without it
and uses its Python spawner thread; the build says so, and does not fail.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "cni_async/_libcni/_spawnloop.c"
LIBRARY = "cni_async/_libcni/_spawnloop.so"
FLAGS = ["-O2", "-shared", "-fPIC", "-pthread", "-Wall", "-Wextra"]


def compiler() -> list[str] | None:
    """The C compiler's command, or ``None`` if this machine has none."""
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    found = shutil.which("cc") or shutil.which("gcc")
    return [found] if found else None


def build(root: Path) -> str | None:
    """Compile the library in ``root``; ``None`` if it was built, else why not."""
    cc = compiler()
    if cc is None:
        return "no C compiler found (set CC)"
    source, library = root / SOURCE, root / LIBRARY
    partial = library.with_suffix(".so.tmp")
    # The library says which source it was built from: the package uses none built from other.
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    command = [*cc, *FLAGS, f'-DSL_SOURCE_HASH="{digest}"', "-o", str(partial), str(source)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return f"{shlex.join(command)}: {exc}"
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        return f"{shlex.join(command)} failed:\n{done.stderr}"
    partial.replace(library)  # a library in use is replaced, never overwritten in place
    return None


class SpawnLoopHook(BuildHookInterface):  # type: ignore[type-arg]
    """Builds the C spawner thread into the wheel (and the editable tree)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        why_not = build(Path(self.root))
        if why_not is not None:
            self.app.display_warning(
                f"cni_async: building without the C spawner thread ({why_not}); "
                "the Python one will be used"
            )
            (Path(self.root) / LIBRARY).unlink(missing_ok=True)  # never a stale one
            return
        build_data["artifacts"].append(LIBRARY)
        build_data["pure_python"] = False
        # Loaded through ctypes: tied to the platform, not to a Python version or ABI.
        platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        build_data["tag"] = f"py3-none-{platform}"
