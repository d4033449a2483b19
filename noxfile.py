"""Development sessions: ``nox -s lint typecheck docs tests`` is what CI runs."""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"

PYPROJECT = nox.project.load_toml("pyproject.toml")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package and the tests."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "typing"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (any warning fails) into ``site/``.

    The examples the pages include (``docs/examples/*.py``) are run by the ``tests`` session
    (``tests/test_docs_examples.py``).
    """
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (both anyio backends; real-plugin tests need root)."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=["3.12", "3.13"])
def tests_other_pythons(session: nox.Session) -> None:
    """The suite on the other supported Pythons (where pyenv has them)."""
    tests(session)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """The pod-churn benchmark on real plugins (root; arguments after -- go to churn.py).

    It runs with nox's own interpreter (``.venv``'s, where ``.ci/setup`` installed the project).
    """
    session.run(sys.executable, "benchmarks/churn.py", *session.posargs)
