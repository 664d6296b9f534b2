"""mlpkit.metrics (numpy) against scikit-learn's functions, on random, tied and uneven cases; and a
default 1-epoch `python train.py` that never imports scikit-learn, scipy, matplotlib, pandas, fsspec, boto3,
numpy.ma or the sweep plugins."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from mlpkit import metrics
from mlpkit.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-12


def reference_classification(y_true, proba):
    """The test metrics as mlpkit computed them with scikit-learn (the calls of mlpkit.metrics before)."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    n = proba.shape[1]
    pred = proba.argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"accuracy": float(skm.accuracy_score(y_true, pred)),
               "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, pred)),
               "f1_macro": float(skm.f1_score(y_true, pred, labels=np.union1d(y_true, pred), average="macro",
                                              zero_division=0)),
               "roc_auc": None}
    if len(np.unique(y_true)) == n:
        out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]) if n == 2 else
                               skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                                 labels=list(range(n))))
    out["confusion_matrix"] = skm.confusion_matrix(y_true, pred, labels=list(range(n))).tolist()
    return out


def assert_same(ours, ref):
    assert set(ours) == set(ref)
    assert ours["confusion_matrix"] == ref["confusion_matrix"]
    for k in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc"):
        if ref[k] is None:
            assert ours[k] is None, k
        else:
            assert abs(ours[k] - ref[k]) <= TOL, (k, ours[k], ref[k])


def random_case(rng, n, k, tie_levels=None, uneven=False):
    """Labels of k classes and their softmax probabilities; tie_levels rounds the logits to that
    many values (many tied scores); uneven draws the classes with very unequal shares."""
    p = rng.dirichlet(np.full(k, 0.3)) if uneven else None
    y = rng.choice(k, size=n, p=p)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * rng.random((n, 1))
    if tie_levels:
        logits = np.round(logits * tie_levels / 4) / (tie_levels / 4)
    task = "binary" if k == 2 else "multiclass"
    if task == "binary":
        return y, TASKS[task].probabilities(logits[:, 1] - logits[:, 0])
    return y, TASKS[task].probabilities(logits)


@pytest.mark.parametrize("k", [2, 3, 10])
@pytest.mark.parametrize("ties", [None, 3, 12])
@pytest.mark.parametrize("uneven", [False, True])
def test_classification_matches_scikit_learn(k, ties, uneven):
    rng = np.random.default_rng(1000 * k + (ties or 0) + uneven)
    for n in (2, 7, 50, 997):
        y, proba = random_case(rng, n, k, ties, uneven)
        assert_same(metrics.classification_metrics(y, proba), reference_classification(y, proba))


def test_all_tied_scores_and_perfect_and_inverted_scores():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    flat = np.full((8, 2), 0.5)
    perfect = np.stack([1.0 - y, y], 1).astype(float) * 0.8 + 0.1
    for proba in (flat, perfect, perfect[:, ::-1].copy()):
        assert_same(metrics.classification_metrics(y, proba), reference_classification(y, proba))
    y3 = np.array([0, 1, 2, 2, 1, 0])
    for proba in (np.full((6, 3), 1 / 3), np.eye(3)[y3] * 0.7 + 0.1):
        assert_same(metrics.classification_metrics(y3, proba), reference_classification(y3, proba))


def test_absent_and_only_predicted_classes():
    """A class missing from the true labels: no ROC AUC, balanced accuracy over the true classes,
    macro F1 over the classes that occur, a zero row in the confusion matrix."""
    y = np.array([0, 0, 1, 1, 3, 3, 3])
    proba = np.eye(4)[[0, 2, 1, 1, 3, 2, 0]] * 0.6 + 0.1
    ours = metrics.classification_metrics(y, proba)
    assert ours["roc_auc"] is None and ours["confusion_matrix"][2] == [0, 0, 0, 0]
    assert_same(ours, reference_classification(y, proba))


def test_a_binary_target_as_floats_of_shape_n_by_1():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=(40, 1)).astype(np.float32)  # as the trainer holds binary targets
    proba = TASKS["binary"].probabilities(rng.normal(size=(40, 1)))
    assert_same(metrics.classification_metrics(y, proba), reference_classification(y, proba))


def test_the_default_runs_exact_numbers():
    """Bit for bit what scikit-learn gives on digits-like data (float64 softmax of float32 logits)."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 270)
    logits = (rng.normal(size=(270, 10)) * 3 + 4 * np.eye(10)[y]).astype(np.float32)
    proba = TASKS["multiclass"].probabilities(logits)
    ours, ref = metrics.classification_metrics(y, proba), reference_classification(y, proba)
    assert ours == ref


def test_nonfinite_scores_are_refused_as_scikit_learn_refuses_them():
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.5, 0.5], [np.nan, np.nan], [0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError):
        reference_classification(y, proba)
    with pytest.raises(ValueError):
        metrics.classification_metrics(y, proba)


@pytest.mark.parametrize("n", [1, 2, 9, 500])
def test_regression_matches_scikit_learn(n):
    rng = np.random.default_rng(n)
    y = rng.normal(3, 10, n)
    for pred in (y + rng.normal(0, 2, n), y.copy(), np.full(n, y.mean()), np.round(y)):
        ours = metrics.regression_metrics(y, pred)
        assert abs(ours["rmse"] - np.sqrt(skm.mean_squared_error(y, pred))) <= TOL
        assert abs(ours["mae"] - skm.mean_absolute_error(y, pred)) <= TOL
        if n > 1:
            assert abs(ours["r2"] - skm.r2_score(y, pred)) <= TOL
        else:
            assert ours["r2"] is None
    assert metrics.regression_metrics(np.ones(4), np.arange(4.0))["r2"] is None  # a constant target


@pytest.mark.slow
def test_a_default_run_imports_none_of_the_heavy_modules_it_does_not_need(tmp_path):
    """The modules a 1-epoch default `python train.py` has loaded when it ends (sys.modules at exit), and
    its garbage collector then: on again, with what start-up left frozen (mlpkit.startup)."""
    code = ("import atexit, gc, json, runpy, sys\n"
            "atexit.register(lambda: open('modules.json', 'w').write(json.dumps({'modules': sorted(sys.modules), "
            "'collecting': gc.isenabled(), 'frozen': gc.get_freeze_count()})))\n"
            f"sys.argv = [{str(REPO / 'train.py')!r}, 'trainer.max_epochs=1', 'trainer.progress=false', "
            "'hydra.run.dir=run']\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    at_exit = json.loads((tmp_path / "modules.json").read_text())
    assert at_exit["collecting"] and at_exit["frozen"] > 100_000, at_exit["frozen"]  # torch's objects and more
    loaded = set(at_exit["modules"])
    heavy = {"sklearn", "scipy", "matplotlib", "pandas", "fsspec", "boto3", "botocore"} & {m.split(".")[0]
                                                                                          for m in loaded}
    assert not heavy, f"a default run imported {sorted(heavy)}"
    from mlpkit.app.plugin_scan import DEFERRED

    plugins = sorted(m for m in loaded if m.startswith("hydra_plugins.") and m.split(".")[1] in DEFERRED)
    assert not plugins, f"a default run imported the sweep plugins' {plugins}"
    assert "numpy.ma" not in loaded  # np.unique's masked-array check (mlpkit.metrics.distinct)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["status"] == "completed" and len(m["test"]["confusion_matrix"]) == 10


def test_printed_metrics_keep_four_significant_digits_below_a_thousandth():
    from mlpkit.metrics import format_metrics

    line = format_metrics({"loss": 1.05761, "rmse": 1.2273e-06, "mae": 0.0, "r2": 0.91234, "accuracy": float("nan")})
    assert line == "loss 1.0576, rmse 1.227e-06, mae 0.0000, r2 0.9123"
