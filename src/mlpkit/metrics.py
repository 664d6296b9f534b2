"""Test metrics from a model's predictions (training and predict.py alike), in numpy.

Classification: accuracy, balanced accuracy, macro F1, ROC AUC (binary; one-vs-rest macro for
several classes) and the confusion matrix (rows: true class, columns: predicted class). Accuracy
alone says little for uneven classes: 0.92 against 0.86 for "always the majority class".
Regression: RMSE, MAE and R^2 in the target's own units.

Each is the computation of its scikit-learn function (accuracy_score, balanced_accuracy_score,
f1_score(average="macro", zero_division=0), roc_auc_score(multi_class="ovr", average="macro"),
confusion_matrix, mean_squared_error, mean_absolute_error, r2_score), done in the same order with the
same numpy reductions, so the numbers are the same to the last digit (tests/test_metrics.py checks
them against scikit-learn's). Importing scikit-learn's metrics takes 1.5-2.5 s (scipy.stats, pandas),
more than a short default run trains.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

SCALARS = ("loss", "accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2")


def distinct(values: Any) -> np.ndarray:
    """np.unique(values): the sorted distinct values. Asked with return_counts, np.unique skips its check
    for a masked array, which imports numpy.ma (15 ms of every run's start-up) on first use."""
    return np.unique(values, return_counts=True)[0]


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> Dict[str, Any]:
    """Metrics of class probabilities `proba` (N, C) against class indices `y_true` (N,)."""
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    proba = np.asarray(proba)
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    out: Dict[str, Any] = {
        "accuracy": float(np.average(y_true == pred)),
        "balanced_accuracy": balanced_accuracy(y_true, pred),
        # over the classes that occur (true or predicted): a class absent from these rows has no F1
        "f1_macro": f1_macro(y_true, pred),
        "roc_auc": None,
    }
    if len(distinct(y_true)) == n_classes:  # AUC needs every class among the true labels
        out["roc_auc"] = roc_auc(y_true, proba)
    out["confusion_matrix"] = confusion_matrix(y_true, pred, n_classes).tolist()
    return out


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts, rows the true class 0..n_classes-1, columns the predicted one;
    rows whose true or predicted class is outside that range are left out (scikit-learn's `labels=`)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    inside = (y_true >= 0) & (y_true < n_classes) & (y_pred >= 0) & (y_pred < n_classes)
    flat = y_true[inside] * n_classes + y_pred[inside]
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _counts(y_true: np.ndarray, y_pred: np.ndarray):
    """Per class index 0..max: true positives, rows predicted as it, rows truly of it."""
    n = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    tp = np.bincount(y_true[y_true == y_pred], minlength=n)
    return tp, np.bincount(y_pred, minlength=n), np.bincount(y_true, minlength=n)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in `y_true` (a class only predicted has no recall)."""
    tp, _, true_sum = _counts(y_true, y_pred)
    present = true_sum > 0
    return float(np.mean(tp[present] / true_sum[present]))


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes that occur among the true or the predicted labels."""
    tp, pred_sum, true_sum = _counts(y_true, y_pred)
    labels = (true_sum > 0) | (pred_sum > 0)
    tp, pred_sum, true_sum = (a[labels].astype(np.float64) for a in (tp, pred_sum, true_sum))
    denom = true_sum + pred_sum  # never 0: each label occurs
    return float(np.nanmean(2 * tp / denom))


def roc_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of (N, C) probabilities: of the second column for two classes, else the unweighted mean
    of each class against the rest (scikit-learn's multi_class="ovr", average="macro").
    Every class 0..C-1 must occur in `y_true`."""
    proba = np.asarray(proba, dtype=np.float64)
    if not np.isfinite(proba).all():
        raise ValueError("Input contains NaN or infinity.")
    n_classes = proba.shape[1]
    if n_classes == 2:
        return binary_roc_auc(y_true == 1, proba[:, 1])
    if n_classes < 2:
        return float("nan")  # one class: no negatives
    if not np.allclose(1, proba.sum(axis=1)):
        raise ValueError("Target scores need to be probabilities for multiclass roc_auc, "
                         "i.e. they should sum up to 1.0 over classes")
    score = np.zeros((n_classes,))
    for c in range(n_classes):
        score[c] = binary_roc_auc(y_true == c, proba[:, c])
    return float(np.average(score))


def binary_roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of `score` for the rows where `positive` is true: the trapezoids of
    the curve through each distinct score (tied scores make one point), collinear points dropped."""
    positive, score = np.asarray(positive).reshape(-1), np.asarray(score).reshape(-1)
    if len(distinct(positive)) != 2:
        return float("nan")
    order = len(score) - 1 - np.argsort(score[::-1], kind="stable")[::-1]  # descending, stable
    score, hit = score[order], positive[order].astype(np.float64)
    thresholds = np.concatenate([np.nonzero(np.diff(score))[0], [len(hit) - 1]])
    tps = np.cumsum(hit * 1.0, dtype=np.float64)[thresholds]
    fps = 1 + thresholds.astype(np.float64) - tps
    if fps.shape[0] > 2:  # drop points in between and collinear with their neighbours
        keep = np.where(np.concatenate([[True], np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), [True]]))[0]
        fps, tps = fps[keep], tps[keep]
    tps, fps = np.concatenate([[0.0], tps]), np.concatenate([[0.0], fps])
    fpr, tpr = fps / fps[-1], tps / tps[-1]
    return float(np.sum((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2.0, dtype=np.float64))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, Optional[float]]:
    """RMSE, MAE and R^2 of predictions against true values (both in the target's units)."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1, 1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1, 1)
    if not (np.isfinite(y_true).all() and np.isfinite(y_pred).all()):
        raise ValueError("Input contains NaN or infinity.")
    mse = np.average(np.average((y_true - y_pred) ** 2, axis=0))
    mae = np.average(np.average(np.abs(y_pred - y_true), axis=0))
    r2 = None
    if len(y_true) > 1 and np.ptp(y_true) > 0:
        numerator = np.sum(1.0 * (y_true - y_pred) ** 2, axis=0)
        denominator = np.sum((y_true - np.average(y_true, axis=0)) ** 2, axis=0)
        if numerator[0] == 0:  # perfect predictions
            r2 = 1.0
        elif denominator[0] == 0:  # a spread too small to square (scikit-learn's force_finite)
            r2 = 0.0
        else:
            r2 = float(np.average(1 - numerator / denominator))
    return {"rmse": math.sqrt(float(mse)), "mae": float(mae), "r2": r2}


def format_metrics(metrics: Dict[str, Any], keys: Sequence[str] = SCALARS) -> str:
    """'accuracy 0.9741, f1_macro 0.9739, ...' for the scalar metrics that have a value; a value below 0.001
    with 4 significant digits (an RMSE of a target in small units: 2.5e-07, not 0.0000)."""
    def number(v: float) -> str:
        return f"{v:.4g}" if 0 < abs(v) < 1e-3 else f"{v:.4f}"

    return ", ".join(f"{k} {number(metrics[k])}" for k in keys
                     if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k]))
