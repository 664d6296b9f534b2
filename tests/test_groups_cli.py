"""One real 1-epoch training run through train.py for every option of every config group.

The options of a group run as one Hydra multirun (`-m group=a,b,c ...`: one process, many jobs), made
once by the first test that reads it; each (group, option) is then checked as its own test, on the
sweep's xdist worker (`xdist_group`). The sweeps run train.py in the test's process (`train_in_process`:
the same Hydra multirun, without a process's seconds of imports); test_sweeps runs sweeps as processes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import pytest

from mlpkit.data import DATASETS

from conftest import (DATE_RE, GROUPS, TIME_RE, TINY, Run, good_csv, group_options,
                      job_dirs, job_overrides, read_events, read_metrics, sweep_dirs, train_in_process)

REGRESSION = {name for name, source in DATASETS.items() if source.task == "regression"}
TWO_D = {name for name, source in DATASETS.items() if not source.is_table and source.columns == 2}  # 2-D inputs
DEAD = {"relu", "leaky_relu", "prelu"}  # the ReLU family: activations/dead_fraction/layer_<i>
SATURATED = {"sigmoid", "tanh"}  # activations/saturated_fraction/layer_<i>

# One sweep per group, except that two small groups share a grid sweep (each process costs
# seconds of imports; each extra job well under one).
SWEEPS = [("data",), ("activation",), ("init",), ("optimizer",), ("norm", "early_stopping"), ("scheduler",),
          ("model",)]
assert sorted(g for groups in SWEEPS for g in groups) == sorted(GROUPS)
SWEEP_OF = {g: groups for groups in SWEEPS for g in groups}


def swept_options(group: str) -> List[str]:
    """The options of one sweep: data=csv is swept apart, as it alone takes data.path (a setting that
    an option does not take is an error, so the data sweep shares no data.* setting)."""
    return [o for o in group_options(group) if (group, o) != ("data", "csv")]


def _sweep_args(groups: Tuple[str, ...], csv_path: str) -> List[str]:
    base = list(TINY)
    if "model" in groups:  # model=perceptron has no hidden layers: keep each option's own widths
        base = [a for a in base if not a.startswith("model.hidden")]
    if "data" in groups or groups == ("csv",):
        base = [a for a in base if not a.startswith("data")]
    if groups == ("csv",):
        return ["-m", "data=csv", f"data.path={csv_path}", *base]
    return ["-m", *(f"{g}={','.join(swept_options(g))}" for g in groups), *base]


def _run_sweep(root: Path, groups: Tuple[str, ...]) -> Tuple[Run, Path]:
    d = root / "groups" / "+".join(groups)
    d.mkdir(parents=True)
    csv_path = str(good_csv(d / "data.csv"))
    return train_in_process(_sweep_args(groups, csv_path), d), d


def _sweep_key(group: str, option: str = "") -> Tuple[str, ...]:
    return ("csv",) if (group, option) == ("data", "csv") else SWEEP_OF[group]


_DONE = {}


def sweep(group: str, option: str, factory) -> Tuple[Run, Path]:
    """The sweep holding group=option, made on the first call (`factory`: pytest's tmp_path_factory)."""
    groups = _sweep_key(group, option)
    if groups not in _DONE:
        _DONE[groups] = _run_sweep(factory.mktemp("groups"), groups)
    return _DONE[groups]


def on_sweep(group: str, option: str = ""):
    """The tests that read one sweep run on one xdist worker, which makes it once."""
    return pytest.mark.xdist_group(f"groups/{'+'.join(_sweep_key(group, option))}")


GROUP_OPTIONS = [pytest.param(g, o, id=f"{g}={o}", marks=on_sweep(g, o)) for g in GROUPS for o in group_options(g)]


def _jobs_for(sweep_root: Path, group: str, option: str) -> List[Path]:
    return [j for j in job_dirs(sweep_root) if f"{group}={option}" in job_overrides(j)]


@pytest.mark.slow
@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_option_trains_one_epoch_through_train_py(group, option, tmp_path_factory):
    run, root = sweep(group, option, tmp_path_factory)
    assert run.returncode == 0 and "Traceback" not in run.output, run.describe()
    jobs = _jobs_for(root, group, option)
    others = 1
    for g in SWEEP_OF[group]:
        others *= len(swept_options(g)) if g != group else 1
    assert len(jobs) == others, f"expected {others} sweep job(s) with {group}={option}: {jobs}\n{run.describe()}"
    for job in jobs:
        # outputs/multirun/<date>/<time>/<job>_<overrides>/
        assert TIME_RE.match(job.parent.name) and DATE_RE.match(job.parent.parent.name), job
        assert job.parent.parent.parent.name == "multirun"
        num, _, name = job.name.partition("_")
        assert num.isdigit() and f"{group}={option}" in name, job.name
        m = read_metrics(job)
        assert m["status"] in ("completed", "early_stopped"), m.get("message")
        assert m["epochs_run"] == 1
        assert len(m["history"]["train_loss"]) == len(m["history"]["val_loss"]) == 1
        assert math.isfinite(m["history"]["train_loss"][0]) and math.isfinite(m["best_val_loss"])
        scores = {k: v for k, v in m["test"].items() if k != "confusion_matrix"}
        assert scores and all(v is not None and math.isfinite(v) for v in scores.values()), m["test"]
        assert (job / "checkpoints" / "last.pt").is_file() and (job / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("option", [pytest.param(o, marks=on_sweep("data", o)) for o in group_options("data")])
def test_data_option_task_tags_and_test_metrics(option, tmp_path_factory):
    run, root = sweep("data", option, tmp_path_factory)
    jobs = _jobs_for(root, "data", option)
    assert jobs, run.describe()
    job = jobs[0]
    m = read_metrics(job)
    ev = read_events(job)
    for tag in ("loss/train", "loss/val", "lr", "grads/layer_0", "grads/layer_1"):
        assert ev.steps(tag) == [1], f"{tag}: {ev.scalars.get(tag)}"
    if option in REGRESSION:
        assert m["task"] == "regression"
        assert not [t for t in ev.scalars if t.startswith("accuracy/")]
        assert {"rmse", "r2"} <= set(m["test"]) and m["test"]["rmse"] >= 0
    else:
        assert m["task"] in ("binary", "multiclass")
        assert ev.steps("accuracy/train") == [1] and ev.steps("accuracy/val") == [1]
        assert 0 <= m["test"]["accuracy"] <= 1
        assert {"balanced_accuracy", "f1_macro", "roc_auc"} <= set(m["test"])
        cm = m["test"]["confusion_matrix"]
        assert len(cm) == len(m["classes"]) and sum(map(sum, cm)) > 0
        assert "images/confusion_matrix" in ev.images
    if option in TWO_D:
        assert "images/decision_boundary" in ev.images


@pytest.mark.slow
@pytest.mark.parametrize("option", [pytest.param(o, marks=on_sweep("activation"))
                                    for o in sorted((DEAD | SATURATED) & set(group_options("activation")))])
def test_activation_option_logs_its_unit_diagnostic(option, tmp_path_factory):
    run, root = sweep("activation", "", tmp_path_factory)
    jobs = _jobs_for(root, "activation", option)
    assert jobs, run.describe()
    ev = read_events(jobs[0])
    kind = "dead_fraction" if option in DEAD else "saturated_fraction"
    other = "saturated_fraction" if option in DEAD else "dead_fraction"
    values = ev.values(f"activations/{kind}/layer_0")
    assert ev.steps(f"activations/{kind}/layer_0") == [1], sorted(ev.scalars)
    assert 0 <= values[0] <= 1
    assert not [t for t in ev.scalars if t.startswith(f"activations/{other}")]


@pytest.mark.slow
@pytest.mark.parametrize("groups", [pytest.param(g, id="+".join(g), marks=on_sweep(g[0])) for g in SWEEPS])
def test_each_sweep_is_one_sweep_directory(groups, tmp_path_factory):
    run, root = sweep(groups[0], "", tmp_path_factory)
    assert run.returncode == 0, run.describe()
    assert len(sweep_dirs(root)) == 1, sweep_dirs(root)
    expected = 1
    for g in groups:
        expected *= len(swept_options(g))
    assert len(job_dirs(root)) == expected
    assert not (root / "outputs" / "runs").exists(), "a sweep job wrote into outputs/runs"
