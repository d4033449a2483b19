"""The scale benchmark runs end to end, small, and reports every section with nothing leaked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ..support.netns import require_real_plugins
from ..support.procs import run_benchmark

SCALE = Path(__file__).resolve().parents[2] / "benchmarks" / "scale.py"
SECTIONS = ("fill", "restart", "drain", "stale_gc", "files", "reload_churn", "growth")


@pytest.mark.privileged
def test_scale_reports_and_leaks_nothing(tmp_path: Path) -> None:
    require_real_plugins("bridge", "host-local")
    args = [sys.executable, str(SCALE), "--pods", "20", "--stale", "200", "--files", "20"]
    args += ["--churn-pods", "16", "--json", str(tmp_path / "r.json")]
    args += ["--plot", str(tmp_path / "r.png")]
    out = run_benchmark(args)
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["leaks"] == [] and report["errors"] == []
    assert set(SECTIONS) <= set(report)
    fill = report["fill"]
    assert [w["live_after"] for w in fill["waves"]] == [20]
    assert fill["full_node"]["leases"] == 20
    restart = report["restart"]
    assert restart["collected_pods"] == 2 and restart["valid_pods"] == 18
    after = restart["after_gc"]
    assert after["leases"] == after["cache_entries"] == after["bridge_veths"] == 18
    assert restart["start_s"] > 0 and restart["gc_s"] > 0 and restart["status_pass_s"] > 0
    assert sum(int(w["count"]) for w in report["drain"]["waves"]) == 18
    stale = report["stale_gc"]["runs"]
    assert [r["entries"] for r in stale] == [20, 66, 200]
    assert all(r["dels_run"] == r["entries"] and r["gc_s"] > 0 for r in stale)
    files = report["files"]["runs"]
    assert [(r["files"], r["networks_loaded"]) for r in files] == [
        (2, 2),
        (5, 5),
        (10, 10),
        (20, 20),
    ]
    churn = report["reload_churn"]
    assert churn["pods_per_mode"] == 16 and churn["with"]["pods_per_s"] > 0
    assert churn["without"]["pods_per_s"] > 0
    assert isinstance(report["growth"]["worse_than_linear"], list)
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
