"""Datasets by name, split into train/val/test and held as in-memory tensors.

Generated sets come from scikit-learn's generators (and a spiral, the logic gates
and a memory-lean make_classification written here), bundled sets from the files
scikit-learn ships, and `csv` from a user's file. Classification splits are
stratified; standardisation uses the statistics of the train split only. The three
splits are views of one float32 array: a data set is held in memory once.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from mlpkit.errors import ConfigError

TASKS = ("binary", "multiclass", "regression")


@dataclass
class Dataset:
    """Three splits as tensors. y is (N, 1) float for binary and regression, (N,) long for multiclass."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: List[str] = field(default_factory=list)
    classes: List[str] = field(default_factory=list)  # label of each class index
    notes: List[str] = field(default_factory=list)  # things the log should tell the user
    y_mean: float = 0.0  # regression targets were standardised with these; metrics undo it
    y_std: float = 1.0

    @property
    def in_dim(self) -> int:
        return self.X_train.shape[1]

    @property
    def out_dim(self) -> int:
        if self.task == "multiclass":
            return len(self.classes)
        return 1 if self.y_train.dim() == 1 else self.y_train.shape[1]

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    def to(self, device: torch.device | str) -> "Dataset":
        """Move all six tensors to `device` (once; batches are then sliced there)."""
        for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            setattr(self, key, getattr(self, key).to(device))
        return self

    def describe(self) -> str:
        n = (len(self.X_train), len(self.X_val), len(self.X_test))
        kind = f"{self.task}, {len(self.classes)} classes" if self.is_classification else "regression"
        return f"{self.name}: {self.in_dim} features, {kind}; train/val/test = {n[0]}/{n[1]}/{n[2]} rows"


# ---------------------------------------------------------------------------
# Builders: fn(cfg, seed) -> (X float array (N, D), y array (N,), task or None, notes)

Raw = Tuple[np.ndarray, np.ndarray, Optional[str], List[str]]


def _opt(value, default):
    return default if value is None else value


def _gate(table: Dict[Tuple[int, int], int]) -> Callable:
    def build(cfg, seed) -> Raw:
        corners = np.array(list(table), dtype=np.float64)
        labels = np.array(list(table.values()))
        if cfg.n_samples is None:
            note = ("the 4-row truth table is the whole data set: train, val and test all use it "
                    "(set data.n_samples and data.noise for a noisy cloud around the corners)")
            return corners, labels, "binary", [note]
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, 4, cfg.n_samples)
        X = corners[pick] + rng.normal(0.0, _opt(cfg.noise, 0.1), (cfg.n_samples, 2))
        return X, labels[pick], "binary", []
    return build


def _moons(cfg, seed) -> Raw:
    from sklearn.datasets import make_moons
    X, y = make_moons(_opt(cfg.n_samples, 500), noise=_opt(cfg.noise, 0.2), random_state=seed)
    return X, y, "binary", []


def _circles(cfg, seed) -> Raw:
    from sklearn.datasets import make_circles
    X, y = make_circles(_opt(cfg.n_samples, 500), noise=_opt(cfg.noise, 0.1), factor=0.5, random_state=seed)
    return X, y, "binary", []


def _spiral(cfg, seed) -> Raw:
    # K interleaved arms: radius grows with t, angle turns 1.75 times around.
    k, n = _opt(cfg.n_classes, 2), _opt(cfg.n_samples, 600)
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % k
    t = rng.uniform(0.05, 1.0, n)
    theta = 3.5 * np.pi * t + 2 * np.pi * cls / k
    X = np.stack([t * np.cos(theta), t * np.sin(theta)], 1) + rng.normal(0, _opt(cfg.noise, 0.05), (n, 2))
    return X, cls, None, []


def _blobs(cfg, seed) -> Raw:
    from sklearn.datasets import make_blobs
    X, y = make_blobs(_opt(cfg.n_samples, 500), n_features=_opt(cfg.n_features, 2),
                      centers=_opt(cfg.n_classes, 3), cluster_std=_opt(cfg.noise, 1.0), random_state=seed)
    return X, y, None, []


def _sine(cfg, seed) -> Raw:
    rng = np.random.default_rng(seed)
    n = _opt(cfg.n_samples, 500)
    x = rng.uniform(-2 * np.pi, 2 * np.pi, (n, 1))
    return x, np.sin(x[:, 0]) + rng.normal(0, _opt(cfg.noise, 0.1), n), "regression", []


def _classification(cfg, seed) -> Raw:
    """scikit-learn's make_classification recipe (Guyon's design), drawn in float32 row blocks.

    Each class is two Gaussian clusters centred on distinct vertices of a hypercube in the
    informative dimensions, each cluster with its own random covariance; two redundant
    features are random linear combinations of the informative ones and the rest is noise;
    a fraction `noise` of the labels is replaced by a random class; every feature is shifted
    and scaled at random (standardisation undoes it); rows and columns come shuffled.
    Written here, not called from scikit-learn, because make_classification builds float64
    copies of the whole matrix: 1.5 GB of memory for a 60,000 x 784 set that takes 180 MB
    as float32, against a few MB of blocks here.
    """
    n, n_features, n_classes = _opt(cfg.n_samples, 1000), _opt(cfg.n_features, 20), _opt(cfg.n_classes, 2)
    # 2 clusters per class need n_classes * 2 distinct vertices <= 2 ** n_informative.
    n_inf = max(math.ceil(math.log2(2 * n_classes)), n_features // 2)
    if n_inf > n_features:
        raise ConfigError(f"data.n_features={n_features} is too few for data.n_classes={n_classes}; "
                          f"use data.n_features >= {n_inf}")
    n_red = min(2, n_features - n_inf)
    if n < 2 * n_classes:
        raise ConfigError(f"data.n_samples={n} is too few for data.n_classes={n_classes} (2 clusters per class); "
                          f"use data.n_samples >= {2 * n_classes}")
    rng = np.random.default_rng(seed)
    n_clusters = 2 * n_classes
    centroids = (2 * _hypercube_vertices(n_clusters, n_inf, rng) - 1).astype(np.float32)  # class_sep 1
    mixing = rng.uniform(-1, 1, (n_clusters, n_inf, n_inf)).astype(np.float32)  # each cluster's covariance
    redundant = rng.uniform(-1, 1, (n_inf, n_red)).astype(np.float32)
    cluster = rng.permutation(np.arange(n) % n_clusters)  # equal clusters, rows in random order
    y = cluster % n_classes
    flipped = rng.random(n) < _opt(cfg.noise, 0.01)
    y[flipped] = rng.integers(0, n_classes, int(flipped.sum()))
    shift = rng.uniform(-1, 1, n_features).astype(np.float32)
    scale = (1 + 100 * rng.random(n_features)).astype(np.float32)
    columns = rng.permutation(n_features)

    X = np.empty((n, n_features), np.float32)
    rows_per_block = max(1, 2 ** 20 // n_features)  # 4 MB blocks
    for start in range(0, n, rows_per_block):
        stop = min(n, start + rows_per_block)
        block = np.empty((stop - start, n_features), np.float32)
        z = rng.standard_normal((stop - start, n_inf), dtype=np.float32)
        c = cluster[start:stop]
        for k in np.unique(c):
            mine = c == k
            block[mine, :n_inf] = z[mine] @ mixing[k] + centroids[k]
        block[:, n_inf:n_inf + n_red] = block[:, :n_inf] @ redundant
        block[:, n_inf + n_red:] = rng.standard_normal((stop - start, n_features - n_inf - n_red), dtype=np.float32)
        block += shift
        block *= scale
        X[start:stop] = block[:, columns]
    return X, y, None, []


def _hypercube_vertices(k: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct random vertices of the unit hypercube {0, 1}^d, as a (k, d) 0/1 array."""
    if d <= 62:
        codes = rng.choice(2 ** d, k, replace=False)
        return ((codes[:, None] >> np.arange(d)) & 1).astype(np.float64)
    while True:  # 2^d vertices: a repeat among k random ones is all but impossible, but checked
        bits = rng.integers(0, 2, (k, d))
        if len(np.unique(bits, axis=0)) == k:
            return bits.astype(np.float64)


def _regression(cfg, seed) -> Raw:
    from sklearn.datasets import make_regression
    n_features = _opt(cfg.n_features, 10)
    X, y = make_regression(_opt(cfg.n_samples, 1000), n_features=n_features,
                           n_informative=max(1, n_features // 2), noise=_opt(cfg.noise, 5.0), random_state=seed)
    return X, y, "regression", []


def _bundled(loader: str, task: Optional[str]) -> Callable:
    def build(cfg, seed) -> Raw:
        import sklearn.datasets
        bunch = getattr(sklearn.datasets, loader)()
        return bunch.data, bunch.target, task, []
    return build


def _digits(cfg, seed) -> Raw:
    """scikit-learn's 8x8 digits, read from the CSV file its package ships (what load_digits reads).

    Reading the file directly spares the default run importing scikit-learn, whose import
    (SciPy included) is about a third of the start-up; load_digits is the fallback.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(int), "multiclass", []
    return _bundled("load_digits", "multiclass")(cfg, seed)


def _csv(cfg, seed) -> Raw:
    X, y, names, target = read_csv(cfg.path, cfg.target)
    return X, y, None, [f"csv: {cfg.path}, target column {target!r}, {len(names)} feature columns"]


DATASETS: Dict[str, Callable[..., Raw]] = {
    "xor": _gate({(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}),
    "and": _gate({(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1}),
    "or": _gate({(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 1}),
    "nand": _gate({(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 0}),
    "moons": _moons,
    "circles": _circles,
    "spiral": _spiral,
    "blobs": _blobs,
    "sine": _sine,
    "classification": _classification,
    "regression": _regression,
    "digits": _digits,
    "iris": _bundled("load_iris", "multiclass"),
    "wine": _bundled("load_wine", "multiclass"),
    "breast_cancer": _bundled("load_breast_cancer", "binary"),
    "diabetes": _bundled("load_diabetes", "regression"),
    "csv": _csv,
}

_MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}


def read_csv(path: Optional[str], target: Optional[str]) -> Tuple[np.ndarray, np.ndarray, List[str], str]:
    """Read a headed CSV of numeric features: (X, y as raw column values, feature names, target name)."""
    if not path:
        raise ConfigError("data=csv needs data.path=<file.csv>")
    if not os.path.isfile(path):
        raise ConfigError(f"data.path={path!r}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"data.path={path!r} is not a readable CSV text file ({err})") from None
    if not rows:
        raise ConfigError(f"data.path={path!r} is empty; it needs a header row and data rows")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise ConfigError(f"data.path={path!r} has a header but no data rows")
    if len(header) < 2:
        raise ConfigError(f"data.path={path!r} has {len(header)} column; it needs at least one feature and a target")
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise ConfigError(f"data.path={path!r}: line {i} has {len(r)} cells, the header has {len(header)}")
    seen = set()
    for h in header:
        if h in seen:
            raise ConfigError(f"data.path={path!r}: the column name {h!r} appears twice in the header")
        seen.add(h)
    target = header[-1] if target is None else str(target)
    if target not in header:
        raise ConfigError(f"data.target={target!r} is not a column of {path}; columns: {', '.join(header)}")
    t = header.index(target)
    columns = [j for j in range(len(header)) if j != t]
    names = [header[j] for j in columns]
    X = np.empty((len(body), len(names)))
    for col, (j, name) in enumerate(zip(columns, names)):
        for i, r in enumerate(body):
            cell = r[j].strip()
            if cell.lower() in _MISSING:
                raise ConfigError(f"data.path={path!r}: column {name!r} has a missing value at line {i + 2}; "
                                  "fill or drop missing values first")
            try:
                value = float(cell)
            except ValueError:
                raise ConfigError(f"data.path={path!r}: column {name!r} has text {cell!r} at line {i + 2}; "
                                  "feature columns must be numeric (encode categories first)") from None
            if not math.isfinite(value) or abs(value) > 1e30:
                raise ConfigError(f"data.path={path!r}: column {name!r} has the value {cell!r} at line {i + 2}, "
                                  "too large to train on")
            X[i, col] = value
    y_cells = [r[t].strip() for r in body]
    for i, cell in enumerate(y_cells):
        if cell.lower() in _MISSING:
            raise ConfigError(f"data.path={path!r}: target column {target!r} is missing a value at line {i + 2}")
    return X, np.array(y_cells, dtype=object), names, target


def _infer_task(y: np.ndarray) -> str:
    """Text or few distinct integers -> classification; other numbers -> regression."""
    try:
        values = y.astype(np.float64)
    except (TypeError, ValueError):
        return "binary" if len(np.unique(y.astype(str))) == 2 else "multiclass"
    if not np.all(np.isfinite(values)):
        raise ConfigError("the target has non-finite values")
    distinct = np.unique(values)
    if np.all(values == np.round(values)) and len(distinct) <= max(2, min(20, len(values) // 5)):
        return "binary" if len(distinct) == 2 else "multiclass"
    return "regression"


def load_dataset(name: str = "digits", *, seed: int = 0, n_samples: Optional[int] = None,
                 noise: Optional[float] = None, n_features: Optional[int] = None,
                 n_classes: Optional[int] = None, path: Optional[str] = None, target: Optional[str] = None,
                 task: str = "auto", val_fraction: float = 0.15, test_fraction: float = 0.15,
                 standardize: bool = True) -> Dataset:
    """Build, split and standardise a data set by name, e.g. load_dataset("moons", noise=0.3)."""
    if name not in DATASETS:
        raise ConfigError(f"data={name!r} is not known; choose one of: {', '.join(DATASETS)}")
    opts = _Opts(n_samples, noise, n_features, n_classes, path, target)
    try:
        raw_X, y, known_task, notes = DATASETS[name](opts, seed)
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"data={name}: {err}") from None
    # float32 from here on; builders hand over fresh arrays, so a float32 one is used as it is
    X = np.require(raw_X, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
    del raw_X  # a (float64) original goes
    if task == "auto":
        task = known_task or _infer_task(np.asarray(y))
    if task not in TASKS:
        raise ConfigError(f"data.task={task!r} is not known; choose one of: auto, {', '.join(TASKS)}")

    classes: List[str] = []
    if task == "regression":
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            raise ConfigError(f"data={name}: the target has text values; a regression target must be numeric") from None
    else:
        labels, y = np.unique(np.asarray(y).astype(str) if np.asarray(y).dtype == object else y,
                              return_inverse=True)
        classes = [str(c) for c in labels]
        if len(classes) < 2:
            raise ConfigError(f"data={name}: the target has only one class ({classes[0]!r}); "
                              "classification needs at least two")
        if task == "binary" and len(classes) != 2:
            raise ConfigError(f"data.task=binary but the target has {len(classes)} classes")
        if task == "multiclass" and len(classes) == 2:
            task = "binary"

    if len(X) <= 4 and name in ("xor", "and", "or", "nand"):
        idx = np.arange(len(X))
        parts = (idx, idx, idx)
    else:
        parts = _split(y, task, val_fraction, test_fraction, seed, name)
    (tr, va, te) = parts
    if task != "regression":
        missing = sorted(set(range(len(classes))) - set(np.unique(y[tr]).tolist()))
        if missing:
            raise ConfigError(f"data={name}: the train split has no row of class {classes[missing[0]]!r}; "
                              "add rows of that class or lower data.val_fraction/data.test_fraction")

    # Rows in train | val | test order, so that each split is a view of X: no second copy.
    order = np.concatenate(parts)
    if len(order) == len(X):
        _permute_rows(X, order)
    else:  # the 4-row truth tables serve as all three splits
        X = X[order]
    y = np.asarray(y)[order]
    n_tr, n_va = len(tr), len(va)
    y_mean, y_std = 0.0, 1.0
    if standardize:
        mean, std = _column_mean_std(X[:n_tr])
        std = np.where(std > 1e-6 * np.maximum(1.0, np.abs(mean)), std, 1.0)  # constant columns stay constant
        X -= mean.astype(np.float32)  # in place: no second copy of a large data set
        X /= std.astype(np.float32)
        if task == "regression":
            y_mean, y_std = float(y[:n_tr].mean()), float(y[:n_tr].std()) or 1.0
            y = (y - y_mean) / y_std

    def tensors(rows: slice):
        xt = torch.from_numpy(X[rows])  # a view
        if task == "multiclass":
            return xt, torch.as_tensor(y[rows], dtype=torch.long)
        return xt, torch.as_tensor(y[rows], dtype=torch.float32).reshape(-1, 1)

    names = [f"x{i}" for i in range(X.shape[1])]
    return Dataset(name, task, *tensors(slice(0, n_tr)), *tensors(slice(n_tr, n_tr + n_va)),
                   *tensors(slice(n_tr + n_va, None)), feature_names=names, classes=classes, notes=notes,
                   y_mean=y_mean, y_std=y_std)


def _permute_rows(a: np.ndarray, order: np.ndarray, copy_up_to: int = 2 ** 26) -> None:
    """a[:] = a[order] in place, for a permutation `order`, holding one row aside instead of a copy of `a`."""
    if a.nbytes <= copy_up_to:  # up to 64 MB a temporary copy is cheaper than a Python loop
        a[:] = a[order]
        return
    order_list = order.tolist()
    done = bytearray(len(a))
    for start in range(len(a)):
        if done[start] or order_list[start] == start:
            continue
        held = a[start].copy()
        i = start
        while True:  # walk the cycle through start: each row takes the one `order` names
            done[i] = 1
            j = order_list[i]
            if j == start:
                a[i] = held
                break
            a[i] = a[j]
            i = j


def _column_mean_std(a: np.ndarray, block_bytes: int = 2 ** 24) -> Tuple[np.ndarray, np.ndarray]:
    """Per-column mean and (population) std in float64, as numpy's mean/std compute them, but for large
    float32 arrays over blocks of columns, so the float64 deviations never take the whole matrix."""
    mean = a.mean(0, dtype=np.float64)
    n, d = a.shape
    width = max(2, block_bytes // 8 // max(n, 1))  # 16 MB of float64 deviations at a time
    sq = np.empty(d)
    # blocks of >= 2 columns (or all of them), each summed row by row as numpy's std sums them
    for cols in np.array_split(np.arange(d), max(1, d // width)):
        block = slice(cols[0], cols[-1] + 1)
        dev = a[:, block] - mean[block]
        dev *= dev
        sq[block] = dev.sum(0)
        del dev  # before the next block's is made
    return mean, np.sqrt(sq / n)


@dataclass
class _Opts:
    n_samples: Optional[int]
    noise: Optional[float]
    n_features: Optional[int]
    n_classes: Optional[int]
    path: Optional[str]
    target: Optional[str]


def _split(y: np.ndarray, task: str, val_fraction: float, test_fraction: float, seed: int, name: str):
    """Row indices of train, val and test; stratified by class for classification.

    The same rows as two calls of scikit-learn's train_test_split(random_state=seed,
    stratify=...) pick (test first, then val from the rest), without importing it.
    """
    strat = y if task != "regression" else None
    what = f"{len(y)} rows into train+val and test"
    try:
        rest, te = _train_test_indices(np.arange(len(y)), test_fraction, seed, strat)
        what = f"the {len(rest)} rows left after the test split into train and val"
        tr, va = _train_test_indices(rest, val_fraction / (1 - test_fraction), seed,
                                     y[rest] if strat is not None else None)
    except ValueError as err:
        raise ConfigError(f"data={name}: cannot split {what}: {err}; lower data.test_fraction or "
                          "data.val_fraction, or use more rows") from None
    return tr, va, te


def _train_test_indices(idx: np.ndarray, test_size: float, seed: int, stratify: Optional[np.ndarray]):
    """(train, test) subsets of idx drawn as scikit-learn's (Stratified)ShuffleSplit draws them.

    scikit-learn's model_selection and its SciPy imports cost more start-up than the rest of
    a default run's data path; tests/test_data.py checks these rows equal train_test_split's.
    """
    n = len(idx)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    if n_train == 0 or n_test == 0:
        raise ValueError(f"a {1 - test_size:.2g}/{test_size:.2g} split of {n} rows leaves one side empty")
    rng = np.random.RandomState(seed)
    if stratify is None:
        perm = rng.permutation(n)
        return idx[perm[n_test:]], idx[perm[:n_test]]
    _, y_index, counts = np.unique(stratify, return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise ValueError(f"its smallest class has {counts.min()} row, and a stratified split needs 2 per class")
    if n_train < len(counts) or n_test < len(counts):
        raise ValueError(f"a {1 - test_size:.2g}/{test_size:.2g} split of {n} rows cannot give each of "
                         f"{len(counts)} classes a row on both sides")
    by_class = np.split(np.argsort(y_index, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _apportion(counts, n_train, rng)
    t_i = _apportion(counts - n_i, n_test, rng)
    train: List[int] = []
    test: List[int] = []
    for i, rows in enumerate(by_class):
        rows = rows.take(rng.permutation(counts[i]), mode="clip")
        train.extend(rows[:n_i[i]])
        test.extend(rows[n_i[i]:n_i[i] + t_i[i]])
    return idx[rng.permutation(train)], idx[rng.permutation(test)]


def _apportion(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Rows per class in proportion to counts, summing to n_draws; ties for the remainder drawn at random."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            take = min(len(tied), need)
            floored[rng.choice(tied, size=take, replace=False)] += 1
            need -= take
            if need == 0:
                break
    return floored.astype(int)
