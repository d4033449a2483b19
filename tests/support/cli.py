"""Running the ``cni-async`` command line as a real process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# Variables the command line reads: a test sets the ones it wants, none leak in from outside.
CLI_VARIABLES = (
    "NETCONFPATH",
    "CONF_PATH",
    "CNI_PATH",
    "BIN_PATH",
    "CAP_ARGS",
    "CNI_ARGS",
    "CNI_IFNAME",
    "CNI_CACHE_DIR",
)


def cli_command() -> list[str]:
    """The installed ``cni-async`` console script next to this interpreter, or, when it is
    not installed, ``python -m cni_async``."""
    script = shutil.which("cni-async", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "cni_async"]


def cli_env(dirs: dict[str, Path] | None = None, **env: str) -> dict[str, str]:
    """This process's environment without the command line's variables, then ``dirs``'s
    ``conf``, ``bin`` and ``cache`` as ``NETCONFPATH``, ``CNI_PATH`` and ``CNI_CACHE_DIR``, then
    ``env``."""
    environment = {k: v for k, v in os.environ.items() if k not in CLI_VARIABLES}
    if dirs is not None:
        environment.update(
            NETCONFPATH=str(dirs["conf"]),
            CNI_PATH=str(dirs["bin"]),
            CNI_CACHE_DIR=str(dirs["cache"]),
        )
    environment.update(env)
    return environment


def run_cli(
    dirs: dict[str, Path] | None, *args: str, cwd: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``cni-async ARGS`` (see :func:`cli_command`) on ``dirs`` (see :func:`cli_env`)."""
    return subprocess.run(
        [*cli_command(), *args],
        capture_output=True,
        text=True,
        errors="replace",  # messages may quote a path that is not UTF-8
        env=cli_env(dirs, **env),
        cwd=cwd,
        timeout=60,
        check=False,
    )
