"""The packaged experiments (configs/experiment/): each sweep runs as a user would run it,
`python train.py -m experiment=<name>`, and its claim is checked with numbers from the
runs' own metrics.json files.

These are the slowest runs of the suite (10-25 s each on 2 cores); each test runs its own sweep, through
train.py in this process (`train_in_process`: the same Hydra multirun, without a process's imports).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Dict, List

import pytest
import yaml

from conftest import train_in_process

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))

pytestmark = pytest.mark.slow


class Run:
    """One job of a sweep: its overrides and its metrics.json."""

    def __init__(self, job_dir: Path):
        self.dir = job_dir
        self.metrics = json.loads((job_dir / "metrics.json").read_text())
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        self.overrides = dict(o.split("=", 1) for o in overrides if "=" in o)

    def __getitem__(self, key: str):
        return self.metrics[key]

    @property
    def history(self) -> Dict[str, List]:
        return self.metrics["history"]

    def grad_ratio(self) -> float:
        """Mean over epochs of |grad W_0| / |grad W_last|: the first layer's gradient vs the last's."""
        ratios = [g[0] / g[-1] for g in self.history["grad_norm"] if g[-1] > 0]
        return statistics.mean(ratios)


def _run_experiment(root: Path, name: str):
    # the environment as a user has it: the experiments' numbers depend on torch's own thread count
    return train_in_process(["-m", f"experiment={name}", "trainer.progress=false"], root / f"exp_{name}",
                            one_thread=False)


def sweep(name: str, tmp_path_factory) -> List[Run]:
    """`python train.py -m experiment=<name>`; its jobs as Runs."""
    run = _run_experiment(tmp_path_factory.mktemp(name), name)
    assert run.returncode == 0, run.describe()
    jobs = sorted(run.cwd.glob("outputs/multirun/*/*/*/metrics.json"))
    assert jobs, f"experiment {name} left no metrics.json"
    return [Run(p.parent) for p in jobs]


def pick(runs: List[Run], **match) -> List[Run]:
    """The runs whose overrides contain every key=value in `match` (dots written as __)."""
    want = {k.replace("__", "."): str(v) for k, v in match.items()}
    found = [r for r in runs if all(r.overrides.get(k) == v for k, v in want.items())]
    assert found, f"no run with {want} among {[r.overrides for r in runs]}"
    return found


def test_every_experiment_is_tested():
    tested = {"xor", "vanishing_gradient", "initializers", "normalization", "overfitting", "optimizers",
              "batch_size", "tabular_tricks"}
    assert set(EXPERIMENTS) == tested


def test_xor(tmp_path_factory):
    runs = sweep("xor", tmp_path_factory)
    assert len(runs) == 20
    for r in pick(runs, arch="perceptron"):
        assert r["converged"] is False  # the perceptron rule never settles on XOR
        assert r["test"]["accuracy"] <= 0.75  # a line gets at most 3 of the 4 corners right
    for r in pick(runs, arch="linear"):  # no hidden layer: stuck at chance, loss ln 2
        assert r["best_val_loss"] > 0.68
        assert r["test"]["accuracy"] <= 0.75
    for r in pick(runs, arch="hidden_8"):
        assert r["test"]["accuracy"] == 1.0 and r["best_val_loss"] < 0.05
    two = pick(runs, arch="hidden_2")  # 2 units can fit XOR, though some starts end in a local minimum
    assert sum(r["test"]["accuracy"] == 1.0 for r in two) >= 1


def test_vanishing_gradient(tmp_path_factory):
    runs = sweep("vanishing_gradient", tmp_path_factory)
    sigmoid = pick(runs, activation="sigmoid")
    relu_he = pick(runs, activation="relu", init="he_normal")[0]
    for r in sigmoid:  # ten sigmoid layers: the first layer's gradient is orders of magnitude smaller
        assert r.grad_ratio() < 1e-3, r.grad_ratio()
    assert relu_he.grad_ratio() > 1e-1
    for r in sigmoid:  # and the sigmoid net learns far less in the same epochs
        assert r["test"]["accuracy"] < 0.5
    assert relu_he["test"]["accuracy"] > 0.85


def test_initializers(tmp_path_factory):
    runs = sweep("initializers", tmp_path_factory)
    chance = math.log(10)  # cross-entropy of a uniform guess over 10 classes
    assert pick(runs, activation="relu", init="he_normal")[0]["test"]["accuracy"] > 0.85
    for act in ("relu", "tanh"):
        zeros = pick(runs, activation=act, init="zeros")[0]
        assert abs(zeros["best_val_loss"] - chance) < 0.02  # symmetry never broken: nothing learned
        small = pick(runs, activation=act, init="normal")[0]
        assert small["best_val_loss"] > chance - 0.1  # std 0.01: the signal dies out, training stalls
    tanh_xavier = pick(runs, activation="tanh", init="xavier_normal")[0]
    assert tanh_xavier["test"]["accuracy"] > 0.85


def test_normalization(tmp_path_factory):
    runs = sweep("normalization", tmp_path_factory)
    for lr in ("0.05", "0.5"):  # batch norm: trains at both rates where the plain deep net stalls
        plain = pick(runs, norm="none", optimizer__lr=lr)[0]
        batch = pick(runs, norm="batch", optimizer__lr=lr)[0]
        assert plain["best_val_loss"] > 2.0  # near ln 10: the plain net has not started learning
        assert batch["best_val_loss"] < 0.3 and batch["test"]["accuracy"] > 0.9, lr
    layer = pick(runs, norm="layer", optimizer__lr="0.05")[0]  # layer norm: trains at the small rate
    assert layer["best_val_loss"] < 0.5
    # faster: after 5 epochs the batch-normalised net is further than the plain one gets in 15
    batch_small = pick(runs, norm="batch", optimizer__lr="0.05")[0]
    assert batch_small.history["val_loss"][4] < min(pick(runs, norm="none", optimizer__lr="0.05")[0]
                                                    .history["val_loss"])


def _gap(r: Run, epoch: int) -> float:
    """val loss - train loss at `epoch` (1-based)."""
    return r.history["val_loss"][epoch - 1] - r.history["train_loss"][epoch - 1]


def test_overfitting(tmp_path_factory):
    runs = sweep("overfitting", tmp_path_factory)
    base = pick(runs, regularization__dropout="0.0", regularization__l2="0.0", early_stopping="none")[0]
    val = base.history["val_loss"]
    assert val[-1] > 1.5 * min(val)  # the val loss turned up: overfitting
    base_gap = _gap(base, base["epochs_run"])
    assert base_gap > 0.3
    dropout = pick(runs, regularization__dropout="0.5", regularization__l2="0.0", early_stopping="none")[0]
    l2 = pick(runs, regularization__dropout="0.0", regularization__l2="0.001", early_stopping="none")[0]
    stopped = pick(runs, regularization__dropout="0.0", regularization__l2="0.0", early_stopping="val_loss")[0]
    assert _gap(dropout, dropout["epochs_run"]) < 0.95 * base_gap  # dropout: the weakest of the three here
    assert _gap(l2, l2["epochs_run"]) < 0.5 * base_gap
    assert stopped["status"] == "early_stopped"
    assert _gap(stopped, stopped["best_epoch"]) < 0.5 * base_gap  # the weights early stopping keeps


def test_optimizers(tmp_path_factory):
    runs = sweep("optimizers", tmp_path_factory)
    names = {r.overrides["optimizer"] for r in runs}
    assert names == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"}
    for r in runs:
        assert r["status"] == "completed"
        assert r.history["val_loss"][-1] < r.history["val_loss"][0]
    best = {r.overrides["optimizer"]: r["best_val_loss"] for r in runs}
    assert best["adam"] < best["sgd"] and best["momentum"] < best["sgd"]


def test_batch_size(tmp_path_factory):
    runs = sweep("batch_size", tmp_path_factory)
    full, mini, single = (pick(runs, trainer__batch_size=b)[0] for b in ("0", "32", "1"))
    n_train = single["steps_per_epoch"]
    assert full["steps_per_epoch"] == 1
    assert mini["steps_per_epoch"] == math.ceil(n_train / 32)
    secs = {k: statistics.median(r.history["epoch_seconds"]) for k, r in
            (("full", full), ("mini", mini), ("single", single))}
    assert secs["single"] > secs["mini"] > secs["full"]
    # in the same 10 epochs, one update per epoch gets least far
    assert full.history["train_loss"][-1] > mini.history["train_loss"][-1]
    assert full.history["train_loss"][-1] > single.history["train_loss"][-1]


def test_tabular_tricks(tmp_path_factory):
    """Each job of the ablation turns exactly its trick off (or, no_recipe, goes back to the plain
    defaults); its numbers on a real table are in the README."""
    import numpy as np

    root = tmp_path_factory.mktemp("tabular_tricks")
    rng = np.random.default_rng(0)
    rows = [f"{a:.4f},{b:.4f},{c},{'yes' if a + 0.2 * (c < 'e') > 0.6 else 'no'}"
            for a, b, c in zip(rng.uniform(0, 1, 200), rng.normal(size=200), rng.choice(list("abcdefghijk"), 200))]
    (root / "t.csv").write_text("x1,x2,c,y\n" + "\n".join(rows) + "\n")
    run = train_in_process(["-m", "experiment=tabular_tricks", "data=csv", f"data.path={root / 't.csv'}",
                            "data.target=y", "trainer.max_epochs=2", "model.hidden=[8]", "trainer.progress=false"],
                           root)
    assert run.returncode == 0, run.describe()
    runs = [Run(p.parent) for p in root.rglob("metrics.json")]
    assert len(runs) == 24 and all(r["status"] in ("completed", "early_stopped") for r in runs)

    def config(ablation):
        job = pick(runs, ablation=ablation, seed="0")[0]
        return pd_flat(yaml.safe_load((job.dir / ".hydra" / "config.yaml").read_text()))

    full = config("none")
    assert (full["embedding.name"], full["data.numeric"], full["data.onehot_max"]) == ("piecewise_linear", "robust", 8)
    changed = {"no_embedding": {"embedding.name": "none", "embedding.dim": None, "embedding.bins": None,
                                "embedding.lite": None, "embedding.binning": None},
               "no_category_embedding": {"data.onehot_max": None}, "no_robust": {"data.numeric": "standard"},
               "no_label_smoothing": {"regularization.label_smoothing": 0.0},
               "no_dropout": {"regularization.dropout": 0.0}, "no_weight_decay": {"optimizer.weight_decay": 0.0},
               "no_schedule": {"scheduler.name": "none", "scheduler.eta_min": None, "scheduler.warmup_epochs": None},
               "no_clamp": {"model.clamp_output": False}, "no_seed_ensemble": {"trainer.refit_models": 1},
               "no_refit": {"trainer.refit": False}}
    for ablation, want in changed.items():
        got = config(ablation)
        assert {k: v for k, v in got.items() if full.get(k) != v} == want, ablation
    plain = config("no_recipe")
    assert plain["embedding.name"] == "none" and plain["optimizer.name"] == "adam"


def pd_flat(node, prefix=""):
    """A nested dict as {dotted key: value}."""
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(pd_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
