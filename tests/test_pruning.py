"""The median stopping rule (`pruning=median`) on hand-made sweep directories, its config group, and
the training loop's hook. The rule in real sweeps (basic, joblib and Optuna) is in test_sweeps.py."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import List, Optional

import pytest

from mlpkit import ConfigError, Trainer
from mlpkit.training.callbacks import Pruning
from mlpkit.app.config import validate
from mlpkit.data import load_dataset
from mlpkit.models.mlp import MLP
from mlpkit.training.pruning import PRUNERS, MedianPruner

from conftest import REPO, compose_config, group_options


def job(sweep: Path, name: str, val_loss: Optional[List[float]], status: str = "completed") -> Path:
    """A sibling job directory; val_loss None = a job still running (no metrics.json yet)."""
    d = sweep / name
    d.mkdir(parents=True)
    if val_loss is not None:
        (d / "metrics.json").write_text(json.dumps({"status": status, "history": {"val_loss": val_loss}}))
    return d


def own(val_loss: List[float]) -> dict:
    return {"val_loss": val_loss}


def test_prunes_a_job_worse_than_the_median_of_finished_jobs(tmp_path):
    job(tmp_path, "0", [1.0, 0.5, 0.4])
    job(tmp_path, "1", [1.0, 0.7, 0.6])
    job(tmp_path, "2", [1.0, 0.9, 0.3])
    pruner = MedianPruner(tmp_path, warmup_epochs=1, min_completed=3)
    # epoch 2: best so far of the siblings 0.5, 0.7, 0.9 -> median 0.7
    assert pruner.should_prune(2, own([0.9, 0.71]))
    assert "median 0.7000 of the 3 finished jobs" in pruner.message
    assert not pruner.should_prune(2, own([0.9, 0.69]))
    # the job's best so far counts, not its last epoch: 0.65 at epoch 1 is below the median
    assert not pruner.should_prune(2, own([0.65, 0.8]))
    # epoch 3: siblings' best up to epoch 3 are 0.4, 0.6, 0.3 -> median 0.4
    assert pruner.should_prune(3, own([0.9, 0.8, 0.45]))


def test_a_tie_with_the_median_is_not_worse(tmp_path):
    job(tmp_path, "0", [0.5, 0.5])
    job(tmp_path, "1", [0.7, 0.7])
    job(tmp_path, "2", [0.9, 0.9])
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=1)
    assert not pruner.should_prune(1, own([0.7]))
    assert pruner.should_prune(1, own([0.7000001]))


def test_even_count_takes_the_mean_of_the_middle_two(tmp_path):
    for i, v in enumerate([0.2, 0.4, 0.6, 0.8]):
        job(tmp_path, str(i), [v])
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=4)
    assert not pruner.should_prune(1, own([0.5]))
    assert pruner.should_prune(1, own([0.51]))


def test_warmup_epochs_are_never_pruned(tmp_path):
    for i in range(3):
        job(tmp_path, str(i), [0.1] * 10)
    pruner = MedianPruner(tmp_path, warmup_epochs=3, min_completed=1)
    hopeless = own([5.0] * 10)
    assert [pruner.should_prune(e, hopeless) for e in range(1, 6)] == [False, False, False, True, True]


def test_needs_min_completed_finished_jobs(tmp_path):
    job(tmp_path, "0", [0.1, 0.1])
    job(tmp_path, "1", None)  # still running
    job(tmp_path, "2", [0.1, 0.1])
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=3)
    assert not pruner.should_prune(2, own([5.0, 5.0]))
    # a third job finishes: the same pruner sees it at the next epoch
    (tmp_path / "1" / "metrics.json").write_text(json.dumps({"status": "early_stopped",
                                                             "history": {"val_loss": [0.1]}}))
    assert pruner.should_prune(2, own([5.0, 5.0]))


def test_only_jobs_that_ran_to_their_end_are_references(tmp_path):
    job(tmp_path, "0", [0.1, 0.1], status="pruned")
    job(tmp_path, "1", [0.1, 0.1], status="diverged")
    job(tmp_path, "2", [0.1, 0.1], status="interrupted")
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "metrics.json").write_text("{not json")  # half-written or damaged: skipped
    me = job(tmp_path, "4", [0.1, 0.1])  # this job's own (resumed) directory is never a sibling
    job(tmp_path, "5", [0.3, 0.2], status="early_stopped")
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=1, run_dir=me)
    assert pruner.finished_curves() == [[0.3, 0.2]]
    assert not pruner.should_prune(2, own([0.25, 0.2]))
    assert pruner.should_prune(2, own([0.25, 0.21]))
    assert not MedianPruner(tmp_path, warmup_epochs=0, min_completed=2, run_dir=me).should_prune(2, own([9.0, 9.0]))


def test_a_shorter_finished_job_counts_with_its_best_overall(tmp_path):
    job(tmp_path, "0", [0.9, 0.3], status="early_stopped")  # stopped after 2 epochs
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=1)
    assert pruner.should_prune(5, own([0.9, 0.8, 0.7, 0.6, 0.31]))
    assert not pruner.should_prune(5, own([0.9, 0.8, 0.7, 0.6, 0.3]))


def test_missing_values_in_a_curve_are_skipped(tmp_path):
    job(tmp_path, "0", [None, 0.4])  # metrics.json writes NaN and inf as null
    pruner = MedianPruner(tmp_path, warmup_epochs=0, min_completed=1)
    assert not pruner.should_prune(1, own([9.0]))  # no finite value at epoch 1: no reference
    assert pruner.should_prune(2, own([9.0, 0.5]))


# ---------------------------------------------------------------------------
# The config group


def test_group_options_match_the_registry():
    assert group_options("pruning") == sorted(PRUNERS)


@pytest.mark.parametrize("option", sorted(PRUNERS))
def test_every_option_composes_and_validates(option):
    cfg = compose_config([f"pruning={option}"])
    validate(cfg)
    assert cfg.pruning.name == option


def test_default_is_none():
    assert compose_config([]).pruning.name == "none"


@pytest.mark.parametrize("overrides, message", [
    (["pruning=none", "pruning.warmup_epochs=3"], "pruning.warmup_epochs is not a setting of pruning=none"),
    (["pruning=median", "pruning.warmup_epochs=-1"], "pruning.warmup_epochs=-1 is out of range"),
    (["pruning=median", "pruning.min_completed=0"], "pruning.min_completed=0 is out of range; allowed: [1, inf)"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(compose_config(overrides))


# ---------------------------------------------------------------------------
# The training loop's hook


class PruneAt:
    """A pruner that stops the run after a given epoch, recording what the loop told it."""

    def __init__(self, epoch: int):
        self.epoch, self.seen, self.message = epoch, [], "pruned by the test"

    def should_prune(self, epoch, history):
        self.seen.append((epoch, len(history["val_loss"])))
        return epoch >= self.epoch


def test_trainer_stops_with_status_pruned():
    data = load_dataset("moons", n_samples=120, noise=0.2, seed=0)
    pruner = PruneAt(3)
    result = Trainer(optimizer="adam", lr=1e-2, max_epochs=10, callbacks=[Pruning(pruner)]).fit(
        MLP(data.in_dim, [8], data.out_dim), data)
    assert result.status == "pruned" and result.message == "pruned by the test"
    assert result.epochs_run == 3 and len(result.history["val_loss"]) == 3
    assert pruner.seen == [(1, 1), (2, 2), (3, 3)]  # asked after each val pass, with that epoch's history
    assert result.best_val_loss == min(result.history["val_loss"])
    assert "accuracy" in result.test  # a pruned run is still tested


def test_a_single_run_warns_and_is_not_pruned(tmp_path, caplog):
    from mlpkit.app.cli import train_from_config

    cfg = compose_config(["pruning=median", "pruning.warmup_epochs=0", "pruning.min_completed=1", "data=moons",
                          "data.n_samples=100", "model.hidden=[4]", "trainer.max_epochs=3", "early_stopping=none",
                          "trainer.progress=false", "trainer.histogram_every_n_epochs=0"])
    job(tmp_path, "other_run", [0.0, 0.0, 0.0])  # an unrelated finished run beside it is not a sibling
    with caplog.at_level("WARNING", logger="mlpkit"):
        train_from_config(cfg, tmp_path / "run")
    assert "a single run has none, so it is not pruned" in caplog.text
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "completed"


# ---------------------------------------------------------------------------
# scripts/prune_report.py


def test_prune_report_sums_a_sweep_and_replays_the_rule(tmp_path):
    spec = importlib.util.spec_from_file_location("prune_report", REPO / "scripts" / "prune_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    curves = {"0_a": [0.5, 0.4, 0.3, 0.2], "1_b": [0.6, 0.5, 0.4, 0.3], "2_c": [0.9, 0.9, 0.9, 0.9],
              "10_d": [0.45, 0.35, 0.25, 0.15]}  # job 10 runs last, although its name sorts second
    for name, curve in curves.items():
        d = job(tmp_path, name, None)
        (d / "metrics.json").write_text(json.dumps({"status": "completed", "epochs_run": len(curve), "seconds": 1.5,
                                                    "best_val_loss": min(curve), "history": {"val_loss": curve}}))
    row = report.summarize(tmp_path)
    assert (row["jobs"], row["pruned"], row["epochs"], row["job_seconds"]) == (4, 0, 16, 6.0)
    assert (row["best_val_loss"], row["best_run"]) == (0.15, "10_d")
    # jobs 0 and 1 finish; job 2 trails their median from epoch 2 (after 1 warm-up epoch); job 10 is kept
    replayed = report.replay(tmp_path, warmup_epochs=1, min_completed=2)
    assert (replayed["pruned"], replayed["epochs"], replayed["best_run"]) == (1, 4 + 4 + 2 + 4, "10_d")
    assert "| 16 | +0% |" in report.table([row, replayed]) and "| 14 | -12% |" in report.table([row, replayed])
