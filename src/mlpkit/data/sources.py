"""The options of `data=`, each one entry of DATASETS: generated sets (scikit-learn's generators, and a
spiral, the logic gates and a memory-lean make_classification written here), the sets scikit-learn
ships, and `csv`, a user's own table.

An entry (Source) says which data.* keys it takes, what is known of it before anything is loaded (its
task, its default size for the memory check), what is checked before a run starts (a table's file),
and how it is built: fn(opts, seed) -> (X float array (N, D), y array (N,), task or None, notes) for
an array set (a generated classification set always names its task, so any number of classes stays
classes); a table is read by mlpkit.data.table (mlpkit.data.loading.load_dataset).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mlpkit.data.split import empty_array
from mlpkit.errors import ConfigError
from mlpkit.registry import Registry
from mlpkit.tasks import BINARY, MULTICLASS, REGRESSION, TASKS, Task, classification_task


@dataclass
class Opts:
    """The generator settings a builder reads (None: the set's own default)."""

    n_samples: Optional[int] = None
    noise: Optional[float] = None
    n_features: Optional[int] = None
    n_classes: Optional[int] = None


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
            return corners, labels, BINARY, [note]
        rng = np.random.default_rng(seed)
        pick = rng.integers(0, 4, cfg.n_samples)
        X = corners[pick] + rng.normal(0.0, _opt(cfg.noise, 0.1), (cfg.n_samples, 2))
        return X, labels[pick], BINARY, []
    return build


def _moons(cfg, seed) -> Raw:
    from sklearn.datasets import make_moons
    X, y = make_moons(_opt(cfg.n_samples, 500), noise=_opt(cfg.noise, 0.2), random_state=seed)
    return X, y, BINARY, []


def _circles(cfg, seed) -> Raw:
    from sklearn.datasets import make_circles
    X, y = make_circles(_opt(cfg.n_samples, 500), noise=_opt(cfg.noise, 0.1), factor=0.5, random_state=seed)
    return X, y, BINARY, []


def _spiral(cfg, seed) -> Raw:
    # K interleaved arms: radius grows with t, angle turns 1.75 times around.
    k, n = _opt(cfg.n_classes, 2), _opt(cfg.n_samples, 600)
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % k
    t = rng.uniform(0.05, 1.0, n)
    theta = 3.5 * np.pi * t + 2 * np.pi * cls / k
    X = np.stack([t * np.cos(theta), t * np.sin(theta)], 1) + rng.normal(0, _opt(cfg.noise, 0.05), (n, 2))
    return X, cls, _classes(k), []


def _blobs(cfg, seed) -> Raw:
    from sklearn.datasets import make_blobs
    X, y = make_blobs(_opt(cfg.n_samples, 500), n_features=_opt(cfg.n_features, 2),
                      centers=_opt(cfg.n_classes, 3), cluster_std=_opt(cfg.noise, 1.0), random_state=seed)
    return X, y, _classes(_opt(cfg.n_classes, 3)), []


def _sine(cfg, seed) -> Raw:
    rng = np.random.default_rng(seed)
    n = _opt(cfg.n_samples, 500)
    x = rng.uniform(-2 * np.pi, 2 * np.pi, (n, 1))
    return x, np.sin(x[:, 0]) + rng.normal(0, _opt(cfg.noise, 0.1), n), REGRESSION, []


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

    X = empty_array((n, n_features), np.float32)
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
    return X, y, _classes(n_classes), []


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
    return X, y, REGRESSION, []


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
            return table[:, :-1], table[:, -1].astype(int), MULTICLASS, []
    return _bundled("load_digits", MULTICLASS)(cfg, seed)


def _classes(k: int) -> str:
    return classification_task(k)


@dataclass(frozen=True)
class Source:
    """One option of `data=`.

    Args:
        build: fn(opts, seed) -> Raw for an array set; None for a user's table (read by mlpkit.data.table).
        settings: the data.* keys it takes besides COMMON: what its builder (or the table reader) reads.
        task: its task when known before loading; None: from its classes (or a table's data.task).
        rows, columns: its size when data.n_samples / data.n_features are not set, for the memory check
            before anything is built (a table's is unknown until read: a lower bound).
        truth_table: its rows are a truth table (the logic gates), used whole as train, val and test.
    """

    build: Optional[Callable[[Opts, int], Raw]]
    settings: Tuple[str, ...] = ()
    task: Optional[Task] = None
    rows: int = 500
    columns: int = 2
    truth_table: bool = False

    @property
    def is_table(self) -> bool:
        return self.build is None

    def known_task(self, d: Any) -> Optional[Task]:
        """The task as the config `d` (cfg.data) tells it, or None when only the data can."""
        if self.is_table:
            return None if d.task == "auto" else TASKS[d.task]
        return self.task

    def size(self, d: Any) -> Tuple[int, int]:
        """(rows, feature columns) of the config `d`, for the memory estimate."""
        return d.n_samples or self.rows, d.n_features or self.columns

    def check(self, d: Any) -> None:
        """What can be checked before a run starts: a table's file is there and readable."""
        if not self.is_table:
            return
        from mlpkit.data.table import check_file

        if not d.path:
            raise ConfigError("data=csv needs data.path=<file> (a .csv, .tsv or .parquet table) and "
                              "data.target=<column> (default: the last column)")
        check_file(d.path)


# The split keys every set takes; each entry lists the keys its builder reads besides these.
COMMON = ("name", "val_fraction", "test_fraction", "standardize")
_CLOUD = ("n_samples", "noise")
_GENERATED = (*_CLOUD, "n_features")

_SOURCES = {
    "xor": Source(_gate({(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0}), _CLOUD, BINARY, 4, truth_table=True),
    "and": Source(_gate({(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1}), _CLOUD, BINARY, 4, truth_table=True),
    "or": Source(_gate({(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 1}), _CLOUD, BINARY, 4, truth_table=True),
    "nand": Source(_gate({(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 0}), _CLOUD, BINARY, 4, truth_table=True),
    "moons": Source(_moons, _CLOUD, BINARY),
    "circles": Source(_circles, _CLOUD, BINARY),
    "spiral": Source(_spiral, (*_CLOUD, "n_classes"), rows=600),
    "blobs": Source(_blobs, (*_GENERATED, "n_classes")),
    "sine": Source(_sine, _CLOUD, REGRESSION, columns=1),
    "classification": Source(_classification, (*_GENERATED, "n_classes"), rows=1000, columns=20),
    "regression": Source(_regression, _GENERATED, REGRESSION, rows=1000, columns=10),
    "digits": Source(_digits, task=MULTICLASS, rows=1797, columns=64),
    "iris": Source(_bundled("load_iris", MULTICLASS), task=MULTICLASS, rows=150, columns=4),
    "wine": Source(_bundled("load_wine", MULTICLASS), task=MULTICLASS, rows=178, columns=13),
    "breast_cancer": Source(_bundled("load_breast_cancer", BINARY), task=BINARY, rows=569, columns=30),
    "diabetes": Source(_bundled("load_diabetes", REGRESSION), task=REGRESSION, rows=442, columns=10),
    "csv": Source(None, ("path", "target", "task", "drop", "categorical", "numeric", "onehot_max"), columns=1),
}
DATASETS: Registry[Source] = Registry("data", _SOURCES, {name: s.settings for name, s in _SOURCES.items()})
