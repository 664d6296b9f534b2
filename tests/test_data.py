"""Every registered data set: the right task, splits that keep every class in train, and
standardisation with train-split statistics only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mlpkit import ConfigError, load_dataset
from mlpkit.data import DATASETS

from conftest import good_csv, write_csv

NAMES = sorted(DATASETS)
GATES = {  # truth tables: (x1, x2) -> label
    "xor": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 0},
    "and": {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1},
    "or": {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 1},
    "nand": {(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 0},
}
GENERATED = {"moons", "circles", "spiral", "blobs", "sine", "classification", "regression"}
# name -> (task, number of classes or None, input features or None)
EXPECTED = {
    "digits": ("multiclass", 10, 64), "iris": ("multiclass", 3, 4), "wine": ("multiclass", 3, 13),
    "breast_cancer": ("binary", 2, 30), "diabetes": ("regression", None, 10),
    "sine": ("regression", None, 1), "regression": ("regression", None, 10),
    "xor": ("binary", 2, 2), "and": ("binary", 2, 2), "or": ("binary", 2, 2), "nand": ("binary", 2, 2),
    "moons": ("binary", 2, 2), "circles": ("binary", 2, 2), "spiral": ("binary", 2, 2),
    "blobs": ("multiclass", 3, 2), "classification": ("binary", 2, 20),
    "csv": ("multiclass", 3, 3),  # the file written by conftest.good_csv
}
_cache: dict = {}


def _load(name, tmp_path_factory, **kwargs):
    key = (name, tuple(sorted(kwargs.items())))
    if key not in _cache:
        if name == "csv":
            kwargs.setdefault("path", str(good_csv(tmp_path_factory.mktemp("csv") / "data.csv")))
        elif name in GENERATED:
            kwargs.setdefault("n_samples", 200)
        _cache[key] = load_dataset(name, **kwargs)
    return _cache[key]


def _y(t: torch.Tensor) -> np.ndarray:
    return t.reshape(len(t), -1)[:, 0].numpy() if t.dim() == 2 else t.numpy()


@pytest.mark.parametrize("name", NAMES)
def test_task_and_shapes(name, tmp_path_factory):
    if name not in EXPECTED:
        pytest.fail(f"new data set {name!r}: add its task to EXPECTED in this file")
    task, n_classes, in_dim = EXPECTED[name]
    d = _load(name, tmp_path_factory)
    assert d.task == task
    assert d.in_dim == in_dim
    for X, y in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        assert X.dtype == torch.float32 and X.shape[1] == in_dim and len(X) == len(y) > 0
        assert torch.isfinite(X).all()
        if task == "multiclass":
            assert y.dtype == torch.long and y.dim() == 1
        else:  # binary: one logit; regression: one output
            assert y.dtype == torch.float32 and y.shape == (len(X), 1)
    if task == "regression":
        assert d.out_dim == 1 and not d.is_classification
    else:
        assert len(d.classes) == n_classes
        assert d.out_dim == (1 if task == "binary" else n_classes)
        labels = np.concatenate([_y(d.y_train), _y(d.y_val), _y(d.y_test)])
        assert set(np.unique(labels).tolist()) == set(range(n_classes))


@pytest.mark.parametrize("name", [n for n in NAMES if n not in GATES])
def test_splits_partition_the_rows_about_70_15_15(name, tmp_path_factory):
    d = _load(name, tmp_path_factory)
    n = (len(d.X_train), len(d.X_val), len(d.X_test))
    total = sum(n)
    if name in GENERATED:
        assert total == 200
    assert n[1] / total == pytest.approx(0.15, abs=0.03)
    assert n[2] / total == pytest.approx(0.15, abs=0.03)


@pytest.mark.parametrize("name", [n for n in NAMES if EXPECTED.get(n, ("",))[0] != "regression"])
def test_every_class_is_in_train_and_splits_are_stratified(name, tmp_path_factory):
    d = _load(name, tmp_path_factory)
    k = len(d.classes)
    train = np.bincount(_y(d.y_train).astype(int), minlength=k)
    assert (train > 0).all(), f"classes missing from train: {np.flatnonzero(train == 0)}"
    if name in GATES:
        return
    everything = train + np.bincount(_y(d.y_val).astype(int), minlength=k) \
        + np.bincount(_y(d.y_test).astype(int), minlength=k)
    for split in (d.y_val, d.y_test):
        counts = np.bincount(_y(split).astype(int), minlength=k)
        expected = everything * len(split) / everything.sum()
        assert np.all(np.abs(counts - expected) <= 1.5), f"not stratified: {counts} vs {expected}"


@pytest.mark.parametrize("name", NAMES)
def test_standardised_with_train_statistics(name, tmp_path_factory):
    d = _load(name, tmp_path_factory)
    X = d.X_train.double()
    mean, std = X.mean(0), X.std(0, correction=0)
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-4, rtol=0)
    constant = std < 1e-6  # constant columns (e.g. always-blank digit pixels) stay constant
    torch.testing.assert_close(std[~constant], torch.ones_like(std[~constant]), atol=1e-3, rtol=0)
    if d.task == "regression":
        yt = d.y_train.double()
        assert yt.mean().item() == pytest.approx(0, abs=1e-4)
        assert yt.std(correction=0).item() == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in GATES])
def test_val_and_test_use_the_train_split_statistics(name, tmp_path_factory):
    raw = _load(name, tmp_path_factory, standardize=False)
    std_ = _load(name, tmp_path_factory)
    Xtr = raw.X_train.double()
    mean, sd = Xtr.mean(0), Xtr.std(0, correction=0)
    sd = torch.where(sd > 1e-9, sd, torch.ones_like(sd))
    for raw_split, split in ((raw.X_val, std_.X_val), (raw.X_test, std_.X_test)):
        torch.testing.assert_close(split.double(), (raw_split.double() - mean) / sd, atol=2e-3, rtol=1e-3)
    if raw.task == "regression":
        ytr = raw.y_train.double()
        expected = (raw.y_val.double() - ytr.mean()) / ytr.std(correction=0)
        torch.testing.assert_close(std_.y_val.double(), expected, atol=2e-3, rtol=1e-3)
        assert std_.y_mean == pytest.approx(ytr.mean().item(), rel=1e-4, abs=1e-4)
        assert std_.y_std == pytest.approx(ytr.std(correction=0).item(), rel=1e-4)


@pytest.mark.parametrize("gate", sorted(GATES))
def test_logic_gate_is_the_four_row_truth_table_in_every_split(gate):
    assert gate in DATASETS
    d = load_dataset(gate)
    assert len(d.X_train) == 4
    for X, y in ((d.X_val, d.y_val), (d.X_test, d.y_test)):
        torch.testing.assert_close(X, d.X_train)
        torch.testing.assert_close(y, d.y_train)
    bits = (d.X_train > 0).int().tolist()  # standardised corners: 0 -> -1, 1 -> +1
    table = {tuple(b): int(label) for b, label in zip(bits, _y(d.y_train))}
    assert table == GATES[gate]


def test_logic_gate_with_n_samples_is_a_noisy_cloud():
    d = load_dataset("xor", n_samples=200, noise=0.1)
    assert len(d.X_train) + len(d.X_val) + len(d.X_test) == 200
    assert d.task == "binary"


def test_same_seed_same_data_different_seed_different_split():
    a = load_dataset("moons", n_samples=100, seed=3)
    b = load_dataset("moons", n_samples=100, seed=3)
    c = load_dataset("moons", n_samples=100, seed=4)
    torch.testing.assert_close(a.X_train, b.X_train)
    assert a.X_train.shape == c.X_train.shape and not torch.allclose(a.X_train, c.X_train)


def test_generator_settings_are_honoured():
    blobs = load_dataset("blobs", n_samples=300, n_features=5, n_classes=4)
    assert blobs.in_dim == 5 and len(blobs.classes) == 4 and blobs.task == "multiclass"
    spiral = load_dataset("spiral", n_samples=300, n_classes=3)
    assert len(spiral.classes) == 3 and spiral.task == "multiclass"
    clf = load_dataset("classification", n_samples=300, n_features=8, n_classes=3)
    assert clf.in_dim == 8 and len(clf.classes) == 3


# ---------------------------------------------------------------------------
# CSV files


def test_csv_target_by_name_and_task_inference(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[int(i % 2), f"{rng.normal():.3f}", f"{rng.normal() * 10:.3f}"] for i in range(60)]
    path = write_csv(tmp_path / "d.csv", ["label", "x1", "y"], rows)
    reg = load_dataset("csv", path=str(path))  # default target: the last column, real numbers
    assert reg.task == "regression" and reg.in_dim == 2
    clf = load_dataset("csv", path=str(path), target="label")  # two integer values: binary
    assert clf.task == "binary" and clf.in_dim == 2


def test_csv_rare_class_still_reaches_train(tmp_path):
    rows = [[f"{i * 0.1:.2f}", "common"] for i in range(40)] + [[f"{50 + i}", "rare"] for i in range(3)]
    path = write_csv(tmp_path / "rare.csv", ["x", "label"], rows)
    d = load_dataset("csv", path=str(path))
    rare = d.classes.index("rare")
    assert (_y(d.y_train) == rare).sum() >= 1


@pytest.mark.parametrize("content, needle", [
    ("", "empty"),
    ("a,b,label\n", "no data rows"),
    ("label\nx\ny\n", "at least one feature column"),
])
def test_bad_csv_is_a_config_error(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=needle):
        load_dataset("csv", path=str(path))


def test_csv_missing_target_and_missing_file(tmp_path):
    path = good_csv(tmp_path / "ok.csv")
    with pytest.raises(ConfigError, match="nope"):
        load_dataset("csv", path=str(path), target="nope")
    with pytest.raises(ConfigError, match="absent.csv"):
        load_dataset("csv", path=str(tmp_path / "absent.csv"))


def test_unknown_data_set_is_a_config_error():
    with pytest.raises(ConfigError, match="mnist"):
        load_dataset("mnist")


# ---------------------------------------------------------------------------
# What the data path does without scikit-learn, checked against scikit-learn


def test_digits_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    from mlpkit.data.sources import _digits
    X, y, task, _ = _digits(None, 0)
    ref = load_digits()
    assert task == "multiclass"
    np.testing.assert_array_equal(X, ref.data)
    np.testing.assert_array_equal(y, ref.target)


@pytest.mark.parametrize("stratified", [True, False])
def test_split_rows_equal_scikit_learns_train_test_split(stratified):
    from sklearn.model_selection import train_test_split

    from mlpkit.data.split import train_test_indices as _train_test_indices
    rng = np.random.default_rng(7)
    compared = 0
    for _ in range(150):
        n, k = int(rng.integers(6, 300)), int(rng.integers(2, 7))
        y = rng.choice(k, n, p=rng.dirichlet(np.ones(k)))  # uneven classes: ties and remainders
        idx = np.arange(n) * 3 + 5  # not 0..n-1: the subsets are of idx
        size, seed = float(rng.uniform(0.05, 0.6)), int(rng.integers(0, 10_000))
        strat = y if stratified else None
        try:
            expected = train_test_split(idx, test_size=size, random_state=seed, stratify=strat)
        except ValueError:
            with pytest.raises(ValueError):
                _train_test_indices(idx, size, seed, strat)
            continue
        got = _train_test_indices(idx, size, seed, strat)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        compared += 1
    assert compared > 100


def test_classification_generator_is_seeded_balanced_and_float32():
    from mlpkit.data.sources import _classification, Opts
    opts = Opts(n_samples=2000, noise=0.0, n_features=30, n_classes=4)
    X, y, _, _ = _classification(opts, 3)
    X2, y2, _, _ = _classification(opts, 3)
    X3, _, _, _ = _classification(opts, 4)
    assert X.dtype == np.float32 and X.shape == (2000, 30) and np.isfinite(X).all()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, X3)
    np.testing.assert_array_equal(np.bincount(y), [500] * 4)  # 2 equal clusters per class, no flips
    flipped = _classification(Opts(20000, 0.2, 10, 2), 0)[1]
    assert 0.45 < flipped.mean() < 0.55  # a random 20% relabelled: still about balanced


def test_classification_is_learnable_and_its_noise_features_are_not_informative():
    """An informative column separates the classes; the noise columns (half minus 2) do not."""
    from mlpkit.data.sources import _classification, Opts
    X, y, _, _ = _classification(Opts(4000, 0.0, 20, 2), 0)
    z = (X - X.mean(0)) / X.std(0)
    separation = np.abs(z[y == 0].mean(0) - z[y == 1].mean(0))
    assert (separation > 0.15).sum() >= 3
    assert (separation < 0.1).sum() >= 8  # 20 - 10 informative - 2 redundant = 8 pure noise columns


@pytest.mark.parametrize("n, d", [(500, 7), (1000, 1), (257, 40)])
def test_in_place_row_permutation_and_blockwise_statistics_match_numpy(n, d):
    from mlpkit.data.split import column_mean_std as _column_mean_std, permute_rows as _permute_rows
    rng = np.random.default_rng(n)
    a = (rng.standard_normal((n, d)) * rng.uniform(0.1, 50, d) + rng.uniform(-9, 9, d)).astype(np.float32)
    order = rng.permutation(n)
    expected = a[order]
    _permute_rows(a, order, copy_up_to=0)  # the cycle-walking path, as for a large data set
    np.testing.assert_array_equal(a, expected)
    mean, std = _column_mean_std(a, block_bytes=16 * n)  # blocks of 2 columns
    np.testing.assert_array_equal(mean, a.mean(0, dtype=np.float64))
    np.testing.assert_array_equal(std, a.std(0, dtype=np.float64))


@pytest.mark.slow
def test_mnist_sized_data_set_is_held_once(tmp_path):
    """60,000 x 784 float32 is 179 MiB; loading it may hold that and little more (no float64 or split copies)."""
    code = ("import resource, torch, numpy; from mlpkit import load_dataset\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "d = load_dataset('classification', n_samples=60000, n_features=784, n_classes=10, "
            "val_fraction=0.1, test_fraction=0.1)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, "
            "sum(t.numel() * t.element_size() for t in (d.X_train, d.X_val, d.X_test)) / 2 ** 20)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown_mb, data_mb = map(float, out.stdout.split())
    assert round(data_mb) == 179
    assert grown_mb < data_mb + 80, f"loading grew the process by {grown_mb:.0f} MiB for {data_mb:.0f} MiB of data"


def test_digits_run_does_not_import_scikit_learn():
    """The default data path reads the digits file and splits without importing scikit-learn (start-up)."""
    code = ("import sys; from mlpkit import load_dataset; load_dataset('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_split_that_cannot_be_made_names_the_split_and_the_fix():
    with pytest.raises(ConfigError, match=r"the 3 rows left after the test split.*lower data.test_fraction"):
        load_dataset("iris", test_fraction=0.98, val_fraction=0.01)
    with pytest.raises(ConfigError, match=r"cannot split 150 rows into train\+val and test: .* each of 3 classes"):
        load_dataset("iris", test_fraction=0.01)


@pytest.mark.parametrize("shape", [(3, 4), (70_000, 256)])  # below and above PREFAULT_BYTES
def test_empty_array_is_a_writable_array_torch_can_share(shape):
    from mlpkit.data.split import PREFAULT_BYTES, empty_array

    X = empty_array(shape, np.float32)
    assert X.shape == shape and X.dtype == np.float32 and X.flags.writeable and X.flags.c_contiguous
    X[...] = 1.5
    t = torch.from_numpy(X)
    t[-1, -1] = 2.0  # one memory: the tensor writes into the array
    assert X[-1, -1] == 2.0 and float(t.double().sum()) == 1.5 * (X.size - 1) + 2.0
    assert (X.nbytes >= PREFAULT_BYTES) == (shape[0] > 1000)


def test_a_class_missing_from_the_train_rows_is_named():
    """The last check before fitting: every class has a train row (counted per class code), else the
    first class without one is named in one line."""
    from mlpkit.data.loading import _check_train_has_every_class

    y = np.array([0, 0, 1, 1, 2, 3])
    _check_train_has_every_class("csv", y, np.array([0, 2, 4, 5]), "multiclass", ["a", "b", "c", "d"])
    with pytest.raises(ConfigError) as err:
        _check_train_has_every_class("csv", y, np.array([0, 1, 4]), "multiclass", ["a", "b", "c", "d"])
    assert str(err.value).startswith("data=csv: the train split has no row of class 'b'; ")
    _check_train_has_every_class("csv", y.astype(float), np.array([0]), "regression", [])  # no classes to check
