"""scripts/bench.py runs end to end on a tiny workload (no timing is asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_runs_on_a_tiny_workload(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--tiny", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    medians = result["workloads"]["tiny"]["median_s_per_epoch"]
    assert {"mlpkit", "hand-written loop", "scikit-learn"} <= set(medians)
    assert all(v > 0 for v in medians.values())
    assert "mlpkit" in proc.stdout and "vs hand-written" in proc.stdout


@pytest.mark.slow
def test_bench_startup_prints_the_floor_the_run_and_their_ratio(tmp_path):
    out = tmp_path / "startup.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--startup", "--reps", "1",
                           "--json", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["startup"]
    assert set(r["median"]) == {"floor", "run", "predict_help"} and all(v > 0 for v in r["median"].values())
    assert r["ratio"] == r["median"]["run"] / r["median"]["floor"]
    assert "run / floor" in proc.stdout and "predict.py --help" in proc.stdout
    assert not list(tmp_path.glob("**/metrics.json"))  # the runs went to a temporary directory
