"""Test metrics, computed by scikit-learn from a model's predictions (training and predict.py alike).

Classification: accuracy, balanced accuracy, macro F1, ROC AUC (binary; one-vs-rest macro for
several classes) and the confusion matrix (rows: true class, columns: predicted class). Accuracy
alone says little for uneven classes: 0.92 against 0.86 for "always the majority class".
Regression: RMSE, MAE and R^2 in the target's own units.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

SCALARS = ("loss", "accuracy", "balanced_accuracy", "f1_macro", "roc_auc", "rmse", "mae", "r2")


def class_probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """(N, C) class probabilities from the model's outputs: sigmoid of one logit, or softmax."""
    logits = np.asarray(logits, dtype=np.float64)
    if task == "binary":
        p = 0.5 * (1.0 + np.tanh(0.5 * logits.reshape(-1)))  # the sigmoid, without overflow for large |z|
        return np.stack([1.0 - p, p], axis=1)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> Dict[str, Any]:
    """Metrics of class probabilities `proba` (N, C) against class indices `y_true` (N,)."""
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score,
                                 roc_auc_score)

    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    n_classes = proba.shape[1]
    labels = list(range(n_classes))
    pred = proba.argmax(axis=1)
    out: Dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "balanced_accuracy": _quiet(balanced_accuracy_score, y_true, pred),
        # over the classes that occur (true or predicted): a class absent from these rows has no F1
        "f1_macro": float(f1_score(y_true, pred, labels=np.union1d(y_true, pred), average="macro", zero_division=0)),
        "roc_auc": None,
    }
    if len(np.unique(y_true)) == n_classes:  # AUC needs every class among the true labels
        if n_classes == 2:
            out["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
    out["confusion_matrix"] = confusion_matrix(y_true, pred, labels=labels).tolist()
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, Optional[float]]:
    """RMSE, MAE and R^2 of predictions against true values (both in the target's units)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    r2 = float(r2_score(y_true, y_pred)) if len(y_true) > 1 and np.ptp(y_true) > 0 else None
    return {"rmse": math.sqrt(float(mean_squared_error(y_true, y_pred))),
            "mae": float(mean_absolute_error(y_true, y_pred)), "r2": r2}


def format_metrics(metrics: Dict[str, Any], keys: Sequence[str] = SCALARS) -> str:
    """'accuracy 0.9741, f1_macro 0.9739, ...' for the scalar metrics that have a value."""
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in keys
                     if isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k]))


def _quiet(fn, *args) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": the score is still defined
        return float(fn(*args))
