"""`load_dataset`: a data set by name, split into train/val/test, preprocessed with statistics
of the train split only, and held as float32 tensors that are views of one array."""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from mlpkit.data.dataset import Dataset
from mlpkit.data.preprocess import OUT_OF_RANGE, Preprocessing, check_numeric, not_dates_text
from mlpkit.data.sources import DATASETS, Opts
from mlpkit.data.split import column_mean_std, min_split_rows, permute_rows, split_rows
from mlpkit.checks import check_range
from mlpkit.errors import ConfigError
from mlpkit.metrics import distinct
from mlpkit.registry import check_choice
from mlpkit.schema import DataConfig as _D
from mlpkit.schema import TrainConfig
from mlpkit.tasks import BINARY, REGRESSION, TASKS, Task, classification_task, get_task



def load_dataset(name: str = _D.name, *, seed: int = TrainConfig.seed, n_samples: Optional[int] = None,
                 noise: Optional[float] = None, n_features: Optional[int] = None,
                 n_classes: Optional[int] = None, path: Optional[str] = None, target: Optional[str] = None,
                 task: str = _D.task, drop: Sequence[str] = (), categorical: Sequence[str] = (),
                 val_fraction: float = _D.val_fraction, test_fraction: float = _D.test_fraction,
                 standardize: bool = _D.standardize, numeric: str = _D.numeric,
                 onehot_max: Optional[int] = _D.onehot_max) -> Dataset:
    """Build, split and preprocess a data set by name, e.g. load_dataset("moons", noise=0.3) or
    load_dataset("csv", path="penguins.csv", target="species", drop=["rownames"], numeric="robust")."""
    source = DATASETS[name]
    check_choice("data.task", task, ("auto", *TASKS))
    for key, value in (("n_samples", n_samples), ("noise", noise), ("n_features", n_features),
                       ("n_classes", n_classes), ("val_fraction", val_fraction), ("test_fraction", test_fraction),
                       ("onehot_max", onehot_max)):
        check_range("data", key, value)
    check_numeric(numeric, standardize, onehot_max, source.is_table)
    if source.is_table:
        return _load_table(path, target, task, drop, categorical, seed, val_fraction, test_fraction, standardize,
                           numeric, onehot_max)
    try:
        raw_X, y, known_task, notes = source.build(Opts(n_samples, noise, n_features, n_classes), seed)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"data={name}: {err}") from None
    # float32 from here on; builders hand over fresh arrays, so a float32 one is used as it is
    X = np.require(raw_X, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
    del raw_X  # a (float64) original goes
    task, y, classes = _target(name, np.asarray(y), task if task != "auto" else known_task)

    if len(X) <= 4 and source.truth_table:
        idx = np.arange(len(X))
        parts = (idx, idx, idx)
    else:
        parts = split_rows(y, task, val_fraction, test_fraction, seed, name, classes)
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


def _load_table(path, target, task, drop, categorical, seed, val_fraction, test_fraction, standardize, numeric,
                onehot_max) -> Dataset:
    """A user's file: columns get roles, rows with a missing target go, the ColumnTransformer is
    fitted on the train rows and applied to all of them in train | val | test order."""
    from mlpkit.data.table import assign_roles, format_columns, read_table, target_column

    df, notes = read_table(path)
    target = target_column(df.columns, target, path)
    _check_enough_rows(path, len(df), "data rows", val_fraction, test_fraction)
    roles = assign_roles(df, target, drop, categorical)
    y_col = df[target]
    keep = y_col.notna().to_numpy()
    n_missing_target = int((~keep).sum())
    source = df  # every row as read: what the messages and the column table count
    if n_missing_target:
        notes.append(f"{n_missing_target} of {len(df)} rows have no value in the target column {target!r} "
                     "and are left out")
        df = df[keep]
        y_col = y_col[keep]
    _check_enough_rows(path, len(df), "rows with a target value", val_fraction, test_fraction)
    source_rows = np.flatnonzero(keep)  # row numbers in the file (0 = first data row)
    y_raw = _target_values(source, target, keep, task, notes)
    task, y, classes = _target("csv", y_raw, None if task == "auto" else task)

    parts = split_rows(y, task, val_fraction, test_fraction, seed, "csv", classes)
    _check_train_has_every_class("csv", y, parts[0], task, classes)
    order = np.concatenate(parts)
    used = df[[c.name for c in roles.used]]  # only the columns it reads are put in split order
    for col in roles.used:  # text put in order as codes into its distinct values: 10x faster than the strings
        if col.kind != "numeric" and used[col.name].dtype.kind not in "iufb":
            used[col.name] = _as_category(used[col.name], roles.factorized.pop(col.name, None),
                                          keep if n_missing_target else None)
    pre, X = Preprocessing.fit_table(used.iloc[order], len(parts[0]), roles.columns, standardize, numeric, onehot_max,
                                     seed)
    del df, used
    notes.append(f"data.path={path}: {len(source_rows)} rows; target column {target!r}")
    notes += roles.notes
    for name, (n, examples) in pre.out_of_range(source).items():  # every row, as `missing` counts
        col = next(c for c in pre.columns if c.name == name)
        col.out_of_range, col.missing = n, col.missing + n
        notes.append(f"column {name!r}: {n} infinite or out-of-range value{'s' if n > 1 else ''} "
                     f"({', '.join(examples)}{', ...' if n > len(examples) else ''}) treated as missing "
                     + (f"(out of range: over {OUT_OF_RANGE:g} times the column's typical size)" if standardize
                        else f"(out of range with data.standardize=false: beyond {OUT_OF_RANGE:g})"))
    for name, (n, examples) in pre.not_dates(source).items():  # missing, as the streamed path counts them
        col = next(c for c in pre.columns if c.name == name)
        col.missing += n
        notes.append(f"column {name!r}: {not_dates_text(n, examples, col.date_format)}: treated as missing")
    del source
    pre.target = target
    pre.target_codes = {"b": "boolean", "i": "number", "u": "number", "f": "number"}.get(y_col.dtype.kind, "text")
    data = _assemble("csv", task, X, y[order], parts, classes, notes, roles.warnings, pre,
                     standardize, source_rows)
    data.columns_table = format_columns(pre.columns, target, task, n_missing_target)
    data.layout = pre.layout
    return data


def _as_category(values, factorized, keep: Optional[np.ndarray]):
    """A category column as a pandas Categorical: from the codes that assign_roles' one pass over its values
    found (`factorized`: codes of every row of the file, and the distinct values; `keep`: the rows kept),
    or, without them, by hashing the values again."""
    import pandas as pd

    if factorized is None:
        return values.astype("category")
    codes, distinct = factorized
    return pd.Categorical.from_codes(codes if keep is None else codes[keep], categories=distinct, validate=False)


def _check_enough_rows(path, n: int, what: str, val_fraction: float, test_fraction: float) -> None:
    """A ConfigError when `n` rows cannot make three non-empty splits, saying how many can."""
    need = min_split_rows(val_fraction, test_fraction)
    if n < need:
        raise ConfigError(f"data.path={path!r} has {n} {what if n != 1 else what.replace('rows', 'row')}: too few for train/val/test splits, which need "
                          f"at least {need} rows (one in each with data.val_fraction={val_fraction:g} and "
                          f"data.test_fraction={test_fraction:g}; more for classes: 2 per class)")


def _target_values(df, target: str, keep: np.ndarray, task: str, notes: List[str]) -> np.ndarray:
    """The target column's values of the `keep` rows: floats for a numeric column (or one of numbers written
    with a currency sign, thousands separators or a percent sign, said in `notes`), otherwise the text (as
    a pandas Categorical: each label held once, stripped of surrounding spaces).
    ConfigError for a number no model can learn (infinite, or beyond OUT_OF_RANGE), and for a column of
    numbers with a few stray text values that would otherwise silently become classes."""
    import pandas as pd

    from mlpkit.data.table import lenient_numbers, line_of

    col = df[target]
    rows = np.flatnonzero(keep)
    y_col = col.iloc[rows]
    if y_col.dtype.kind == "b":
        return y_col.astype(str).to_numpy(dtype=object)
    if y_col.dtype.kind in "iuf":
        values = y_col.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (np.abs(values) > OUT_OF_RANGE)
        if bad.any():
            where = np.flatnonzero(bad)
            more = f" (and {len(where) - 1} more such value{'s' if len(where) > 2 else ''})" if len(where) > 1 else ""
            raise ConfigError(f"data.target={target!r}: the target holds {values[where[0]]:g} at "
                              f"{line_of(df, int(rows[where[0]]))}{more}; a target value must be a finite "
                              f"number of size at most {OUT_OF_RANGE:g}. Correct it, or empty the cell to leave "
                              "the row out")
        return values
    raw_codes, raw = pd.factorize(y_col)  # the distinct labels are few: write out and strip those, not every row
    stripped = pd.Series(raw, dtype=object).astype(str).str.strip()
    codes, distinct = pd.factorize(stripped)
    codes = codes[raw_codes]  # each row's label, as written without surrounding spaces, is distinct[code]
    parsed, formatted = lenient_numbers(distinct)  # '$5,251' -> 5251.0, as a feature column of them is read
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(parsed) & (np.abs(parsed) <= OUT_OF_RANGE)  # `inf` is no number to learn
    if task in ("auto", REGRESSION) and formatted.any() and usable.all() and \
            (task == REGRESSION or _infer_task(parsed[codes]) == REGRESSION):
        notes.append(formatted_target_note(target, distinct))
        return parsed[codes]
    words = ~usable[codes]
    n_words = int(words.sum())
    if task in ("auto", REGRESSION) and 0 < n_words < len(codes) and \
            (task == REGRESSION or (n_words <= max(3, 0.1 * len(codes))
                                    and _infer_task(parsed[codes][~words]) == REGRESSION)):
        where = np.flatnonzero(words)
        shown = ", ".join(f"{distinct[codes[i]]!r} at {line_of(df, int(rows[i]))}" for i in where[:3])
        more = f" and {n_words - 3} more" if n_words > 3 else ""
        asked = f"data.task={REGRESSION}, but " if task == REGRESSION else ""
        raise ConfigError(f"data.target={target!r}: {asked}{len(codes) - n_words} of its {len(codes)} values are "
                          f"finite numbers and {n_words} {'is' if n_words == 1 else 'are'} not: {shown}{more}. Write a "
                          "missing value as an empty cell or NA (the row is then left out), or, if the values are "
                          "class labels, set data.task=multiclass (or binary)")
    return pd.Categorical.from_codes(codes, categories=distinct, validate=False)  # the labels, held once each


def _target(name: str, y: np.ndarray, task: Optional[str]):
    """(task, y as class indices or floats, class labels) from the target's raw values."""
    inferred = not task
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
    if y.dtype.kind == "f" and np.all(y == np.round(y)) and np.all(np.abs(y) < 2 ** 53):
        y = y.astype(np.int64)  # 0.0/1.0 written as floats: classes "0" and "1"
    if y.dtype == object or not isinstance(y, np.ndarray):  # text (a Categorical of it from _target_values):
        import pandas as pd  # the few distinct labels sorted, not a million strings

        codes, distinct = pd.factorize(y)
        distinct = np.asarray(distinct, dtype=object).astype(str)
        labels = np.unique(distinct)
        y = np.searchsorted(labels, distinct)[codes]
    else:
        labels, y = np.unique(y, return_inverse=True)
    classes = [str(c) for c in labels]
    if len(classes) < 2:
        raise ConfigError(one_class(name, classes[0], inferred))
    if task == BINARY and len(classes) != 2:
        raise ConfigError(f"data.task=binary but the target has {len(classes)} classes; use data.task=multiclass")
    return classification_task(len(classes)), y, classes


def formatted_target_note(target: str, distinct: Sequence[str]) -> str:
    """The note of a target read as the numbers that its values write with separators or signs."""
    shown = ", ".join(repr(v) for v in distinct[:2])
    return (f"the target {target!r} holds numbers written with a currency sign, thousands separators or a "
            f"percent sign ({shown}, ...): read as the numbers without them")


def one_class(name: str, label: str, inferred: bool) -> str:
    """The refusal of a classification target with one class; where no data.task was asked for, it says
    what the column holds rather than what the inferred task needs."""
    if inferred:
        return (f"data={name}: the target has only one class: it holds {label!r} in every row with a value, so "
                "there is nothing to learn (classification needs two classes or more, and a regression a target "
                "that varies)")
    return f"data={name}: the target has only one class ({label!r}); classification needs at least two"


def _infer_task(y: np.ndarray) -> Task:
    """Text or few distinct integers -> classification; other numbers -> regression."""
    try:
        values = y.astype(np.float64)
    except (TypeError, ValueError):
        import pandas as pd

        return classification_task(len(distinct(np.asarray(pd.unique(y), dtype=object).astype(str))))
    if not np.all(np.isfinite(values)):
        raise ConfigError("the target has non-finite values")
    n_distinct = len(distinct(values))
    if np.all(values == np.round(values)) and n_distinct <= max(2, min(20, len(values) // 5)):
        return classification_task(n_distinct)
    return REGRESSION


def _check_train_has_every_class(name: str, y: np.ndarray, train: np.ndarray, task: str, classes) -> None:
    if get_task(task).classification:  # y: class indices 0..len(classes)-1, counted rather than sorted
        missing = np.flatnonzero(np.bincount(y[train], minlength=len(classes)) == 0)
        if len(missing):
            raise ConfigError(f"data={name}: the train split has no row of class {classes[missing[0]]!r}; "
                              "add rows of that class or lower data.val_fraction/data.test_fraction")


def _std(y: np.ndarray) -> float:
    """The standard deviation of `y`, computed on y / max|y| so that neither tiny values (1e-300,
    whose squares are 0) nor huge ones (whose squares overflow) lose it."""
    plain = float(np.std(y)) if len(y) else 0.0
    size = float(np.abs(y).max()) if len(y) else 0.0
    if not size or not np.isfinite(size) or 1e-100 < size < 1e100:
        return plain
    return float(size * np.std(y / size))


def _assemble(name: str, task: str, X: np.ndarray, y: np.ndarray, parts, classes, notes, warnings,
              pre: Preprocessing, standardize: bool, source_rows: Optional[np.ndarray] = None) -> Dataset:
    """The Dataset over X (rows already in train | val | test order); regression targets standardised."""
    n_tr, n_va = len(parts[0]), len(parts[1])
    y_mean, y_std = 0.0, 1.0
    task = get_task(task)
    if task.standardizes_target() and standardize:
        y_mean, y_std = float(y[:n_tr].mean()), _std(y[:n_tr]) or 1.0
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
