"""`load_dataset`: a data set by name, split into train/val/test, preprocessed with statistics
of the train split only, and held as float32 tensors that are views of one array."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from mlpkit.data.dataset import Dataset
from mlpkit.data.preprocess import Preprocessing
from mlpkit.data.sources import DATASETS, Opts
from mlpkit.data.split import column_mean_std, permute_rows, split_rows
from mlpkit.errors import ConfigError
from mlpkit.registry import check_choice
from mlpkit.tasks import BINARY, REGRESSION, TASKS, Task, classification_task, get_task

GATES = ("xor", "and", "or", "nand")


def load_dataset(name: str = "digits", *, seed: int = 0, n_samples: Optional[int] = None,
                 noise: Optional[float] = None, n_features: Optional[int] = None,
                 n_classes: Optional[int] = None, path: Optional[str] = None, target: Optional[str] = None,
                 task: str = "auto", drop: Sequence[str] = (), categorical: Sequence[str] = (),
                 val_fraction: float = 0.15, test_fraction: float = 0.15, standardize: bool = True) -> Dataset:
    """Build, split and preprocess a data set by name, e.g. load_dataset("moons", noise=0.3) or
    load_dataset("csv", path="penguins.csv", target="species", drop=["rownames"])."""
    build = DATASETS[name]
    check_choice("data.task", task, ("auto", *TASKS))
    if name == "csv":
        return _load_table(path, target, task, drop, categorical, seed, val_fraction, test_fraction, standardize)
    try:
        raw_X, y, known_task, notes = build(Opts(n_samples, noise, n_features, n_classes), seed)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"data={name}: {err}") from None
    # float32 from here on; builders hand over fresh arrays, so a float32 one is used as it is
    X = np.require(raw_X, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
    del raw_X  # a (float64) original goes
    task, y, classes = _target(name, np.asarray(y), task if task != "auto" else known_task)

    if len(X) <= 4 and name in GATES:
        idx = np.arange(len(X))
        parts = (idx, idx, idx)
    else:
        parts = split_rows(y, task, val_fraction, test_fraction, seed, name)
    _check_train_has_every_class(name, y, parts[0], task, classes)

    # Rows in train | val | test order, so that each split is a view of X: no second copy.
    order = np.concatenate(parts)
    if len(order) == len(X):
        permute_rows(X, order)
    else:  # the 4-row truth tables serve as all three splits
        X = X[order]
    y = y[order]
    n_tr = len(parts[0])
    mean, std = np.zeros(X.shape[1]), np.ones(X.shape[1])
    if standardize:
        mean, std = column_mean_std(X[:n_tr])
        std = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)  # constant columns stay constant
        X -= mean.astype(np.float32)  # in place: no second copy of a large data set
        X /= std.astype(np.float32)
    names = [f"x{i}" for i in range(X.shape[1])]
    pre = Preprocessing("array", inputs=names, mean=mean, std=std)
    return _assemble(name, task, X, y, parts, classes, notes, [], pre, standardize)


def _load_table(path, target, task, drop, categorical, seed, val_fraction, test_fraction, standardize) -> Dataset:
    """A user's file: columns get roles, rows with a missing target go, the ColumnTransformer is
    fitted on the train rows and applied to all of them in train | val | test order."""
    from mlpkit.data.table import assign_roles, format_columns, read_table

    df, notes = read_table(path)
    names = [str(c) for c in df.columns]
    target = names[-1] if target is None else str(target)
    if target not in names:
        raise ConfigError(f"data.target={target!r} is not a column of {path}; columns: {', '.join(names)}")
    roles = assign_roles(df, target, drop, categorical)
    y_col = df[target]
    keep = y_col.notna().to_numpy()
    n_missing_target = int((~keep).sum())
    if n_missing_target:
        notes.append(f"{n_missing_target} of {len(df)} rows have no value in the target column {target!r} "
                     "and are left out")
        df = df[keep]
        y_col = y_col[keep]
    if len(df) < 3:
        raise ConfigError(f"data.path={path!r}: only {len(df)} rows have a target value; too few to split")
    source_rows = np.flatnonzero(keep)  # row numbers in the file (0 = first data row)
    if y_col.dtype.kind == "b":
        y_raw = y_col.astype(str).to_numpy(dtype=object)
    elif y_col.dtype.kind in "iuf":
        y_raw = y_col.to_numpy(dtype=np.float64)
    else:
        y_raw = y_col.astype(str).str.strip().to_numpy(dtype=object)
    task, y, classes = _target("csv", y_raw, None if task == "auto" else task)

    parts = split_rows(y, task, val_fraction, test_fraction, seed, "csv")
    _check_train_has_every_class("csv", y, parts[0], task, classes)
    order = np.concatenate(parts)
    pre, X = Preprocessing.fit_table(df.iloc[order], len(parts[0]), roles.columns, standardize)
    del df
    pre.target = target
    pre.target_codes = {"b": "boolean", "i": "number", "u": "number", "f": "number"}.get(y_col.dtype.kind, "text")
    notes.append(f"data.path={path}: {len(source_rows)} rows; target column {target!r}")
    data = _assemble("csv", task, X, y[order], parts, classes, notes + roles.notes, roles.warnings, pre,
                     standardize, source_rows)
    data.columns_table = format_columns(pre.columns, target, task, n_missing_target)
    return data


def _target(name: str, y: np.ndarray, task: Optional[str]):
    """(task, y as class indices or floats, class labels) from the target's raw values."""
    task = get_task(task or _infer_task(y))
    classes: List[str] = []
    if not task.classification:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"data={name}: the target has text values; a regression target must be numeric "
                              "(or set data.task=binary or multiclass)") from None
        if not np.all(np.isfinite(y)):
            raise ConfigError(f"data={name}: the target has infinite values")
        return task, y, classes
    if y.dtype.kind == "f" and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # 0.0/1.0 written as floats: classes "0" and "1"
    labels, y = np.unique(y.astype(str) if y.dtype == object else y, return_inverse=True)
    classes = [str(c) for c in labels]
    if len(classes) < 2:
        raise ConfigError(f"data={name}: the target has only one class ({classes[0]!r}); "
                          "classification needs at least two")
    if task == BINARY and len(classes) != 2:
        raise ConfigError(f"data.task=binary but the target has {len(classes)} classes; use data.task=multiclass")
    return classification_task(len(classes)), y, classes


def _infer_task(y: np.ndarray) -> Task:
    """Text or few distinct integers -> classification; other numbers -> regression."""
    try:
        values = y.astype(np.float64)
    except (TypeError, ValueError):
        return classification_task(len(np.unique(y.astype(str))))
    if not np.all(np.isfinite(values)):
        raise ConfigError("the target has non-finite values")
    distinct = np.unique(values)
    if np.all(values == np.round(values)) and len(distinct) <= max(2, min(20, len(values) // 5)):
        return classification_task(len(distinct))
    return REGRESSION


def _check_train_has_every_class(name: str, y: np.ndarray, train: np.ndarray, task: str, classes) -> None:
    if get_task(task).classification:
        missing = sorted(set(range(len(classes))) - set(np.unique(y[train]).tolist()))
        if missing:
            raise ConfigError(f"data={name}: the train split has no row of class {classes[missing[0]]!r}; "
                              "add rows of that class or lower data.val_fraction/data.test_fraction")


def _assemble(name: str, task: str, X: np.ndarray, y: np.ndarray, parts, classes, notes, warnings,
              pre: Preprocessing, standardize: bool, source_rows: Optional[np.ndarray] = None) -> Dataset:
    """The Dataset over X (rows already in train | val | test order); regression targets standardised."""
    n_tr, n_va = len(parts[0]), len(parts[1])
    y_mean, y_std = 0.0, 1.0
    task = get_task(task)
    if task.standardizes_target() and standardize:
        y_mean, y_std = float(y[:n_tr].mean()), float(y[:n_tr].std()) or 1.0
        y = (y - y_mean) / y_std

    def tensors(rows: slice):
        return torch.from_numpy(X[rows]), task.target_tensor(y[rows])  # X: a view

    pre.task, pre.classes, pre.y_mean, pre.y_std = task, list(classes), y_mean, y_std
    src = source_rows if source_rows is not None else np.arange(len(y))
    rows = {split: src[p] for split, p in zip(("train", "val", "test"), parts)}
    return Dataset(name, task, *tensors(slice(0, n_tr)), *tensors(slice(n_tr, n_tr + n_va)),
                   *tensors(slice(n_tr + n_va, None)), feature_names=list(pre.inputs), classes=list(classes),
                   notes=list(notes), y_mean=y_mean, y_std=y_std, warnings=list(warnings), preprocessing=pre,
                   rows=rows)
