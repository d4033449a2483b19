"""The churn benchmark (the README's main job) runs end to end and reports what it promises."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .support.netns import require_real_plugins

pytestmark = pytest.mark.privileged

CHURN = Path(__file__).resolve().parent.parent / "benchmarks" / "churn.py"


@pytest.mark.parametrize(
    ("config", "command"),
    [("A", [str(CHURN)]), ("B", ["-m", "cni_async", "bench"])],
    ids=["A-script", "B-cli"],
)
def test_churn_reports_and_leaks_nothing(tmp_path: Path, config: str, command: list[str]) -> None:
    require_real_plugins("bridge", "host-local", "portmap")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("the exec floor needs a C compiler")
    out = subprocess.run(
        [
            sys.executable,
            *command,
            "--config",
            config,
            "--pods",
            "6",
            "--concurrency",
            "1,3",
            "--json",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "r.png"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leaks: none" in out.stdout
    records = json.loads((tmp_path / "r.json").read_text())
    assert [(r["config"], r["concurrency"]) for r in records] == [(config, 1), (config, 3)]
    for r in records:
        assert r["pods"] == 6 and r["errors"] == [] and r["leaks"] == []
        assert r["pods_per_s"] > 0 and r["floor_pods_per_s"] > 0
        assert r["ratio_to_floor"] == pytest.approx(r["pods_per_s"] / r["floor_pods_per_s"])
        assert set(r["phases"]) == {"netns_add", "set_up", "status", "tear_down", "netns_del"}
        assert r["phases"]["set_up"]["p50_ms"] > 0
        assert r["cpu_s"] > 0 and r["children_cpu_s"] > 0 and r["peak_rss_mib"] > 0
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
