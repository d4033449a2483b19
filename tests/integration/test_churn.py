"""The churn benchmark (the README's main job) runs end to end and reports what it promises."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from ..support.netns import require_real_plugins, unavailable
from ..support.procs import run_benchmark

CHURN = Path(__file__).resolve().parents[2] / "benchmarks" / "churn.py"


def load_churn() -> Any:
    spec = importlib.util.spec_from_file_location("churn", CHURN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slices_alternate_and_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """cni_async, floor, floor, cni_async...; pods split evenly; times summed, samples pooled."""
    churn = load_churn()
    calls: list[tuple[str, int, str]] = []

    def fake_measure(node: str, spec: dict[str, Any], label: str) -> dict[str, Any]:
        calls.append((spec["mode"], spec["pods"], spec["prefix"]))
        n = len(calls)
        if spec["mode"] == "library":
            return {
                "elapsed_s": float(n),
                "samples": {p: [n / 1000] * spec["pods"] for p in churn.PHASES},
                "cpu_s": 0.5,
                "children_cpu_s": 0.25,
                "peak_rss_mib": 10.0 + n,
                "errors": [],
                "leaks": ["1 veths"] if n == 4 else [],
            }
        return {
            "floor_elapsed_s": n / 2,
            "floor_samples": {p: [n / 1000] * spec["pods"] for p in churn.FLOOR_PHASES},
            "floor_cpu_s": 0.125,
            "floor_errors": [],
            "floor_leaks": [],
        }

    monkeypatch.setattr(churn, "measure", fake_measure)
    spec = {"config": "B", "concurrency": 8, "prefix": "cnbx"}
    record = churn.measure_interleaved("node", spec, 9, 3)
    assert calls == [
        ("library", 3, "cnbxs0"),
        ("floor", 3, "cnbxs0"),
        ("floor", 3, "cnbxs1"),
        ("library", 3, "cnbxs1"),
        ("library", 3, "cnbxs2"),
        ("floor", 3, "cnbxs2"),
    ]
    assert record["slices"] == 3
    assert record["elapsed_s"] == 1 + 4 + 5
    assert record["floor_elapsed_s"] == (2 + 3 + 6) / 2
    assert record["pods_per_s"] == pytest.approx(9 / 10)
    assert record["ratio_to_floor"] == pytest.approx(5.5 / 10)
    assert record["cpu_s"] == 1.5 and record["children_cpu_s"] == 0.75
    assert record["cpu_ms_per_pod"] == pytest.approx(1500 / 9)
    assert record["peak_rss_mib"] == 15.0
    assert record["leaks"] == ["run 2: 1 veths"]
    assert record["phases"]["set_up"]["p50_ms"] == pytest.approx(4.0)  # 1, 4, 5 ms x 3 pods
    assert record["floor_phases"]["add"]["p99_ms"] == pytest.approx(6.0)


def test_fewer_pods_than_slices_runs_no_empty_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    churn = load_churn()
    sizes: list[int] = []

    def fake_measure(node: str, spec: dict[str, Any], label: str) -> dict[str, Any]:
        sizes.append(spec["pods"])
        if spec["mode"] == "library":
            samples = {p: [0.001] for p in churn.PHASES}
            return {
                "elapsed_s": 1.0,
                "samples": samples,
                "cpu_s": 0.0,
                "children_cpu_s": 0.0,
                "peak_rss_mib": 1.0,
                "errors": [],
                "leaks": [],
            }
        samples = {p: [0.001] for p in churn.FLOOR_PHASES}
        return {
            "floor_elapsed_s": 1.0,
            "floor_samples": samples,
            "floor_cpu_s": 0.0,
            "floor_errors": [],
            "floor_leaks": [],
        }

    monkeypatch.setattr(churn, "measure", fake_measure)
    record = churn.measure_interleaved(
        "node", {"config": "A", "concurrency": 1, "prefix": "p"}, 1, 2
    )
    assert sizes == [1, 1] and record["slices"] == 1 and record["ratio_to_floor"] == 1.0


@pytest.mark.parametrize(
    ("config", "command"),
    [("A", [str(CHURN)]), ("B", ["-m", "cni_async", "bench"])],
    ids=["A-script", "B-cli"],
)
@pytest.mark.privileged
def test_churn_reports_and_leaks_nothing(tmp_path: Path, config: str, command: list[str]) -> None:
    require_real_plugins("bridge", "host-local", "portmap")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        unavailable("the exec floor needs a C compiler")
    args = [sys.executable, *command, "--config", config, "--pods", "6", "--concurrency", "1,3"]
    args += ["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    out = run_benchmark(args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "leaks: none" in out.stdout
    records = json.loads((tmp_path / "r.json").read_text())
    assert [(r["config"], r["concurrency"]) for r in records] == [(config, 1), (config, 3)]
    for r in records:
        assert r["pods"] == 6 and r["slices"] == 2
        assert r["errors"] == [] and r["leaks"] == [] and r["floor_leaks"] == []
        assert r["pods_per_s"] > 0 and r["floor_pods_per_s"] > 0
        assert r["ratio_to_floor"] == pytest.approx(r["pods_per_s"] / r["floor_pods_per_s"])
        assert set(r["phases"]) == {"netns_add", "set_up", "status", "tear_down", "netns_del"}
        assert r["phases"]["set_up"]["p50_ms"] > 0
        assert r["cpu_s"] > 0 and r["children_cpu_s"] > 0 and r["peak_rss_mib"] > 0
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.privileged
def test_the_blocking_cycle_measurement_runs_each_side_and_cleans_up() -> None:
    """``blocking_cycle.py`` (the hot path's measurement of blocking threads against cni_async)
    runs B's pods each way, in alternating order, reports each round and the medians, and
    leaves no namespace."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        unavailable("configuration B's plugin is built with a C compiler")
    script = CHURN.with_name("blocking_cycle.py")
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    out = run_benchmark(
        [sys.executable, str(script), "--pods", "6", "--concurrency", "2", "--rounds", "2"]
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rounds = [line.split() for line in out.stdout.splitlines() if line.startswith("round")]
    sides = ["cni_async", "no_exec", "blocking"]
    assert [(r[1], r[2]) for r in rounds] == [
        *(("1", side) for side in sides),
        *(("2", side) for side in reversed(sides)),
    ]
    for r in rounds:
        assert float(r[3]) > 0 and float(r[5]) > 0  # pods/s, CPU ms per pod
    assert sum(line.startswith("median") for line in out.stdout.splitlines()) == 3
    assert set(os.listdir("/run/netns")) <= before
