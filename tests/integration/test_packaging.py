"""What a user who installs the wheel or unpacks the sdist gets.

The distributions are built with the build backend installed in the test environment (no
network, no build isolation), from this checkout.
"""

from __future__ import annotations

import email
import email.message
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A Markdown link whose target is neither absolute nor an anchor: it would break on PyPI.
RELATIVE_LINK = re.compile(r"\]\((?!https?://|#)[^)]*\)")


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(zf.read(name))


def test_wheel_and_sdist_carry_the_apache_license(dists: tuple[Path, Path]) -> None:
    wheel, sdist = dists
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert b"Apache License" in zf.read(name)
    with tarfile.open(sdist) as tf:
        (member,) = [m for m in tf.getmembers() if m.name.endswith("/LICENSE")]
        data = tf.extractfile(member)
        assert data is not None
        assert b"Version 2.0, January 2004" in data.read()
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License-File"] == "LICENSE"


def test_metadata_has_project_urls(dists: tuple[Path, Path]) -> None:
    urls = dict(value.split(", ", 1) for value in _metadata(dists[0]).get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository", "Issues"} <= urls.keys()
    assert all(url.startswith("https://") for url in urls.values())


def test_description_links_work_outside_the_repository(dists: tuple[Path, Path]) -> None:
    meta = _metadata(dists[0])
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert isinstance(description, str)
    assert "cni-async.github.io/cni-async/quickstart/" in description
    assert RELATIVE_LINK.findall(description) == []
    # The README in the checkout does use relative links: the rewrite is what is tested.
    assert RELATIVE_LINK.findall((ROOT / "README.md").read_text())


def test_installed_cli_offers_only_what_works_without_a_checkout(
    dists: tuple[Path, Path], tmp_path: Path
) -> None:
    """From the wheel alone (no ``benchmarks/`` beside it), every subcommand offered works."""
    site = tmp_path / "site"
    with zipfile.ZipFile(dists[0]) as zf:
        zf.extractall(site)
    assert not any(site.glob("benchmarks"))
    run = subprocess.run(
        [sys.executable, "-m", "cni_async", "--help"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert str(site) in _module_path(site, tmp_path)
    assert "networks" in run.stdout
    assert "bench" not in run.stdout


def _module_path(site: Path, cwd: Path) -> str:
    """Where ``cni_async`` is imported from with the unpacked wheel first on the path."""
    return subprocess.run(
        [sys.executable, "-c", "import cni_async; print(cni_async.__file__)"],
        cwd=cwd,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
