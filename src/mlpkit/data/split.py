"""Row splits and in-place array helpers: train/val/test indices (stratified for classes),
drawn exactly as scikit-learn's train_test_split draws them, without importing it."""

from __future__ import annotations

import math
import mmap
from typing import Any, List, Optional, Tuple

import numpy as np

from mlpkit.errors import ConfigError
from mlpkit.metrics import distinct
from mlpkit.tasks import get_task


PREFAULT_BYTES = 64 * 2 ** 20  # arrays at least this large get their memory mapped in at once


def empty_array(shape: Tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """np.empty, but a large array's memory is mapped in by the kernel in one call (MAP_POPULATE)
    instead of one page fault per page on first write: on virtual machines, where each fault is
    slow, writing a 876 MB result took 2.6 s after np.empty and 0.4 s this way (Linux; elsewhere
    plain np.empty). The array keeps its mapping alive; torch.from_numpy shares it."""
    mapped = _populated(shape, dtype)
    return np.empty(shape, dtype) if mapped is None else mapped


def zeros_array(shape: Tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """np.zeros, with empty_array's mapping for a large array (whose pages the kernel hands over zeroed)."""
    mapped = _populated(shape, dtype)
    return np.zeros(shape, dtype) if mapped is None else mapped


def _populated(shape: Tuple[int, ...], dtype) -> Optional[np.ndarray]:
    """An array of at least PREFAULT_BYTES in anonymous memory mapped in at once (all zeros), else None."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    flag = getattr(mmap, "MAP_POPULATE", None)
    if nbytes < PREFAULT_BYTES or flag is None:
        return None
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flag)
    except (OSError, ValueError):
        return None
    return np.frombuffer(buf, dtype).reshape(shape)


class TooFewOfAClass(ValueError):
    """A stratified split of rows in which a class has fewer than 2 rows (split_rows names the classes)."""

    def __init__(self, smallest: int):
        super().__init__(f"its smallest class has {smallest} row, and a stratified split needs 2 per class")


def split_rows(y: np.ndarray, task: str, val_fraction: float, test_fraction: float, seed: int, name: str,
               classes: Optional[List[Any]] = None):
    """Row indices of train, val and test; stratified by class for classification.

    The same rows as two calls of scikit-learn's train_test_split(random_state=seed,
    stratify=...) pick (test first, then val from the rest), without importing it.
    `classes`: the label of each class code, for a message naming a class with too few rows.
    """
    strat = get_task(task).stratify(y)
    what = f"{len(y)} rows into train+val and test"
    try:
        rest, te = train_test_indices(np.arange(len(y)), test_fraction, seed, strat)
        what = f"the {len(rest)} rows left after the test split into train and val"
        tr, va = train_test_indices(rest, val_fraction / (1 - test_fraction), seed,
                                     y[rest] if strat is not None else None)
    except ValueError as err:
        if isinstance(err, TooFewOfAClass):
            values, totals = np.unique(y, return_counts=True)  # each class's rows in the whole table
            if totals.min() < 3:  # not the fractions: the classes themselves
                raise ConfigError(few_of_a_class(name, what, values[totals < 3], totals[totals < 3], classes)) \
                    from None
        raise ConfigError(f"data={name}: cannot split {what}: {err}; lower data.test_fraction or "
                          "data.val_fraction, or use more rows") from None
    return tr, va, te


def few_of_a_class(name: str, what: str, codes: np.ndarray, total: np.ndarray, classes: Optional[List[Any]]) -> str:
    """The classes of under 3 rows (`total` rows each in the table) that stop a stratified split."""
    label = [repr(classes[int(c)]) if classes is not None and 0 <= int(c) < len(classes) else repr(c.item())
             for c in codes]
    named = ", ".join(f"{lab} ({n} row{'s' if n != 1 else ''})" for lab, n in zip(label[:5], total.tolist()))
    more = f" and {len(label) - 5} more" if len(label) > 5 else ""
    s = "es" if len(label) > 1 else ""
    return (f"data={name}: cannot split {what}: too few rows of the class{s} {named}{more} in the table; a "
            "stratified split needs at least 2 rows of every class at each of its steps (test, then val), which "
            f"smaller fractions do not change: add rows of th{'ese' if s else 'is'} class{s}, or leave "
            f"{'them' if s else 'it'} out of the file")


def min_split_rows(val_fraction: float, test_fraction: float, most: int = 100_000) -> int:
    """The fewest rows that split_rows turns into three non-empty splits (without classes)."""
    for n in range(3, most):
        n_test = math.ceil(test_fraction * n)
        rest = n - n_test
        if n_test < 1 or rest < 2 or not 0 < test_fraction < 1:
            continue
        n_val = math.ceil(val_fraction / (1 - test_fraction) * rest)
        if 1 <= n_val < rest:
            return n
    return most


def train_test_indices(idx: np.ndarray, test_size: float, seed: int, stratify: Optional[np.ndarray]):
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
    y_index, counts = _class_index(stratify)
    if counts.min() < 2:
        raise TooFewOfAClass(int(counts.min()))
    if n_train < len(counts) or n_test < len(counts):
        raise ValueError(f"a {1 - test_size:.2g}/{test_size:.2g} split of {n} rows cannot give each of "
                         f"{len(counts)} classes a row on both sides")
    # a stable sort of small integers is a radix sort in numpy: the same order, in one pass
    small = y_index.astype(np.int16) if len(counts) <= np.iinfo(np.int16).max else y_index
    by_class = np.split(np.argsort(small, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _apportion(counts, n_train, rng)
    t_i = _apportion(counts - n_i, n_test, rng)
    train: List[np.ndarray] = []
    test: List[np.ndarray] = []
    for i, rows in enumerate(by_class):
        rows = rows.take(rng.permutation(counts[i]), mode="clip")
        train.append(rows[:n_i[i]])
        test.append(rows[n_i[i]:n_i[i] + t_i[i]])
    # arrays joined, not a list of a million Python ints: the same rows, the same draws
    return idx[rng.permutation(np.concatenate(train))], idx[rng.permutation(np.concatenate(test))]


def _class_index(stratify: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """np.unique(stratify, return_inverse=True, return_counts=True)[1:]: each row's class index (classes
    in sorted order) and the classes' counts; by counting for the class codes of a classification
    target (small non-negative integers), in one pass instead of a sort of every row."""
    s = np.asarray(stratify)
    if s.dtype.kind in "iu" and len(s) and s.min() >= 0 and s.max() < 1 << 20:
        counts = np.bincount(s)
        present = np.flatnonzero(counts)
        index = np.zeros(len(counts), np.intp)
        index[present] = np.arange(len(present))
        return index[s], counts[present]
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def _apportion(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Rows per class in proportion to counts, summing to n_draws; ties for the remainder drawn at random."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in distinct(remainder)[::-1]:
            (tied,) = np.where(remainder == value)
            take = min(len(tied), need)
            floored[rng.choice(tied, size=take, replace=False)] += 1
            need -= take
            if need == 0:
                break
    return floored.astype(int)


def permute_rows(a: np.ndarray, order: np.ndarray, copy_up_to: int = 2 ** 26) -> None:
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


def column_mean_std(a: np.ndarray, block_bytes: int = 2 ** 24) -> Tuple[np.ndarray, np.ndarray]:
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


