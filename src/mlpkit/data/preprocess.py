"""The preprocessing a run fits on its train split and applies to every later row.

Two kinds, both saved in the run directory and loaded back without unpickling arbitrary objects:

- `array` (the built-in data sets): per-column standardisation; the means and standard
  deviations are plain numbers in `preprocessing.json`.
- `table` (a user's file): a scikit-learn ColumnTransformer. Numeric columns, in float64 and
  divided first by a power of two near the train values' typical size (Column.scale; inf and
  values OUT_OF_RANGE times that size are missing, and counted): median imputation, a missing-indicator for columns that had missing values in training, then
  scaling by data.numeric (NUMERIC: standard | robust | quantile). Categories (text, booleans,
  data.categorical): missing as a category of its own, then one-hot encoding in which categories
  seen fewer than MIN_FREQUENCY times are grouped into one "infrequent" input and categories never
  seen in training go there too (or to no input when none was rare); with data.onehot_max, a column
  with more one-hot inputs than that becomes one input holding its code instead (codes go last in a
  row: `Preprocessing.layout`). The encoder sees each category as its index in the column's
  sorted train vocabulary (pandas.Categorical codes; -1 for a value never seen): scikit-learn
  encodes integers in C but strings one Python object at a time, 10x slower on large tables.
  The two parts are fitted on the train rows alone and kept frozen (sklearn.frozen.FrozenEstimator)
  in a ColumnTransformer that only gives them their columns; the median is numpy's (by partition,
  mlpkit.data.scaling.median). Preprocessing.transform writes the inputs itself, a block at a time:
  the numeric part's steps applied with numpy as scikit-learn applies them (a QuantileTransformer by
  scikit-learn), then a 1 at each category's input (OneHotEncoder's layout; both checked against
  ColumnTransformer.transform by the tests). On a 1,000,000-row table the fit and the inputs
  took 1.85-1.9 s of CPU against 2.5-3.4 s for ColumnTransformer.fit_transform, its sparse stacking
  and the masked-array median. The fitted transformer is saved with skops (`preprocessing.skops`),
  whose loader refuses any type outside an explicit list, so a crafted file runs no code;
  the column roles, classes and target statistics go to `preprocessing.json`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from mlpkit.data.dataset import InputLayout
from mlpkit.data.split import zeros_array
from mlpkit.data.table import Column, canonical_categories, lenient_numbers, to_days
from mlpkit.errors import ConfigError
from mlpkit.registry import check_choice

FORMAT = "mlpkit-preprocessing-1"
JSON_NAME = "preprocessing.json"
SKOPS_NAME = "preprocessing.skops"
MIN_FREQUENCY = 5  # rarer categories share one input
MISSING = "(missing)"  # the category a missing value becomes
BLOCK_ROWS = 65_536  # rows transformed at a time: bounds the temporaries
# A numeric value more than this many times its column's scale (the train values' typical size, a
# power of two; 1 without standardisation) is out of range: treated as missing and counted, as inf is.
# It keeps every input a float32 can hold, while a column of 1e300s is scaled down, not lost.
OUT_OF_RANGE = 1e30
# data.numeric: how numeric columns are scaled, fitted on the train split
#   standard  after imputation, (x - mean) / std, missing-value indicators included (StandardScaler)
#   robust    RealMLP-TD's: (x - median) / IQR, then the smooth clip x / sqrt(1 + (x / 3)^2) (data.scaling)
#   quantile  to a standard normal through the train quantiles (scikit-learn's QuantileTransformer)
# robust and quantile scale the numbers before imputation (a missing value becomes the median of the
# scaled train values: 0 for robust), so the missing-value indicators stay 0/1.
NUMERIC = ("standard", "robust", "quantile")
QUANTILES = 1000  # at most; never more than the train rows
QUANTILE_SUBSAMPLE = 100_000  # train rows the quantiles are estimated from (drawn with the run's seed)

# Every type a saved ColumnTransformer is made of beyond what skops trusts by default. Loading
# refuses a file that holds anything else.
TRUSTED_TYPES = [
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.pipeline.Pipeline",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._data.QuantileTransformer",
    "mlpkit.data.scaling.RobustScale",
    "mlpkit.data.scaling.SmoothClip",
    "mlpkit.data.scaling.median",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "numpy.dtype",
    "numpy.float32",
    "numpy.float64",
    "builtins.float",
]


def check_numeric(numeric: str, standardize: bool, onehot_max: Optional[int] = None, table: bool = True) -> None:
    """data.numeric is known and has something to do; data.onehot_max is a table's (ConfigError otherwise)."""
    check_choice("data.numeric", numeric, NUMERIC)
    if not table and (numeric != NUMERIC[0] or onehot_max is not None):
        key = f"data.numeric={numeric}" if numeric != NUMERIC[0] else f"data.onehot_max={onehot_max}"
        raise ConfigError(f"{key} applies to your own table (data=csv); a built-in data set is standardised "
                          "(data.standardize) and has no categories")
    if numeric != NUMERIC[0] and not standardize:
        raise ConfigError(f"data.numeric={numeric} scales the numeric columns, but data.standardize=false asks "
                          "for no scaling; drop one of the two")


def onehot_encoder():
    """The (unfitted) OneHotEncoder of the one-hot category columns: rare categories grouped into one
    input, unseen ones sent there (or to none)."""
    from sklearn.preprocessing import OneHotEncoder

    return OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=MIN_FREQUENCY, dtype=np.float32)


def _numeric_steps(numeric: str, standardize: bool, n_train: int, seed: int) -> list:
    """The numeric columns' pipeline: median imputation with missing-value indicators, and the scaling."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    from mlpkit.data.scaling import RobustScale, SmoothClip, median

    imputer = SimpleImputer(strategy=median, add_indicator=True, keep_empty_features=True)
    if not standardize:
        return [imputer]
    if numeric == "robust":
        return [RobustScale(), SmoothClip(), imputer]
    if numeric == "quantile":
        return [QuantileTransformer(n_quantiles=max(1, min(QUANTILES, n_train)), output_distribution="normal",
                                    subsample=QUANTILE_SUBSAMPLE, random_state=seed), imputer]
    return [imputer, StandardScaler()]


class Preprocessing:
    """What turns rows of the source (a table, or an array of features) into model inputs."""

    def __init__(self, kind: str, *, target: str = "", task: str = "", classes: Sequence[str] = (),
                 y_mean: float = 0.0, y_std: float = 1.0, columns: Sequence[Column] = (),
                 inputs: Sequence[str] = (), mean: Optional[np.ndarray] = None, std: Optional[np.ndarray] = None,
                 transformer: Any = None, target_codes: str = "text"):
        self.kind = kind  # "array" | "table"
        self.target, self.task, self.classes = target, task, list(classes)
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.columns: List[Column] = list(columns)
        self.inputs = list(inputs)  # names of the model inputs, in order
        self.mean, self.std = mean, std
        self.transformer = transformer
        self.target_codes = target_codes  # how class labels are written in the file: text | number | boolean

    # -- which columns ----------------------------------------------------------

    @property
    def feature_columns(self) -> List[str]:
        """The source columns the model reads (left-out ones excluded)."""
        if self.kind == "array":
            return list(self.inputs)
        return [c.name for c in self.columns if c.kind != "dropped"]

    @property
    def numeric(self) -> List[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> List[Column]:
        return [c for c in self.columns if c.kind in ("category", "boolean")]

    @property
    def onehot(self) -> List[Column]:
        """The category columns the one-hot encoder reads."""
        return [c for c in self.categorical if c.encoding != "code"]

    @property
    def coded(self) -> List[Column]:
        """The category columns that are one input holding their code (the last inputs of a row)."""
        return [c for c in self.categorical if c.encoding == "code"]

    @property
    def layout(self) -> InputLayout:
        """Where the numbers and the category codes sit in a row of inputs."""
        if self.kind == "array":
            return InputLayout()
        return InputLayout(numeric=len(self.numeric), categories=tuple(_cardinality(c) for c in self.coded))

    # -- fitting ----------------------------------------------------------------

    @classmethod
    def fit_table(cls, frame, n_train: int, columns: Sequence[Column], standardize: bool = True,
                  numeric: str = NUMERIC[0], onehot_max: Optional[int] = None,
                  seed: int = 0) -> Tuple["Preprocessing", np.ndarray]:
        """Fit the ColumnTransformer on the first `n_train` rows of the table (a DataFrame whose rows
        are in train | val | test order); returns it and the model inputs of every row (float32).
        `numeric`: one of NUMERIC; `onehot_max`: a category column with more one-hot inputs than this
        becomes one code input (None: every category one-hot); `seed`: the quantiles' subsample."""
        import pandas as pd
        from sklearn.compose import ColumnTransformer
        from sklearn.frozen import FrozenEstimator
        from sklearn.pipeline import make_pipeline

        pre = cls("table", columns=columns)
        train = frame.iloc[:n_train]
        for col in pre.columns:  # numbers are divided by a power of two near their typical size first
            if col.kind == "numeric":
                col.scale = _scale_of(pre.numbers(train[col.name], col)) if standardize else 1.0
        codes = {}  # every row's vocabulary indices, computed once: for the fit (train rows) and the inputs
        for col in pre.categorical:  # the train split's values, sorted: a value's code is its index
            uniques = _distinct(train[col.name])
            col.vocabulary = sorted({str(v) for v in canonical_categories(uniques, col.codes).fillna(MISSING)})
            codes[col.name] = pre.codes(frame[col.name], col)
            if onehot_max is not None:
                _choose_encoding(col, codes[col.name][:n_train], onehot_max)
        # Each part is fitted on the train rows alone, then frozen; the ColumnTransformer around them
        # is fitted on two rows, which only sets its shape. ColumnTransformer.fit would transform every
        # train row and stack the parts as a sparse matrix, which the inputs never use.
        parts = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an all-missing column: NaN statistics (kept as 0)
            if pre.numeric:
                pipe = make_pipeline(*_numeric_steps(numeric, standardize, n_train, seed))
                parts.append(("numeric", FrozenEstimator(pipe.fit(pre.numeric_frame(train))), pre.numeric))
            if pre.onehot:
                enc = onehot_encoder().fit(pd.DataFrame({c.name: codes[c.name][:n_train] for c in pre.onehot}))
                parts.append(("category", FrozenEstimator(enc), [c.name for c in pre.onehot]))
            pre.transformer = ColumnTransformer(parts, remainder="drop", sparse_threshold=1.0,
                                                verbose_feature_names_out=False)
            pre.transformer.fit(pre.frame(train.iloc[:2]))
        pre._count_inputs()
        pre.inputs = pre._input_names()
        X = zeros_array((len(frame), len(pre.inputs)), np.float32)
        pre.transform(frame, out=X, codes=codes, zeroed=True)
        return pre, X

    def _input_names(self) -> List[str]:
        """Names of the model inputs: `col`, `missingindicator_col`, `col_<category>`, `col_infrequent`, and
        last `col` for a category column that is one code input."""
        names = [str(n) for n in self.part("numeric").get_feature_names_out(self.numeric)] \
            if self.numeric else []
        if self.onehot:
            enc = self.encoder
            for i, col in enumerate(self.onehot):
                rare = enc.infrequent_categories_[i] if enc.infrequent_categories_ is not None else None
                rare = set() if rare is None else {int(c) for c in rare}
                names += [f"{col.name}_{col.vocabulary[int(c)]}" for c in enc.categories_[i] if int(c) not in rare]
                if rare:
                    names.append(f"{col.name}_infrequent")
        return names + [col.name for col in self.coded]

    def _count_inputs(self) -> None:
        counts: Dict[str, int] = {}
        if self.numeric:
            imputer = self.part("numeric").named_steps["simpleimputer"]
            flagged = set()
            if imputer.indicator_ is not None:
                flagged = {self.numeric[i] for i in imputer.indicator_.features_}
            counts.update({name: 1 + (name in flagged) for name in self.numeric})
        if self.onehot:
            enc = self.encoder
            for i, col in enumerate(self.onehot):
                rare = enc.infrequent_categories_[i] if enc.infrequent_categories_ is not None else None
                n_rare = 0 if rare is None else len(rare)
                counts[col.name] = len(enc.categories_[i]) - n_rare + (1 if n_rare else 0)
        counts.update({col.name: 1 for col in self.coded})
        for col in self.columns:
            col.inputs = counts.get(col.name, 0)

    def part(self, name: str):
        """A fitted part of the ColumnTransformer: "numeric" (a Pipeline) or "category" (a OneHotEncoder),
        unwrapped from the FrozenEstimator that fit_table keeps it in (a run of an older mlpkit has none)."""
        from sklearn.frozen import FrozenEstimator

        part = self.transformer.named_transformers_[name]
        return part.estimator if isinstance(part, FrozenEstimator) else part

    @property
    def encoder(self):
        """The fitted OneHotEncoder of the `onehot` columns."""
        return self.part("category")

    # -- applying ---------------------------------------------------------------

    def frame(self, df, first_line: int = 2):
        """The columns the transformer reads, as it reads them: numbers as float64 divided by their
        column's scale, infinite or out-of-range ones as missing (text in a numeric column is a
        ConfigError naming column and line), categories as indices into their train vocabulary."""
        out = self.numeric_frame(df, first_line)
        for col in self.onehot:
            out[col.name] = self.codes(df[col.name], col)
        return out

    def numeric_frame(self, df, first_line: int = 2):
        """numeric_matrix as a DataFrame of the numeric columns' names (what the numeric part was fitted on)."""
        import pandas as pd

        return pd.DataFrame(self.numeric_matrix(df, first_line), columns=self.numeric, copy=False)

    def numeric_matrix(self, df, first_line: int = 2) -> np.ndarray:
        """The numeric columns as the transformer's numeric part reads them (see frame), one float64 matrix."""
        numeric = [c for c in self.columns if c.kind == "numeric"]
        out = np.empty((len(df), len(numeric)), np.float64, order="F")  # a column at a time
        for j, col in enumerate(numeric):
            out[:, j] = self.scaled(df[col.name], col, first_line)[0]
        return out

    @staticmethod
    def numbers(s, col: Column, first_line: int = 2) -> np.ndarray:
        """A numeric column's values as float64 (NaN where missing; a date column as days)."""
        import pandas as pd

        if col.codes == "date":
            return np.array(to_days(s, col.date_format))
        if s.dtype.kind not in "iufb":
            values = pd.Series(lenient_numbers(s)[0], index=s.index)  # '$5,251', '52.5%' too
            bad = values.isna() & s.notna()
            if bad.any():
                pos = int(np.flatnonzero(bad.to_numpy())[0])
                raise ConfigError(f"column {col.name!r} holds the text {str(s.iloc[pos])!r} at line "
                                  f"{first_line + pos}, but it was numeric in training")
            s = values
        if isinstance(s.dtype, np.dtype):  # numbers or booleans in numpy: NaN (if any) is the missing value
            return np.array(s.to_numpy(), dtype=np.float64)  # a copy of our own
        return np.array(s.to_numpy(dtype=np.float64, na_value=np.nan))  # pandas' nullable types: NA as NaN

    @classmethod
    def scaled(cls, s, col: Column, first_line: int = 2) -> Tuple[np.ndarray, np.ndarray]:
        """(the column divided by its scale, with out-of-range values as NaN; where those were)."""
        v = cls.numbers(s, col, first_line)
        with np.errstate(over="ignore", invalid="ignore"):
            v /= col.scale
            bad = np.abs(v) > OUT_OF_RANGE  # inf too; NaN (missing) is not
        if bad.any():
            v[bad] = np.nan
        return v, bad

    def out_of_range(self, df) -> Dict[str, Tuple[int, List[str]]]:
        """Per numeric column of `df`: how many values are infinite or out of range (treated as
        missing), and up to three of them as written."""
        found = {}
        if self.kind == "array":
            return found
        for col in self.columns:
            if col.kind == "numeric" and col.name in df:
                _, bad = self.scaled(df[col.name], col)
                n = int(bad.sum())
                if n:
                    raw = self.numbers(df[col.name], col)[bad]
                    examples = [f"{v:g}" for v in _first_seen(raw)[:3]]
                    found[col.name] = (n, examples)
        return found

    def not_dates(self, df) -> Dict[str, Tuple[int, List[str]]]:
        """Per date column of `df`: how many of its values are not dates in the column's format (treated
        as missing), and up to three of them as written."""
        import pandas as pd

        found = {}
        for col in self.columns:
            if col.kind == "numeric" and col.codes == "date" and col.name in df:
                s = df[col.name]
                bad = np.isnan(to_days(s, col.date_format)) & s.notna().to_numpy()
                if bad.any():
                    found[col.name] = (int(bad.sum()), [str(v) for v in pd.unique(s[bad])[:3]])
        return found

    @staticmethod
    def codes(values, col: Column) -> np.ndarray:
        """A category column's values as indices into its train vocabulary; -1 for one never seen.
        Only the distinct values are written out canonically (a table has few, and many rows)."""
        import pandas as pd

        if isinstance(values.dtype, pd.CategoricalDtype):  # codes into its categories already (-1: missing)
            raw, uniques = values.cat.codes.to_numpy(), values.cat.categories
        else:
            raw, uniques = pd.factorize(values, use_na_sentinel=True)  # -1: missing
        canon = canonical_categories(pd.Series(uniques, dtype=object), col.codes).fillna(MISSING)
        index = pd.Index(col.vocabulary)
        lookup = np.append(index.get_indexer(canon), index.get_indexer([MISSING]))  # raw -1 -> last entry
        return lookup[raw].astype(np.int64)

    def transform(self, df, first_line: int = 2, out: Optional[np.ndarray] = None,
                  codes: Optional[Dict[str, np.ndarray]] = None, zeroed: bool = False) -> np.ndarray:
        """Model inputs (N, len(inputs)) float32 for the rows of a DataFrame (table) or array. `codes`: every
        category column's `codes` of these rows, where the caller has them already (fit_table); `zeroed`:
        `out` holds zeros already (its one-hot inputs are then not cleared first)."""
        if self.kind == "array":
            X = np.asarray(df, dtype=np.float32)
            return ((X - self.mean) / self.std).astype(np.float32)
        if codes is None:  # each category column's vocabulary indices, once for every row
            codes = {col.name: self.codes(df[col.name], col) for col in self.categorical}
        if out is None:
            out, zeroed = zeros_array((len(df), len(self.inputs)), np.float32), True
        if out.shape != (len(df), len(self.inputs)):
            raise ValueError(f"transform: `out` has shape {out.shape}, expected {(len(df), len(self.inputs))}")
        widths = self._part_widths()
        onehots = self._onehot_inputs(widths[0])
        numeric = self.part("numeric") if self.numeric else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. an all-missing column's NaN statistic
            for start in range(0, len(df), BLOCK_ROWS):  # a block at a time: bounded temporaries
                block = df.iloc[start:start + BLOCK_ROWS]
                rows = out[start:start + len(block)]
                if numeric is not None:
                    rows[:, :widths[0]] = self._numeric_inputs(numeric, block, first_line + start)
                if self.onehot:
                    if not zeroed:
                        rows[:, widths[0]:widths[0] + widths[1]] = 0
                    for col, inputs in zip(self.onehot, onehots):
                        where = inputs[codes[col.name][start:start + len(block)]]  # -1 (never seen): the last entry
                        _set_ones(rows, where)
        self._write_codes(codes, out)
        return out

    def _numeric_inputs(self, numeric, df, first_line: int) -> np.ndarray:
        """The numeric part's inputs of the rows of `df`. Its fitted steps are applied here with numpy, each
        as scikit-learn's transform computes it, the same operations in the same order on float64 (RobustScale
        and StandardScaler: minus the centre, divided by the scale; SmoothClip's own; SimpleImputer: its
        statistic where a value is missing, then the missing-value indicators stacked after the columns),
        without a DataFrame and the checks of each step: 2-3x faster on large tables, and the same numbers
        (tests compare them with the ColumnTransformer's own transform). A pipeline with any other step
        (QuantileTransformer) is applied by scikit-learn."""
        from sklearn.impute import SimpleImputer
        from sklearn.preprocessing import StandardScaler

        from mlpkit.data.scaling import RobustScale, SmoothClip

        steps = [step for _, step in numeric.steps]
        known = all(type(step) in (RobustScale, SmoothClip, StandardScaler) or
                    (type(step) is SimpleImputer and step.keep_empty_features and step.missing_values != step.missing_values)
                    for step in steps)
        if not known:
            return numeric.transform(self.numeric_frame(df, first_line))
        v = self.numeric_matrix(df, first_line)  # float64, our own
        for step in steps:
            if isinstance(step, RobustScale):
                if step.with_centering:
                    v -= step.center_
                if step.with_scaling:
                    v /= step.scale_
            elif isinstance(step, StandardScaler):
                if step.with_mean:
                    v -= step.mean_
                if step.with_std:
                    v /= step.scale_
            elif isinstance(step, SmoothClip):
                v = step.transform(v)
            else:
                missing = np.isnan(v)
                np.copyto(v, np.broadcast_to(step.statistics_, v.shape), where=missing)
                if step.indicator_ is not None:
                    v = np.hstack((v, missing[:, step.indicator_.features_]))
        return v

    def _part_widths(self) -> Tuple[int, int]:
        """How many inputs the numeric part and the one-hot part make (they come first in a row, in that order)."""
        n_numeric = sum(c.inputs for c in self.columns if c.kind == "numeric")
        n_onehot = sum(c.inputs for c in self.onehot)
        if n_numeric + n_onehot + len(self.coded) != len(self.inputs):
            raise ConfigError(f"the fitted preprocessing makes {n_numeric + n_onehot + len(self.coded)} inputs, "
                              f"its file names {len(self.inputs)}")
        return n_numeric, n_onehot

    def _onehot_inputs(self, first: int) -> List[np.ndarray]:
        """Per one-hot column: the input (a position in the row) that each vocabulary index sets to 1, and
        last, for index -1 (a value never seen in training), the column's `infrequent` input, or -1 (none)
        when no category was rare. OneHotEncoder's layout: the frequent categories in its categories_
        order, then one input for the infrequent ones (tests compare it with OneHotEncoder.transform)."""
        enc, found = self.encoder if self.onehot else None, []
        for i, col in enumerate(self.onehot):
            rare = enc.infrequent_categories_[i] if enc.infrequent_categories_ is not None else None
            rare = set() if rare is None else {int(c) for c in rare}
            frequent = [int(c) for c in enc.categories_[i] if int(c) not in rare]
            # a value it never saw goes to the infrequent input, or to none when no category was rare
            inputs = np.full(len(col.vocabulary) + 1, first + len(frequent) if rare else -1, np.int64)
            inputs[frequent] = first + np.arange(len(frequent))
            first += col.inputs
            found.append(inputs)
        return found

    def _write_codes(self, codes: Dict[str, np.ndarray], out: np.ndarray) -> None:
        """The code inputs (the last len(coded) columns of `out`) of rows whose vocabulary indices are `codes`."""
        first = out.shape[1] - len(self.coded)
        for j, col in enumerate(self.coded):
            out[:, first + j] = _code_lookup(col)[codes[col.name]]  # index -1 (unseen): the last

    def unseen(self, df) -> Dict[str, int]:
        """Per category column, how many rows hold a category never seen in training."""
        if self.kind == "array" or not self.categorical:
            return {}
        counts = {}
        for col in self.categorical:
            n = int((self.codes(df[col.name], col) < 0).sum())
            if n:
                counts[col.name] = n
        return counts

    # -- saving and loading -------------------------------------------------------

    def as_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT, "kind": self.kind, "target": self.target, "task": self.task,
            "classes": self.classes, "y_mean": self.y_mean, "y_std": self.y_std,
            "columns": [c.as_dict() for c in self.columns], "inputs": self.inputs,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "transformer": SKOPS_NAME if self.transformer is not None else None,
            "target_codes": self.target_codes,
        }

    def save(self, run_dir: str | Path) -> None:
        from mlpkit.files import atomic_write, write_json

        run_dir = Path(run_dir)
        if self.transformer is not None:
            import skops.io as sio

            data = sio.dumps(self.transformer)
            atomic_write(run_dir / SKOPS_NAME, lambda fh: fh.write(data))
        write_json(run_dir / JSON_NAME, self.as_dict())

    @classmethod
    def load(cls, run_dir: str | Path) -> "Preprocessing":
        """Read a run's preprocessing back; ConfigError when it is missing, damaged or not trusted."""
        run_dir = Path(run_dir)
        path = run_dir / JSON_NAME
        if not path.is_file():
            raise ConfigError(f"{run_dir} has no {JSON_NAME}: it is not a finished mlpkit run "
                              "(or was trained by an older mlpkit)")
        try:
            spec = json.loads(path.read_text())
            if spec.get("format") != FORMAT:
                raise ValueError(f"format {spec.get('format')!r}, expected {FORMAT!r}")
            columns = [Column(**c) for c in spec["columns"]]
            pre = cls(spec["kind"], target=spec["target"], task=spec["task"], classes=spec["classes"],
                      y_mean=spec["y_mean"], y_std=spec["y_std"], columns=columns, inputs=spec["inputs"],
                      mean=None if spec["mean"] is None else np.asarray(spec["mean"], np.float32),
                      std=None if spec["std"] is None else np.asarray(spec["std"], np.float32),
                      target_codes=spec.get("target_codes", "text"))
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path} is not a readable mlpkit preprocessing file ({err})") from None
        if spec["kind"] == "table":
            pre.transformer = load_transformer(run_dir / SKOPS_NAME)
            pre._count_inputs()
        return pre


def load_transformer(path: Path):
    """The fitted ColumnTransformer from a skops file, refusing every type outside TRUSTED_TYPES."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer

    if not path.is_file():
        raise ConfigError(f"{path.parent} has no {path.name}: the run's fitted preprocessing is missing")
    try:
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
        if untrusted:
            raise ConfigError(f"{path} holds types mlpkit does not load ({', '.join(untrusted[:5])}); "
                              "it was not written by mlpkit, and nothing in it was run")
        obj = sio.load(path, trusted=TRUSTED_TYPES)
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"{path} is not a readable mlpkit preprocessing file ({type(err).__name__})") from None
    if not isinstance(obj, ColumnTransformer):
        raise ConfigError(f"{path} does not hold a fitted preprocessing (found {type(obj).__name__})")
    return obj


def _set_ones(rows: np.ndarray, where: np.ndarray) -> None:
    """rows[i, where[i]] = 1 for each row i whose where[i] is not -1 (no input); through the flat positions
    where `rows` is one block of memory (a single index array: several times faster than row and column ones)."""
    hit = where >= 0
    if not rows.flags.c_contiguous:
        (hit,) = np.nonzero(hit)
        rows[hit, where[hit]] = 1
        return
    flat = np.arange(len(where), dtype=np.int64) * rows.shape[1] + where
    rows.reshape(-1)[flat if hit.all() else flat[hit]] = 1


def _choose_encoding(col: Column, codes: np.ndarray, onehot_max: int) -> None:
    """Make `col` one code input when its one-hot encoding (categories seen at least MIN_FREQUENCY times
    in the train rows `codes`, plus one input for the rarer ones) would have more than `onehot_max` inputs."""
    counts = np.bincount(codes, minlength=len(col.vocabulary))
    rare = np.flatnonzero(counts < MIN_FREQUENCY)
    if len(col.vocabulary) - len(rare) + (len(rare) > 0) > onehot_max:
        col.encoding, col.rare = "code", [int(i) for i in rare]


def _cardinality(col: Column) -> int:
    """A code column's codes: one per category seen at least MIN_FREQUENCY times, and one shared by the
    rarer ones and by values never seen in training."""
    return len(col.vocabulary) - len(col.rare) + 1


def _code_lookup(col: Column) -> np.ndarray:
    """A code column's code (float32) of each vocabulary index, and last, for index -1 (never seen), the
    shared code: the categories that are not rare are numbered in vocabulary (sorted) order."""
    shared = _cardinality(col) - 1
    own = np.ones(len(col.vocabulary), bool)
    own[col.rare] = False
    lookup = np.full(len(col.vocabulary) + 1, shared, np.float32)
    lookup[:-1][own] = np.arange(shared, dtype=np.float32)
    return lookup


def not_dates_text(n: int, examples: Sequence[str], fmt: Optional[str], where: str = "") -> str:
    """`3 values are not dates in the format %Y-%m-%d (e.g. 'soon', 'n/a')`; `where` follows the format."""
    verb = "values are not dates" if n > 1 else "value is not a date"
    return f"{n} {verb} in the format {fmt}{where} (e.g. {', '.join(repr(e) for e in examples)})"


def _scale_of(v: np.ndarray) -> float:
    """The power of two nearest above the median size of a column's finite non-zero values (1 for none)."""
    import math

    size = np.abs(v[np.isfinite(v) & (v != 0)])
    if not len(size):
        return 1.0
    return float(2.0 ** math.frexp(float(np.median(size)))[1])


def _first_seen(v: np.ndarray) -> np.ndarray:
    """The distinct values of an array in order of appearance."""
    _, first = np.unique(v, return_index=True)
    return v[np.sort(first)]


def _distinct(values):
    """The distinct values of a column (missing once, as NaN), as a Series."""
    import pandas as pd

    return pd.Series(pd.unique(values), dtype=object)
