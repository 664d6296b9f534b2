"""Training on a table larger than memory (`data.stream=true`): the file is read block by block, never whole.

- Reading: a `.parquet` file by its row groups (pyarrow's ParquetFile.iter_batches, READ_ROWS rows at a
  time); a `.csv`/`.tsv` file in blocks of READ_ROWS rows by the same pandas reader that predict.py uses
  (mlpkit.data.table.iter_chunks), so a value is parsed as in the in-memory path. A text file is read
  again every epoch; no converted copy is written.
- Split: each row's split follows from its row number (0 = the first data row) and the seed, by a
  splitmix64 hash: test when u < test_fraction, val when u < test_fraction + val_fraction, else train
  (u uniform in [0, 1)). The fractions hold in expectation; no permutation of the rows is held, and a
  split is not stratified by class.
- Roles: each column's role (numeric, category, boolean, left out) is decided on the first HEAD_ROWS
  rows, as the in-memory path decides it on all of them.
- Fitting, in one pass over the file: vocabularies with exact counts over the train rows (so the
  one-hot encoding, with its rare-category grouping, is exactly the in-memory one); per numeric column
  the count, mean and sum of squared deviations by Chan's merge of per-block Welford sums (exact up to
  float rounding); its median (imputation) and median size (Column.scale) from a bottom-k sample of
  SKETCH_SIZE values: the values with the smallest hash keys of their row numbers, a uniform sample
  without replacement that does not depend on the block layout. With n values in the train split, the
  sample is the whole column when n <= SKETCH_SIZE (exact medians); otherwise, by the
  Dvoretzky-Kiefer-Wolfowitz inequality, the sample median lies between the train values' quantiles
  0.5 -+ eps with eps = sqrt(ln(2 / delta) / (2 * SKETCH_SIZE)): 0.0105 for delta = 1e-6.
  The result is the same Preprocessing (a fitted ColumnTransformer) as the in-memory path's, saved the
  same way, so predict.py applies a streamed run unchanged.
- Training: StreamSplit.batches reads the file again each epoch, in an order of row groups drawn from
  (seed, epoch), shuffles rows within a buffer of BUFFER_BYTES of model inputs, and hands out batches as tensors; the
  val and test splits are read the same way, unshuffled. What stays in memory: the fitted statistics,
  the per-column samples, one buffer of model inputs, and the test split's outputs (for its metrics).

Several processes (trainer.strategy=ddp, mlpkit.training.strategy): each process runs the same fitting
pass (a deterministic function of the file and the seed; the processes compare a digest of its result,
StreamSource.digest), which also counts each piece's rows per split (StreamSource.piece_rows). Rank r
of w reads `batches(..., rank=r, world_size=w)`: every w-th piece (row group, or block of a text file)
from the r-th on, in the epoch's shared order; from the counts every process knows, without asking the
others, how many rows each reads (rows_per_rank) and so the steps all of them can fill (steps). The rows
left over in an epoch are the tails of the ranks' last buffers; they change with the epoch's order. The
val and test splits are read the same way without an epoch (file order, rank r the pieces r, r + w, ...);
`merge` puts the ranks' rows back in file order.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mlpkit.data.dataset import Dataset
from mlpkit.errors import ConfigError
from mlpkit.tasks import get_task

READ_ROWS = 65_536  # rows read (and transformed) at a time
BUFFER_BYTES = 2 ** 27  # model inputs of the train rows shuffled together (128 MiB; at least a batch)
HEAD_ROWS = 100_000  # the first rows, whose values decide each column's role
SKETCH_SIZE = 65_536  # values sampled per numeric column for its median and scale
SAMPLE_ROWS = 100_000  # train rows a model builder sees (piecewise-linear bin edges: StreamDataset.train_inputs)
SUFFIXES = (".parquet", ".csv", ".tsv")
SPLITS = ("train", "val", "test")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ---------------------------------------------------------------------------
# Checks (before a run starts)


def check_stream(cfg: Any) -> None:
    """ConfigError (one line) for a config that data.stream=true cannot train."""
    d, t = cfg.data, cfg.trainer
    if d.name != "csv":
        raise ConfigError(f"data.stream=true reads a table file; data={d.name} is built in memory "
                          "(use data=csv data.path=<file.parquet|.csv|.tsv>)")
    path = str(d.path or "")
    if not path.lower().endswith(SUFFIXES):
        raise ConfigError(f"data.stream=true reads .parquet, .csv or .tsv files; data.path={path!r} is none "
                          "of these (compressed text files are read in memory: data.stream=false)")
    if cfg.model.name == "perceptron":
        raise ConfigError("data.stream=true trains by gradient steps on batches; model=perceptron measures the "
                          "whole train split after each epoch: use model=mlp, or data.stream=false")
    if t.batch_size == 0:
        raise ConfigError("data.stream=true needs trainer.batch_size >= 1: a full batch (0) would hold the "
                          "whole table in memory")
    if t.class_weight == "balanced":
        raise ConfigError("trainer.class_weight=balanced is not available with data.stream=true (the class "
                          "weights need the train labels before the first step); use data.stream=false")
    if t.strategy == "ddp":
        check_stream_ranks(path, t.batch_size)


def check_stream_ranks(path: str, batch_size: int) -> None:
    """ConfigError for a streamed run that the job's processes cannot share: a global batch smaller than
    the job, or a Parquet file with fewer row groups than processes (each reads its own)."""
    from mlpkit.training.launch import detect

    world = detect().world_size
    if world < 2:
        return
    if 0 < batch_size < world:
        raise ConfigError(f"trainer.batch_size={batch_size} is smaller than the job's {world} processes: with "
                          "data.stream=true every process takes a part of each global batch; use "
                          f"trainer.batch_size >= {world}")
    try:
        from mlpkit.data.table import is_parquet

        if not is_parquet(path):
            return
        import pyarrow.parquet as pq

        groups = pq.ParquetFile(path).metadata.num_row_groups
    except Exception:  # an unreadable file: the pass says what is wrong with it
        return
    if groups < world:
        raise ConfigError(f"data.path={path!r} holds {groups} row group{'s' if groups != 1 else ''}, fewer than the "
                          f"job's {world} processes: with data.stream=true each process reads its own row groups; "
                          "write the file in smaller row groups (pyarrow: row_group_size=) or start fewer processes")


def too_large_for_memory(path: str, free: Optional[int]) -> Optional[str]:
    """Why the in-memory path would not fit `free` bytes (an estimate), or None. Parquet: rows x columns
    x 40 bytes (a pandas value plus its float32 input, text values more); text: 4x the file's size."""
    if free is None or not path.lower().endswith(SUFFIXES):
        return None
    try:
        from mlpkit.data.table import is_parquet

        if is_parquet(path):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            need = meta.num_rows * meta.num_columns * 40
        else:
            need = 4 * os.path.getsize(path)
    except Exception:  # an unreadable file: the in-memory path says what is wrong with it
        return None
    if need <= 0.8 * free:
        return None
    return f"the table needs about {need / 2 ** 30:.1f} GiB in memory and {free / 2 ** 30:.1f} GiB is available"


# ---------------------------------------------------------------------------
# The split: a hash of the row number


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of uint64 `x` (vectorised; wraps around as the C original does)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(rows: np.ndarray, seed: int, stream: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per row number, from (seed, stream): the same wherever the row is read."""
    key = _splitmix64(np.array([seed, stream], dtype=np.int64).astype(np.uint64))
    with np.errstate(over="ignore"):
        h = _splitmix64(rows.astype(np.uint64) ^ key[0]) + key[1]
    return (_splitmix64(h) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def split_of(rows: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Each row's split: 0 train, 1 val, 2 test (uint8), from its row number and the seed."""
    u = uniform(rows, seed)
    out = np.zeros(len(rows), np.uint8)
    out[u < test_fraction + val_fraction] = 1
    out[u < test_fraction] = 2
    return out


# ---------------------------------------------------------------------------
# Reading


class TableFile:
    """A table file read in pieces: a Parquet file's row groups, or a text file's blocks of READ_ROWS rows.
    `read(pieces)` yields (piece, first row number, DataFrame of `columns`), READ_ROWS rows at most each."""

    def __init__(self, path: str, columns: Sequence[str], text_columns: Sequence[str] = ()):
        from mlpkit.data.table import is_parquet

        self.path, self.columns, self.text_columns = path, list(columns), list(text_columns)
        self.parquet = is_parquet(path)
        self.first_rows: Optional[List[int]] = None  # per row group (Parquet), else None
        if self.parquet:
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            self.first_rows = [0, *np.cumsum(sizes).tolist()][:-1] if sizes else []
            self.n_rows: Optional[int] = int(meta.num_rows)
        else:
            self.n_rows = None  # known after a pass
        self.n_blocks: Optional[int] = None  # a text file's blocks, known after a pass

    @property
    def n_pieces(self) -> Optional[int]:
        return len(self.first_rows) if self.parquet else self.n_blocks

    def pieces(self, rank: int = 0, world_size: int = 1, order: Optional[np.ndarray] = None) -> List[int]:
        """The pieces a rank reads: every world_size-th of `order` (default: file order), from the rank-th."""
        n = self.n_pieces
        if n is None:
            raise RuntimeError("a text file's blocks are counted by a first pass (read(None))")
        order = np.arange(n) if order is None else np.asarray(order)
        return [int(p) for p in order[rank::world_size]]

    def read(self, pieces: Optional[Sequence[int]] = None) -> Iterator[Tuple[int, int, Any]]:
        """(piece, first row, DataFrame) of the pieces in the given order (None: every piece, in file order;
        a text file's blocks always come in file order)."""
        if self.parquet:
            import pyarrow.parquet as pq

            from mlpkit.data.table import arrow_to_pandas

            pf = pq.ParquetFile(self.path)
            for g in range(len(self.first_rows)) if pieces is None else pieces:
                first = self.first_rows[g]
                for batch in pf.iter_batches(batch_size=READ_ROWS, row_groups=[g], columns=self.columns):
                    yield g, first, arrow_to_pandas(batch)
                    first += batch.num_rows
            return
        from mlpkit.data.table import iter_chunks

        wanted = None if pieces is None else set(pieces)
        first, block = 0, 0
        for chunk in iter_chunks(self.path, self.columns, self.text_columns, READ_ROWS, key="data.path"):
            if wanted is None or block in wanted:
                yield block, first, chunk.reset_index(drop=True)
            first += len(chunk)
            block += 1
        if pieces is None:
            self.n_blocks, self.n_rows = block, first


def _read_error(path: str, err: Exception) -> ConfigError:
    from mlpkit.data.table import read_error_detail

    first = read_error_detail(err)
    return ConfigError(f"data.path={path!r} is not a readable .csv, .tsv or .parquet table ({first})")


def read_head(path: str, rows: int = HEAD_ROWS):
    """The first `rows` rows of a table (every column), and notes, read as the in-memory path reads them."""
    from mlpkit.data.table import header_of, is_parquet, iter_chunks, read_table

    if not is_parquet(path) and os.path.getsize(path) <= 8 * 2 ** 20:
        return read_table(path)  # a small text file: its own reader, with every check and note
    try:
        names = header_of(path, "data.path")
        chunk = next(iter(iter_chunks(path, names, (), rows, key="data.path")), None)
    except ConfigError:
        raise
    except Exception as err:
        raise _read_error(path, err) from None
    if chunk is None or not len(chunk):
        raise ConfigError(f"data.path={path!r} has a header but no data rows")
    chunk.columns = [str(c) for c in chunk.columns]
    return chunk, []


# ---------------------------------------------------------------------------
# Fitting in one pass


class NumberStats:
    """A numeric column's train statistics, kept in one pass: Welford/Chan sums, a bottom-k sample."""

    def __init__(self, stream: int, limit: float):
        self.stream, self.limit = stream, limit  # hash stream of the sample; |v| beyond limit: out of range
        self.n = 0  # finite, in-range train values
        self.mean = 0.0
        self.m2 = 0.0
        self.train_missing = 0  # train rows without a usable value (missing, infinite, out of range)
        self.missing = 0  # all rows: missing values
        self.out_of_range = 0  # all rows: infinite or beyond `limit`
        self.max_abs = 0.0  # all rows: the largest finite size
        self.examples: List[float] = []  # out-of-range values as read, the first three
        self.sample = np.empty(0)
        self.keys = np.empty(0)

    def add(self, v: np.ndarray, rows: np.ndarray, train: np.ndarray, seed: int) -> None:
        finite = np.isfinite(v)
        self.missing += int(np.isnan(v).sum())
        if finite.any():
            self.max_abs = max(self.max_abs, float(np.abs(v[finite]).max()))
        with np.errstate(invalid="ignore"):
            bad = np.isinf(v) | (np.abs(v) > self.limit)
        if bad.any():
            self.out_of_range += int(bad.sum())
            for x in v[bad]:
                if len(self.examples) < 3 and x not in self.examples:
                    self.examples.append(float(x))
        usable = finite & ~bad
        self.train_missing += int((train & ~usable).sum())
        keep = train & usable
        x = v[keep]
        if not len(x):
            return
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.n + len(x)
        delta = mean_b - self.mean
        self.mean += delta * len(x) / n
        self.m2 += m2_b + delta * delta * self.n * len(x) / n
        self.n = n
        self.sample = np.concatenate([self.sample, x])
        self.keys = np.concatenate([self.keys, uniform(rows[keep], seed, self.stream)])
        if len(self.sample) > 2 * SKETCH_SIZE:
            self._trim()

    def _trim(self) -> None:
        if len(self.sample) > SKETCH_SIZE:
            kept = np.argpartition(self.keys, SKETCH_SIZE - 1)[:SKETCH_SIZE]
            self.sample, self.keys = self.sample[kept], self.keys[kept]

    def scale(self) -> float:
        """Column.scale: the power of two above the median size of the sampled non-zero values."""
        from mlpkit.data.preprocess import _scale_of

        self._trim()
        return _scale_of(self.sample)

    def sample_values(self) -> np.ndarray:
        """The sampled train values (all of them up to SKETCH_SIZE), in a fixed order."""
        self._trim()
        return np.sort(self.sample)


class CategoryStats:
    """A category column's exact train counts (by canonical value) and its distinct values in all rows."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.distinct: set = set()
        self.missing = 0

    def add(self, s, codes: str, train: np.ndarray) -> None:
        import pandas as pd

        from mlpkit.data.preprocess import MISSING
        from mlpkit.data.table import canonical_categories

        raw, uniques = pd.factorize(s, use_na_sentinel=True)
        canon = canonical_categories(pd.Series(uniques, dtype=object), codes).fillna(MISSING).tolist()
        self.missing += int((raw < 0).sum())
        self.distinct.update(c for c in canon if c != MISSING)
        counts = np.bincount(raw[train] + 1, minlength=len(uniques) + 1)  # slot 0: missing
        if counts[0]:
            self.counts[MISSING] += int(counts[0])
        for value, n in zip(canon, counts[1:].tolist()):
            if n:
                self.counts[value] += n


class TargetStats:
    """The target over the rows that have one: distinct values (few, for classes), train moments."""

    def __init__(self, numeric: bool, formatted: bool = False):
        self.numeric = numeric
        self.formatted = formatted  # numbers written as text with separators or signs ('$5,251'), read as numbers
        self.labels: Counter = Counter()  # all rows with a target: label -> count (up to 21 numbers; text: all)
        self.train_labels: Counter = Counter()
        self.integral = True
        self.many = False  # more than 20 distinct numbers: no classes
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low, self.high = math.inf, -math.inf  # the train values' range (a numeric target)
        self.rows = 0
        self.missing = 0

    def values(self, s, first_row: int, target: str) -> Tuple[np.ndarray, np.ndarray]:
        """(present mask, values: float64 for a numeric target, stripped text otherwise)."""
        from mlpkit.data.preprocess import OUT_OF_RANGE

        present = s.notna().to_numpy()
        if self.numeric:
            if s.dtype.kind == "b":
                return present, s.astype(str).to_numpy(dtype=object)
            if self.formatted and s.dtype.kind not in "iuf":
                import pandas as pd

                from mlpkit.data.table import lenient_numbers

                v = lenient_numbers(s)[0]
                words = present & np.isnan(v)
                if words.any():
                    row = first_row + int(np.flatnonzero(words)[0])
                    raise ConfigError(f"data.target={target!r}: the target holds {str(s.iloc[row - first_row])!r} at "
                                      f"data row {row + 1}, where the first rows hold numbers; write a missing value "
                                      "as an empty cell or NA (the row is then left out)")
                s = pd.Series(v)
            if s.dtype.kind not in "iuf":
                raise ConfigError(f"data.target={target!r}: the target holds text ({str(s[present].iloc[0])!r}) in "
                                  f"the rows after data row {first_row}, but numbers in the first rows; "
                                  "data.stream=true needs one kind of value in the target column")
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bad = present & (~np.isfinite(v) | (np.abs(v) > OUT_OF_RANGE))
            if bad.any():
                row = first_row + int(np.flatnonzero(bad)[0])
                raise ConfigError(f"data.target={target!r}: the target holds {v[bad][0]:g} at data row {row + 1}; a "
                                  f"target value must be a finite number of size at most {OUT_OF_RANGE:g}. Correct "
                                  "it, or empty the cell to leave the row out")
            return present, v
        return present, s.astype(str).str.strip().to_numpy(dtype=object)

    def add(self, values: np.ndarray, present: np.ndarray, train: np.ndarray) -> None:
        self.rows += len(values)
        self.missing += int((~present).sum())
        y, ytr = values[present], values[present & train]
        if self.numeric and y.dtype.kind == "f":
            self.integral = self.integral and bool(np.all(y == np.round(y)))
            if len(ytr):
                mean_b, n_b = float(ytr.mean()), len(ytr)
                m2_b = float(((ytr - mean_b) ** 2).sum())
                n = self.n + n_b
                delta = mean_b - self.mean
                self.mean += delta * n_b / n
                self.m2 += m2_b + delta * delta * self.n * n_b / n
                self.n = n
                self.low, self.high = min(self.low, float(ytr.min())), max(self.high, float(ytr.max()))
            if self.many:
                return
        u, c = np.unique(y, return_counts=True)
        self.labels.update(dict(zip(u.tolist(), c.tolist())))
        u, c = np.unique(ytr, return_counts=True)
        self.train_labels.update(dict(zip(u.tolist(), c.tolist())))
        if self.numeric and y.dtype.kind == "f" and len(self.labels) > 20:
            self.many = True
            self.labels.clear()
            self.train_labels.clear()

    def task(self, asked: str):
        """The task: data.task, else classes for text or at most max(2, min(20, n / 5)) distinct integers."""
        from mlpkit.tasks import REGRESSION, classification_task

        n = self.rows - self.missing
        if asked != "auto":
            return get_task(asked)
        if not self.numeric or (self.integral and not self.many and len(self.labels) <= max(2, min(20, n // 5))):
            return get_task(classification_task(len(self.labels)))
        return get_task(REGRESSION)

    def classes(self) -> List[Any]:
        """The class labels' raw values in class order (numbers numerically, text as strings sort)."""
        return sorted(self.labels)


def _formatted_target(column, task: str) -> bool:
    """A text target of the first rows (`column`: its present values, stripped) whose values are numbers, some
    written with separators or signs, read as a regression (as the in-memory path reads them; a few words
    among them are then named with their rows by TargetStats.values); a few such values ('10%', '20%') stay
    classes."""
    from mlpkit.data.loading import _infer_task
    from mlpkit.data.table import lenient_numbers
    from mlpkit.tasks import REGRESSION

    values, formatted = lenient_numbers(column.to_numpy(dtype=object))
    if not formatted.any():
        return False
    numbers = values[np.isfinite(values)]
    words = len(values) - len(numbers)
    return task == REGRESSION or (words <= max(3, 0.1 * len(values)) and _infer_task(numbers) == REGRESSION)


def _label_text(v: Any) -> str:
    if isinstance(v, float) and v == round(v) and abs(v) < 2 ** 53:
        return str(int(v))
    return str(v)


class SplitRows:
    """The source row numbers of each split, appended to temporary files as the pass goes and written
    into splits.npz as predict.py reads it, without holding them in memory."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mlpkit-splits-")
        self.files = {s: open(Path(self.dir.name) / f"{s}.bin", "wb") for s in SPLITS}
        self.counts = dict.fromkeys(SPLITS, 0)

    def add(self, rows: np.ndarray, split: np.ndarray, present: np.ndarray) -> None:
        for i, name in enumerate(SPLITS):
            mine = rows[present & (split == i)].astype(np.int64)
            self.files[name].write(mine.tobytes())
            self.counts[name] += len(mine)

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()

    def write_npz(self, fh) -> None:
        """An .npz archive (zip of .npy files, what np.load reads) written block by block."""
        from numpy.lib import format as npy

        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name in SPLITS:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as out, \
                        open(Path(self.dir.name) / f"{name}.bin", "rb") as src:
                    npy.write_array_header_1_0(out, {"descr": npy.dtype_to_descr(np.dtype(np.int64)),
                                                     "fortran_order": False, "shape": (self.counts[name],)})
                    while block := src.read(2 ** 22):
                        out.write(block)


# ---------------------------------------------------------------------------
# The fitted preprocessing, as the in-memory path makes it


def fitted_transformer(pre, numbers: Dict[str, NumberStats], categories: Dict[str, CategoryStats],
                       n_train: int, standardize: bool, numeric: str, seed: int):
    """The ColumnTransformer that Preprocessing.fit_table would fit on the train rows, made from the
    pass's statistics: fitted on a few stand-in rows that give it its shape (which columns, which
    have missing values, which codes), then given the statistics themselves. The numeric steps before
    the imputation (data.numeric robust or quantile) are fitted on the columns' samples; the median
    imputes in their output; StandardScaler (standard) takes the exact moments."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline

    from mlpkit.data.preprocess import _numeric_steps, onehot_encoder

    parts = []
    if pre.numeric:
        parts.append(("numeric", make_pipeline(*_numeric_steps(numeric, standardize, n_train, seed)), pre.numeric))
    if pre.onehot:
        parts.append(("category", onehot_encoder(), [c.name for c in pre.onehot]))
    transformer = ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0, verbose_feature_names_out=False)
    rows = max(2, *(len(c.vocabulary) for c in pre.onehot), 2)
    stand_in = {}
    for name in pre.numeric:  # 0, 1, 2, ... with a NaN in the first row where the train rows miss values
        v = np.arange(rows, dtype=np.float64)
        if numbers[name].train_missing:
            v[0] = np.nan
        stand_in[name] = v
    for col in pre.onehot:  # every code of the vocabulary
        stand_in[col.name] = np.arange(rows, dtype=np.int64) % len(col.vocabulary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        transformer.fit(pd.DataFrame(stand_in))
    if pre.numeric:
        _fit_numeric(transformer.named_transformers_["numeric"], pre, numbers, n_train)
    if pre.onehot:  # the exact train counts decide which codes are rare
        enc = transformer.named_transformers_["category"]
        counts = [np.array([categories[c.name].counts[v] for v in c.vocabulary]) for c in pre.onehot]
        enc._fit_infrequent_category_mapping(n_train, counts, {})
        enc._set_drop_idx()
        enc._n_features_outs = enc._compute_n_features_outs()
    return transformer


def _fit_numeric(pipe, pre, numbers: Dict[str, NumberStats], n_train: int) -> None:
    """Give the numeric pipeline (fitted on stand-in rows) the train statistics."""
    from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

    cols = {c.name: c for c in pre.columns}
    names = list(pipe.named_steps)
    at = names.index("simpleimputer")
    # the samples as columns of one matrix (NaN below a shorter sample: every step ignores NaN), scaled
    samples = [numbers[n].sample_values() / cols[n].scale for n in pre.numeric]
    S = np.full((max(1, *(len(v) for v in samples)), len(samples)), np.nan)
    for j, v in enumerate(samples):
        S[:len(v), j] = v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-missing column: NaN statistics
        for name in names[:at]:  # robust: RobustScale, SmoothClip; quantile: QuantileTransformer
            S = pipe.named_steps[name].fit(S).transform(S)
        medians = np.nanmedian(S, axis=0)
    imputer = pipe.named_steps["simpleimputer"]
    imputer.statistics_ = np.where(np.isnan(medians), 0.0, medians)  # keep_empty_features: 0
    if names[at + 1:] != ["standardscaler"]:
        return
    means, variances = [], []
    for name, m in zip(pre.numeric, imputer.statistics_):
        s, scale = numbers[name], cols[name].scale
        mean_p, m2_p = s.mean / scale, s.m2 / scale ** 2
        n_miss = n_train - s.n
        # the imputed column: the present values and n_miss copies of the median (Chan's merge)
        means.append((s.n * mean_p + n_miss * m) / n_train)
        variances.append((m2_p + (mean_p - m) ** 2 * s.n * n_miss / n_train) / n_train)
    for i in (imputer.indicator_.features_ if imputer.indicator_ is not None else []):
        p = numbers[pre.numeric[i]].train_missing / n_train  # a 0/1 column: mean p, variance p(1 - p)
        means.append(p)
        variances.append(p * (1 - p))
    scaler = pipe.named_steps["standardscaler"]
    scaler.mean_ = np.asarray(means, dtype=np.float64)
    scaler.var_ = np.asarray(variances, dtype=np.float64)
    scaler.n_samples_seen_ = n_train
    constant = _is_constant_feature(scaler.var_, scaler.mean_, n_train)
    scaler.scale_ = _handle_zeros_in_scale(np.sqrt(scaler.var_), copy=False, constant_mask=constant)


# ---------------------------------------------------------------------------
# The data set


class StreamSource:
    """A table file, its fitted preprocessing and split rule: model inputs and targets batch by batch."""

    def __init__(self, table: TableFile, pre, task, class_values: List[Any], seed: int, val_fraction: float,
                 test_fraction: float, counts: Dict[str, int]):
        import pandas as pd

        self.table, self.pre, self.task, self.seed = table, pre, task, seed
        self.fractions = (val_fraction, test_fraction)
        self.counts = counts
        self.classes = pd.Index(class_values)  # the labels' raw values (floats or text), in class order
        self.target_range = (math.nan, math.nan)  # a numeric target's train range (the fitting pass's)
        self.piece_rows = np.zeros((0, 3), np.int64)  # per piece: its rows with a target in each split

    def digest(self) -> str:
        """A sha256 of the fitted preprocessing and the split's counts: equal on every process of a job
        that read the same file (each runs the same pass)."""
        import hashlib
        import json

        h = hashlib.sha256(json.dumps([self.pre.as_dict(), self.counts, self.piece_rows.tolist(),
                                       list(self.target_range)], sort_keys=True, default=str).encode())
        for name, value in _fitted_arrays(self.pre.transformer):
            h.update(name.encode())
            h.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else repr(value.tolist()).encode())
        return h.hexdigest()

    def rows(self, first: int, df, split: int) -> Tuple[Any, np.ndarray]:
        """(the rows of `df` in `split` that have a target value, their targets as the loss takes them:
        class indices, or standardised values)."""
        rows = first + np.arange(len(df))
        target = df[self.pre.target]
        mine = (split_of(rows, self.seed, *self.fractions) == split) & target.notna().to_numpy()
        part = df[mine]
        y = part[self.pre.target]
        if self.task.classification:
            labels = y.to_numpy(dtype=np.float64) if y.dtype.kind in "iuf" else y.astype(str).str.strip()
            codes = self.classes.get_indexer(labels).astype(np.int64)
            if (codes < 0).any():  # cannot be: the classes come from every row; kept out all the same
                part, codes = part[codes >= 0], codes[codes >= 0]
            return part, codes
        if y.dtype.kind in "iuf":
            values = y.to_numpy(dtype=np.float64)
        else:  # numbers written with separators or signs ('$5,251'), every one checked by the pass
            from mlpkit.data.table import lenient_numbers

            values = lenient_numbers(y)[0]
        return part, (values - self.pre.y_mean) / self.pre.y_std


def _fitted_arrays(obj: Any, name: str = "", depth: int = 0) -> Iterator[Tuple[str, np.ndarray]]:
    """The numpy arrays and numbers held by a fitted transformer and its steps, by attribute path."""
    if depth > 6 or obj is None:
        return
    if isinstance(obj, np.ndarray):
        yield name, obj
    elif isinstance(obj, (int, float, np.number, bool)):
        yield name, np.asarray(obj, dtype=np.float64)
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            yield from _fitted_arrays(item, f"{name}[{i}]", depth + 1)
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            yield from _fitted_arrays(obj[key], f"{name}[{key}]", depth + 1)
    elif hasattr(obj, "get_params"):  # an estimator: its fitted attributes (name_) and steps
        for key, value in sorted(vars(obj).items()):
            if key.endswith("_") or key in ("steps", "transformers"):
                yield from _fitted_arrays(value, f"{name}.{key}", depth + 1)


class StreamSplit:
    """One split of a streamed table: len() rows, batches of (inputs, targets) tensors on its device."""

    def __init__(self, source: StreamSource, split: str):
        self.source, self.split = source, split
        self.device: Any = "cpu"

    def __len__(self) -> int:
        return self.source.counts[self.split]

    @property
    def shape(self) -> Tuple[int, int]:
        return len(self), len(self.source.pre.inputs)

    def to(self, device) -> "StreamSplit":
        self.device = device
        return self

    def epoch_order(self, epoch: Optional[int]) -> Tuple[Optional[np.random.Generator], Optional[np.ndarray]]:
        """The epoch's random generator and order of pieces (None, None without an epoch: file order).
        A Parquet file's row groups come in a random order; a text file is read in file order, and its
        blocks' order starts `epoch` blocks further each epoch, so which process reads a block rotates."""
        table = self.source.table
        if table.n_pieces is None:
            list(table.read())  # a text file: count its blocks once
        if epoch is None:
            return None, None
        rng = np.random.default_rng([self.source.seed, epoch])
        if table.parquet:
            return rng, rng.permutation(table.n_pieces)
        return rng, (np.arange(table.n_pieces) + epoch) % max(1, table.n_pieces)

    def rows_per_rank(self, epoch: Optional[int], world_size: int) -> np.ndarray:
        """The rows of this split that each of `world_size` processes reads in `epoch` (from the pass's counts)."""
        _, order = self.epoch_order(epoch)
        counts = self.source.piece_rows[:, SPLITS.index(self.split)]
        table = self.source.table
        return np.array([counts[table.pieces(r, world_size, order)].sum() for r in range(world_size)], np.int64)

    def steps(self, epoch: int, sizes: Sequence[int]) -> int:
        """The steps every process can fill in `epoch` taking sizes[rank] rows a step from its own pieces."""
        rows = self.rows_per_rank(epoch, len(sizes))
        return int(min(r // max(1, k) for r, k in zip(rows, sizes)))

    def merge(self, parts: Sequence[np.ndarray]) -> np.ndarray:
        """Rows read without an epoch by each process (parts[rank]) back in file order: rank r read the
        pieces r, r + w, ... in file order, each holding the pass's count of this split's rows."""
        world = len(parts)
        counts = self.source.piece_rows[:, SPLITS.index(self.split)]
        at = [0] * world
        out = []
        for p, k in enumerate(counts.tolist()):
            r = p % world
            out.append(parts[r][at[r]:at[r] + k])
            at[r] += k
        return np.concatenate(out) if out else np.concatenate(parts)

    def batches(self, size: int, *, epoch: Optional[int] = None, steps: Optional[int] = None, rank: int = 0,
                world_size: int = 1) -> Iterator[Tuple[Any, Any]]:
        """(inputs, targets) batches of `size` rows (the last one smaller), at most `steps` of them.
        With `epoch`, the pieces come in the epoch's order (epoch_order) and rows are shuffled within a buffer
        of BUFFER_BYTES of inputs; without, in file order. `rank`/`world_size`: that rank's share of the
        pieces (every world_size-th in the epoch's order)."""
        import torch

        table, pre = self.source.table, self.source.pre
        rng, order = self.epoch_order(epoch)
        split = SPLITS.index(self.split)
        # rows gathered before batches are cut from them (in random order when shuffled): one buffer,
        # reused, that the inputs are transformed into
        width = len(pre.inputs)
        limit = max(size, BUFFER_BYTES // (4 * max(1, width))) if rng is not None else size
        X = np.empty((limit + READ_ROWS, width), np.float32)
        y = np.empty(limit + READ_ROWS, np.int64 if self.source.task.classification else np.float64)
        made, n = 0, 0

        def emit(final: bool):
            nonlocal made
            rows = rng.permutation(n) if rng is not None else np.arange(n)
            stop = n if final else n - n % size
            for i in range(0, stop, size):
                if steps is not None and made >= steps:
                    return 0
                made += 1
                take = rows[i:i + size]
                yield torch.from_numpy(X[take]).to(self.device), \
                    self.source.task.target_tensor(y[take]).to(self.device)
            rest = rows[stop:]  # fewer than `size` rows: they start the next buffer
            X[:len(rest)], y[:len(rest)] = X[rest], y[rest]
            return len(rest)

        for _, first, df in table.read(table.pieces(rank, world_size, order)):
            part, targets = self.source.rows(first, df, split)
            k = len(part)
            if k:
                pre.transform(part, first_line=2 + first, out=X[n:n + k])
                y[n:n + k] = targets
                n += k
            if n >= limit:
                n = yield from emit(False)
                if steps is not None and made >= steps:
                    return
        if n:
            yield from emit(True)


class StreamDataset(Dataset):
    """A Dataset whose splits are StreamSplits: read from the file batch by batch, never held whole.
    X_<split> and y_<split> are the same StreamSplit (its batches carry both)."""

    source: Any = None
    splits: Any = None

    @property
    def out_dim(self) -> int:
        return self.task.out_dim(len(self.classes)) if self.task.classification else 1

    def to(self, device) -> "StreamDataset":
        for split in (self.X_train, self.X_val, self.X_test):
            split.to(device)
        return self

    def write_rows(self, fh) -> None:
        self.splits.write_npz(fh)

    def target_range(self) -> Tuple[float, float]:
        """The train targets' exact range (kept by the fitting pass), in the model's units."""
        low, high = self.source.target_range
        return (low - self.y_mean) / self.y_std, (high - self.y_mean) / self.y_std

    def train_inputs(self, columns: int, rows: int = SAMPLE_ROWS) -> np.ndarray:
        """The first `columns` inputs of up to `rows` train rows: the first batch of epoch 0's seeded
        shuffled order (row groups in random order, rows shuffled within the read buffer)."""
        return self.train_sample(columns, rows)[0]

    def train_sample(self, columns: int, rows: int = SAMPLE_ROWS) -> Tuple[np.ndarray, np.ndarray]:
        """train_inputs with the same rows' targets."""
        for xb, yb in self.X_train.batches(rows, epoch=0, steps=1):
            return xb[:, :columns].cpu().numpy(), yb.cpu().numpy()
        return np.zeros((0, columns), np.float32), np.zeros(0, np.float32)

    def describe(self) -> str:
        return super().describe() + f"; streamed from {self.source.table.path} in blocks of {READ_ROWS} rows"


def load_stream(path: str, target: Optional[str], task: str, drop: Sequence[str], categorical: Sequence[str],
                seed: int, val_fraction: float, test_fraction: float, standardize: bool, numeric: str = "standard",
                onehot_max: Optional[int] = None) -> StreamDataset:
    """Roles from the first rows, then one pass that fits the preprocessing on the train rows
    (the arguments are load_dataset's)."""
    from mlpkit.data.loading import _check_enough_rows
    from mlpkit.data.preprocess import MIN_FREQUENCY, OUT_OF_RANGE, Preprocessing, _choose_encoding, check_numeric
    from mlpkit.data.table import assign_roles, check_file, format_columns, target_column

    check_numeric(numeric, standardize, onehot_max)

    path = check_file(path)
    head, notes = read_head(path)
    target = target_column(head.columns, target, path)
    roles = assign_roles(head, target, drop, categorical)
    y_kind = head[target].dtype.kind
    formatted = False
    if y_kind == "O" and task in ("auto", "regression"):
        present = head[target].dropna().astype(str).str.strip()
        formatted = _formatted_target(present, task)
        if formatted:
            from mlpkit.data.loading import formatted_target_note

            notes.append(formatted_target_note(target, present.unique()))
    del head
    pre = Preprocessing("table", columns=roles.columns)
    limit = math.inf if standardize else OUT_OF_RANGE
    numbers = {name: NumberStats(i + 1, limit) for i, name in enumerate(pre.numeric)}
    categories = {c.name: CategoryStats() for c in pre.categorical}
    y_stats = TargetStats(numeric=y_kind in "iufb" or formatted, formatted=formatted)
    used = [c.name for c in pre.columns if c.kind != "dropped"]
    table = TableFile(path, [*used, target], [c.name for c in pre.categorical])
    rows_out = SplitRows()
    piece_rows: Dict[int, np.ndarray] = {}  # piece -> its rows with a target, per split
    try:
        for piece, first, df in table.read():
            rows = first + np.arange(len(df))
            present, y = y_stats.values(df[target], first, target)
            split = split_of(rows, seed, val_fraction, test_fraction)
            train = present & (split == 0)
            y_stats.add(y, present, train)
            rows_out.add(rows, split, present)
            piece_rows[piece] = piece_rows.get(piece, 0) + np.bincount(split[present], minlength=3)
            for col in pre.columns:
                if col.kind == "numeric":
                    numbers[col.name].add(Preprocessing.numbers(df[col.name], col, 2 + first), rows, train, seed)
                elif col.kind != "dropped":
                    categories[col.name].add(df[col.name], col.codes, train)
    except ConfigError:
        raise
    except Exception as err:  # a damaged file, a bad byte sequence
        raise _read_error(path, err) from None
    finally:
        rows_out.close()
    if table.parquet is False:
        table.n_rows = y_stats.rows
    n_rows, n_present = y_stats.rows, y_stats.rows - y_stats.missing
    _check_enough_rows(path, n_present, "rows with a target value", val_fraction, test_fraction)
    counts = dict(rows_out.counts)
    if not all(counts.values()):
        empty = next(s for s in SPLITS if not counts[s])
        raise ConfigError(f"data.path={path!r}: the {empty} split drew no row of {n_present}; raise "
                          f"data.{'val' if empty == 'val' else 'test'}_fraction or use more rows")
    task_ = y_stats.task(task)
    classes: List[str] = []
    if task_.classification:
        if y_stats.many:
            raise ConfigError(f"data.task={task}: the target {target!r} holds more than 20 distinct numbers; "
                              "use data.task=regression (or auto)")
        raw = y_stats.classes()
        classes = [_label_text(v) for v in raw]
        if len(classes) < 2:
            from mlpkit.data.loading import one_class

            raise ConfigError(one_class("csv", classes[0], task == "auto"))
        if task_.name == "binary" and len(classes) != 2:
            raise ConfigError(f"data.task=binary but the target has {len(classes)} classes; use data.task=multiclass")
        from mlpkit.tasks import classification_task

        task_ = get_task(classification_task(len(classes)))
        absent = [c for v, c in zip(raw, classes) if not y_stats.train_labels[v]]
        if absent:
            raise ConfigError(f"data=csv: the train split has no row of class {absent[0]!r}; add rows of that class "
                              "or lower data.val_fraction/data.test_fraction")
    elif not y_stats.numeric:
        raise ConfigError("data=csv: the target has text values; a regression target must be numeric "
                          "(or set data.task=binary or multiclass)")

    n_train = counts["train"]
    for col in pre.columns:
        if col.kind == "numeric":
            s = numbers[col.name]
            col.scale = s.scale() if standardize else 1.0
            if s.max_abs / col.scale > OUT_OF_RANGE:
                raise ConfigError(f"column {col.name!r} holds {s.max_abs:g}, over {OUT_OF_RANGE:g} times its typical "
                                  "size; data.stream=true cannot leave such values out after the pass (use "
                                  "data.stream=false, or empty those cells)")
            col.missing = s.missing + s.out_of_range
            col.out_of_range = s.out_of_range
            if s.out_of_range:
                notes.append(f"column {col.name!r}: {s.out_of_range} infinite or out-of-range value"
                             f"{'s' if s.out_of_range > 1 else ''} ({', '.join(f'{v:g}' for v in s.examples)}) "
                             "treated as missing")
        elif col.kind != "dropped":
            c = categories[col.name]
            col.vocabulary = sorted(c.counts)
            col.categories, col.missing = len(c.distinct), c.missing
            if onehot_max is not None:  # counts capped at MIN_FREQUENCY decide rare or not as the full ones do
                capped = np.minimum([c.counts[v] for v in col.vocabulary], MIN_FREQUENCY)
                _choose_encoding(col, np.repeat(np.arange(len(col.vocabulary)), capped), onehot_max)
    pre.transformer = fitted_transformer(pre, numbers, categories, n_train, standardize, numeric, seed)
    pre._count_inputs()
    pre.inputs = pre._input_names()
    pre.target = target
    pre.target_codes = {"b": "boolean", "i": "number", "u": "number", "f": "number"}.get(y_kind, "text")
    pre.task, pre.classes = task_, list(classes)
    if task_.standardizes_target() and standardize:
        pre.y_mean = y_stats.mean
        pre.y_std = math.sqrt(y_stats.m2 / y_stats.n) if y_stats.n else 1.0
        pre.y_std = pre.y_std or 1.0

    if y_stats.missing:
        notes.append(f"{y_stats.missing} of {n_rows} rows have no value in the target column {target!r} "
                     "and are left out")
    notes.append(f"data.path={path}: {n_present} rows; target column {target!r}")
    notes.append(f"data.stream=true: read in blocks of {READ_ROWS} rows, never whole; column roles from the first "
                 f"{HEAD_ROWS} rows; split by a hash of the row number (about {val_fraction:g} val, "
                 f"{test_fraction:g} test); medians from a {SKETCH_SIZE}-value sample per column")
    notes += roles.notes
    source = StreamSource(table, pre, task_, y_stats.classes() if classes else [], seed, val_fraction,
                          test_fraction, counts)
    source.piece_rows = np.array([piece_rows.get(p, np.zeros(3, np.int64)) for p in range(table.n_pieces)],
                                 dtype=np.int64).reshape(-1, 3)
    X = {s: StreamSplit(source, s) for s in SPLITS}
    data = StreamDataset("csv", task_, X["train"], X["train"], X["val"], X["val"], X["test"], X["test"],
                         feature_names=list(pre.inputs), classes=list(classes), notes=notes, y_mean=pre.y_mean,
                         y_std=pre.y_std, warnings=list(roles.warnings), preprocessing=pre)
    source.target_range = (y_stats.low, y_stats.high)
    data.source, data.splits = source, rows_out
    data.columns_table = format_columns(pre.columns, target, task_, y_stats.missing)
    data.layout = pre.layout
    return data
