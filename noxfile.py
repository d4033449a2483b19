"""Development sessions: ``nox -s lint typecheck docs tests tests_lowest unit_unprivileged``
is what CI runs.

Two kinds of dependencies are treated differently:

- The development tools (ruff, mypy, pytest, mkdocs and its plugins, nox, ...) are locked in
  ``constraints/dev.txt``, so that a release of one cannot turn CI red. ``nox -s lock`` remakes
  the file from the newest releases; commit it when the suite passes with it.
- The runtime dependencies (``[project] dependencies`` and the extras) float within the ranges
  ``pyproject.toml`` allows, as they do for a user. ``tests`` runs the suite against the newest
  versions pip resolves today, ``tests_lowest`` against the lowest versions of every range.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests", "tests_lowest", "unit_unprivileged"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV_LOCK = "constraints/dev.txt"
EXTRAS = ",".join(sorted(PYPROJECT["project"]["optional-dependencies"]))
# Installed by the test sessions only to check the extras; they float with the runtime
# dependencies (opentelemetry-sdk must match opentelemetry-api's version exactly).
_FLOATING = re.compile(r"^(opentelemetry-|prometheus-client\b)")


def _select_pyenv_versions() -> None:
    """pyenv's shims run only the versions pyenv has selected (``python3.12`` fails otherwise):
    select every installed 3.x after the one running nox, so that ``tests_other_pythons``
    finds them and ``python3`` stays what it was. A ``PYENV_VERSION`` already set is kept."""
    versions = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    if "PYENV_VERSION" in os.environ or not versions.is_dir():
        return
    running = ".".join(map(str, sys.version_info[:3]))
    others = sorted(p.name for p in versions.iterdir() if p.name.startswith("3."))
    if running in others:
        os.environ["PYENV_VERSION"] = ":".join([running, *(v for v in others if v != running)])


_select_pyenv_versions()


def _runtime_names() -> set[str]:
    """The normalised names of the runtime dependencies and extras (never locked)."""
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in PYPROJECT["project"]["optional-dependencies"].values():
        reqs.extend(extra)
    return {_normalise(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]) for req in reqs}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _install_tools(session: nox.Session, *groups: str, project: bool = True) -> None:
    """Install dependency groups under the development lock (and the project, editable)."""
    args = ["-c", DEV_LOCK]
    if project:
        args += ["-e", f".[{EXTRAS}]"]
    for group in groups:
        args += _group(group)
    session.install(*args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree, and the C spawner thread's
    source compiled with every warning an error (the build itself only shows them)."""
    _install_tools(session, "lint", project=False)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        session.error("no C compiler: the C spawner thread's source cannot be checked")
    session.run(
        cc, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-std=gnu11",
        "cni_async/_libcni/_spawnloop.c", external=True,
    )  # fmt: skip


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    _install_tools(session, "typing")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (any warning fails) into ``site/``.

    The examples the pages include (``docs/examples/*.py``) are run by the ``tests`` session
    (``tests/test_docs_examples.py``).
    """
    _install_tools(session, "docs")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite (both anyio backends) on the newest allowed runtime dependencies.

    Real-plugin tests need root. The runtime dependencies are upgraded on every run, so a
    reused virtualenv tests today's releases as a fresh ``pip install`` would.
    """
    _install_tools(session, "test")
    # The SDK pins the API exactly: upgraded together, or a reused venv keeps a mismatched pair.
    session.install(
        "--upgrade", "--upgrade-strategy", "eager", "-c", DEV_LOCK, "-e", f".[{EXTRAS}]",
        "opentelemetry-sdk",
    )  # fmt: skip
    _show_runtime_versions(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def tests_lowest(session: nox.Session) -> None:
    """The whole suite on the lowest version of every runtime dependency's allowed range.

    uv resolves the project with ``--resolution lowest-direct`` (each direct dependency at the
    lowest version its range allows, the packages below them as new as that permits); the
    result constrains the install, so a lower bound the code does not really support fails here.
    """
    _install_tools(session, "lowest", project=False)
    lowest = Path(session.create_tmp()) / "lowest.txt"
    lowest.unlink(missing_ok=True)  # uv would prefer the versions of an earlier run's file
    extras = [arg for name in EXTRAS.split(",") for arg in ("--extra", name)]
    session.run(
        # The lock constrains the packages below the direct ones too: a pin of both files
        # (typing_extensions, say) must not conflict when one of them has a newer release.
        "uv", "pip", "compile", "pyproject.toml", *extras, "--resolution", "lowest-direct",
        "--constraint", DEV_LOCK,
        "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
        "--no-header", "--no-annotate", "--quiet", "-o", str(lowest),
    )  # fmt: skip
    pins = lowest.read_text()
    api = re.search(r"^opentelemetry-api==(\S+)$", pins, re.MULTILINE)
    if api:  # the SDK used by the tests must match the API exactly
        pins += f"opentelemetry-sdk=={api.group(1)}\n"
        lowest.write_text(pins)
    session.install("-c", str(lowest), "-c", DEV_LOCK, "-e", f".[{EXTRAS}]")
    session.install("-c", str(lowest), "-c", DEV_LOCK, *_group("test"))
    _show_runtime_versions(session)
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(venv_backend="none")
def unit_unprivileged(session: nox.Session) -> None:
    """``tests/unit`` as the user ``nobody`` with no capabilities: the proof that it needs no root.

    Run as root, it copies the project to a world-readable directory, installs it with the
    system's Python (``nobody`` cannot run an interpreter under ``/root``) and runs the unit
    tests through ``setpriv``. Run as anyone else, it runs them in place.
    """
    if os.geteuid() != 0:
        session.run(sys.executable, "-m", "pytest", "tests/unit", *session.posargs)
        return
    work = Path(tempfile.mkdtemp(prefix="cni-async-unit-"))
    here = Path.cwd()
    try:
        work.chmod(0o755)
        src = work / "src"
        shutil.copytree(
            here, src, ignore=shutil.ignore_patterns(".git", ".venv", ".nox", "__pycache__")
        )
        run = work / "run"  # the one place nobody may write (pytest's and hypothesis's files)
        run.mkdir()
        shutil.chown(run, "nobody", "nogroup")
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        venv = work / "venv"
        session.run(python, "-m", "venv", str(venv), external=True)
        session.run(
            str(venv / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
            "-c", DEV_LOCK, "-e", f"{src}[{EXTRAS}]", *_group("test"), external=True,
        )  # fmt: skip
        session.chdir(run)
        session.run(
            "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
            "env", "CNI_ASYNC_REQUIRE_PRIVILEGED=1", f"HOME={run}",
            str(venv / "bin/python"), "-m", "pytest", "--rootdir", str(src),
            "-c", str(src / "pyproject.toml"), str(src / "tests/unit"), *session.posargs,
            external=True,
        )  # fmt: skip
    finally:
        session.chdir(here)
        shutil.rmtree(work, ignore_errors=True)


@nox.session(python=["3.12", "3.13"])
def tests_other_pythons(session: nox.Session) -> None:
    """The suite on the other supported Pythons (where pyenv has them)."""
    tests(session)


@nox.session
def lock(session: nox.Session) -> None:
    """Remake ``constraints/dev.txt`` from the newest releases of the development tools."""
    session.install("-e", f".[{EXTRAS}]", *_group("dev"))
    frozen = session.run("python", "-m", "pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    runtime = _runtime_names()
    kept = [
        line
        for line in frozen.splitlines()
        if "==" in line
        and _normalise(line.split("==")[0]) not in runtime
        and not _FLOATING.match(_normalise(line.split("==")[0]))
    ]
    header = (
        "# The development tools, locked (nox -s lock remakes this file). The runtime\n"
        "# dependencies and extras are left out on purpose: they float within pyproject's\n"
        "# ranges, tested at both ends by the tests and tests_lowest sessions.\n"
    )
    Path(DEV_LOCK).write_text(header + "\n".join(sorted(kept, key=str.lower)) + "\n")
    session.log(f"wrote {len(kept)} pins to {DEV_LOCK}")


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The pod-churn benchmark on real plugins (root; arguments after -- go to churn.py).

    It runs with nox's own interpreter (``.venv``'s, where ``.ci/setup`` installed the project).
    """
    session.run(sys.executable, "benchmarks/churn.py", *session.posargs)


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _show_runtime_versions(session: nox.Session) -> None:
    names = sorted(_runtime_names())
    session.run(
        "python", "-c",
        "import importlib.metadata as m, sys\n"
        "for n in sys.argv[1:]:\n"
        "    try: print(f'{n}=={m.version(n)}')\n"
        "    except m.PackageNotFoundError: pass",
        *names,
    )  # fmt: skip
