"""Applying a finished run to new rows: `python predict.py RUN_DIR INPUT` and `mlpkit.load_run`.

A run directory holds everything needed (written by the training command): preprocessing.json
(+ preprocessing.skops for a table: the fitted ColumnTransformer), model.json (the network's
shape), checkpoints/best.pt and last.pt (weights, loaded with weights_only=True; refit.pt too where
trainer.refit=true trained one), metrics.json (which checkpoint the run kept) and splits.npz (which rows of the training file went to which
split). Nothing in it is unpickled, so a run directory from someone else runs none of their code,
and every field predict reads is checked for type, shape and size first: a damaged or crafted
file is a ConfigError naming the file and the field, before anything is allocated from it.

    run = mlpkit.load_run("outputs/runs/2026-11-22/10-00-00_data=csv,...")
    run.predict("new.csv")            # labels as written in the training file, or values
    run.predict_proba(frame)          # (N, classes) probabilities, columns in run.classes order

This module imports only the standard library at the top: `predict.py --help` and argument errors
answer before torch, numpy or pandas are imported.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from mlpkit import startup
from mlpkit.errors import ConfigError, exit_with
from mlpkit.files import umask_mode
from mlpkit.status import RunStatus

if TYPE_CHECKING:
    import numpy as np

    from mlpkit.tasks import Task

SPLITS = ("train", "val", "test", "all")
CHUNK_ROWS = 50_000
FLOAT_FORMAT = "%.9g"  # numbers written: 9 significant digits, as many as a float32 needs to read back the same
SPLITS_LIMIT = 2 ** 31  # bytes splits.npz may unpack to: 268 million row numbers
JSON_LIMIT = 256 * 2 ** 20  # bytes: no run writes a JSON file near this
MAX_CLASSES = 1_000_000
MAX_PIECES = 64  # maxout pieces
COLUMN_KINDS = ("numeric", "category", "boolean", "dropped")
COLUMN_CODES = ("text", "number", "boolean", "date")
COLUMN_ENCODINGS = ("onehot", "code")


# ---------------------------------------------------------------------------
# The run directory's files, checked field by field


class _JsonFile:
    """One JSON file of a run directory, read with a size limit; every check names the file and the field."""

    def __init__(self, path: Path, missing: Optional[str] = None):
        self.path = path
        if not path.is_file():
            raise ConfigError(missing or f"{path.parent} has no {path.name}: it is not a finished mlpkit run")
        try:
            size = path.stat().st_size
            if size > JSON_LIMIT:
                raise ConfigError(f"{path} is {size} bytes; a run's {path.name} is far smaller (damaged?)")
            self.data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
        except ConfigError:
            raise
        except (OSError, ValueError, RecursionError) as err:
            reason = getattr(err, "strerror", None) or str(err).splitlines()[0][:200]
            raise ConfigError(f"{path} is not readable JSON ({reason}); the run directory is damaged") from None
        if not isinstance(self.data, dict):
            raise ConfigError(f"{path} holds a JSON {_kind(self.data)} where an object belongs; "
                              "the run directory is damaged")

    def bad(self, field: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {field!r} {problem}; the run directory is damaged or not from one run")

    def get(self, key: str, default: Any = ..., obj: Optional[dict] = None, field: Optional[str] = None) -> Any:
        obj = self.data if obj is None else obj
        if key not in obj:
            if default is ...:
                raise self.bad(field or key, "is missing")
            return default
        return obj[key]

    def _absent(self, key: str, default: Any, obj: Optional[dict]) -> bool:
        """True when `key` is not there and has a default (else a missing key is an error in get)."""
        return default is not ... and key not in (self.data if obj is None else obj)

    def choice(self, key: str, choices: Sequence[str], default: Any = ..., obj: Optional[dict] = None,
               field: Optional[str] = None) -> Any:
        if self._absent(key, default, obj):
            return default
        value = self.get(key, default, obj, field)
        if not isinstance(value, str) or value not in choices:
            raise self.bad(field or key, f"is {_show(value)}; allowed: {', '.join(choices)}")
        return value

    def integer(self, key: str, lo: int, hi: int, default: Any = ..., obj: Optional[dict] = None,
                field: Optional[str] = None) -> Any:
        if self._absent(key, default, obj):
            return default
        value = self.get(key, default, obj, field)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.bad(field or key, f"is {_show(value)}; it must be an integer from {lo} to {hi}")
        return value

    def number(self, key: str, default: Any = ..., positive: bool = False, obj: Optional[dict] = None,
               field: Optional[str] = None) -> Any:
        if self._absent(key, default, obj):
            return default
        value = self.get(key, default, obj, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (positive and value <= 0):
            raise self.bad(field or key, f"is {_show(value)}; it must be a finite number{' > 0' if positive else ''}")
        return float(value)

    def strings(self, key: str, max_len: int, default: Any = ..., obj: Optional[dict] = None,
                field: Optional[str] = None, unique: bool = True) -> Any:
        if self._absent(key, default, obj):
            return default
        value = self.get(key, default, obj, field)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.bad(field or key, f"is {_show(value)}; it must be a list of strings")
        if len(value) > max_len:
            raise self.bad(field or key, f"holds {len(value)} entries; at most {max_len} are allowed")
        if unique and len(set(value)) != len(value):
            raise self.bad(field or key, "holds the same name twice")
        return value

    def numbers(self, key: str, length: int, obj: Optional[dict] = None, positive: bool = False) -> List[float]:
        value = self.get(key, ..., obj)
        if not isinstance(value, list) or len(value) != length or not all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                and (not positive or v > 0) for v in value):
            raise self.bad(key, f"must be a list of {length} finite numbers{' > 0' if positive else ''}, "
                                "one per input")
        return [float(v) for v in value]

    def object(self, key: str, obj: Optional[dict] = None, field: Optional[str] = None) -> dict:
        value = self.get(key, ..., obj, field)
        if not isinstance(value, dict):
            raise self.bad(field or key, f"holds a {_kind(value)} where an object belongs")
        return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    """A value for a message: short, one line."""
    text = json.dumps(value) if isinstance(value, (dict, list, str, int, float, bool, type(None))) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _valid_date_format(fmt: Any) -> bool:
    """A strftime format that reads back what it writes (what the training file's dates were read with), or
    ISO_DATES (a column of timestamps)."""
    from datetime import datetime

    from mlpkit.data.table import ISO_DATES

    if fmt == ISO_DATES:
        return True
    if not isinstance(fmt, str) or not 0 < len(fmt) <= 64 or "%" not in fmt:
        return False
    try:
        sample = datetime(2001, 2, 3, 4, 5, 6)
        datetime.strptime(sample.strftime(fmt), fmt)
    except (ValueError, TypeError):
        return False
    return True


def _load_preprocessing(run_dir: Path):
    """preprocessing.json (+ preprocessing.skops), every field checked, the transformer against the JSON."""
    from mlpkit.data.preprocess import FORMAT, JSON_NAME, SKOPS_NAME, Preprocessing, load_transformer

    f = _JsonFile(run_dir / JSON_NAME, f"{run_dir} has no {JSON_NAME}: it is not a finished mlpkit run "
                                       "(or was trained by an older mlpkit)")
    if f.get("format") != FORMAT:
        raise f.bad("format", f"is {_show(f.get('format'))}; allowed: {FORMAT}")
    kind = f.choice("kind", ("array", "table"))
    from mlpkit.tasks import TASKS

    task = TASKS[f.choice("task", tuple(TASKS))]
    target = f.get("target")
    if not isinstance(target, str) or len(target) > 10_000:
        raise f.bad("target", f"is {_show(target)}; it must be a column name")
    classes = f.strings("classes", MAX_CLASSES)
    if not task.fits_classes(len(classes)):
        raise f.bad("classes", f"holds {len(classes)} entries, but a {task} run has {task.classes_wanted}")
    y_mean = f.number("y_mean", 0.0)
    y_std = f.number("y_std", 1.0, positive=True)
    target_codes = f.choice("target_codes", ("text", "number", "boolean"), "text")
    raw_columns = f.get("columns")
    if not isinstance(raw_columns, list):
        raise f.bad("columns", f"holds a {_kind(raw_columns)} where a list belongs")
    names: set = set()
    columns = [_checked_column(f, i, raw, names) for i, raw in enumerate(raw_columns)]
    if kind == "table" and target in names:
        raise f.bad("target", f"names {target!r}, which is also a feature column")
    inputs = f.strings("inputs", 10_000_000)
    if not inputs:
        raise f.bad("inputs", "is empty; a model has at least one input")
    mean = std = None
    import numpy as np

    if kind == "array":
        mean = np.asarray(f.numbers("mean", len(inputs)), np.float32)
        std = np.asarray(f.numbers("std", len(inputs), positive=True), np.float32)
    pre = Preprocessing(kind, target=target, task=task, classes=classes, y_mean=y_mean, y_std=y_std,
                        columns=columns, inputs=inputs, mean=mean, std=std, target_codes=target_codes)
    if kind == "array":
        return pre
    if f.get("transformer", None) != SKOPS_NAME:
        raise f.bad("transformer", f"is {_show(f.get('transformer', None))}; a table's run names {SKOPS_NAME}")
    if not pre.feature_columns:
        raise f.bad("columns", "holds no feature column")
    skops = run_dir / SKOPS_NAME
    pre.transformer = load_transformer(skops)
    _check_transformer(pre, f, skops)
    return pre


def _rows_said(split: Optional[str], training: bool) -> str:
    """What the metrics line says of the rows it scored: a split, or the whole training file."""
    if split:
        return f" of the {split} split" if split != "all" else " of the run's train, val and test splits"
    if training:
        return (" (INPUT is the run's training file: these rows include the ones it was trained and "
                "validated on, so the metrics flatter the model; --split test scores its test rows only)")
    return ""


def _checked_column(f: _JsonFile, i: int, raw: Any, names: set):
    """preprocessing.json's columns[i] as a Column, every field checked; its name joins `names`."""
    from mlpkit.data.table import Column

    where = f"columns[{i}]"
    fields = set(Column.__dataclass_fields__)
    if not isinstance(raw, dict):
        raise f.bad(where, f"holds a {_kind(raw)} where an object belongs")
    extra = sorted(set(raw) - fields)
    if extra:
        raise f.bad(f"{where}.{extra[0]}", "is not a field of a column")
    name = raw.get("name")
    if not isinstance(name, str) or not name or name in names or len(name) > 10_000:
        raise f.bad(f"{where}.name", f"is {_show(name)}; it must be a column name, once")
    names.add(name)
    col_kind = f.choice("kind", COLUMN_KINDS, obj=raw, field=f"{where}.kind")
    codes = f.choice("codes", COLUMN_CODES, "text", obj=raw, field=f"{where}.codes")
    date_format = raw.get("date_format")
    if codes == "date" or date_format is not None:
        if not _valid_date_format(date_format):
            raise f.bad(f"{where}.date_format", f"is {_show(date_format)}; it must be a date format "
                                                "such as %Y-%m-%d")
    vocabulary = raw.get("vocabulary")
    if col_kind in ("category", "boolean"):
        vocabulary = f.strings("vocabulary", 10_000_000, obj=raw, field=f"{where}.vocabulary")
        if not vocabulary:
            raise f.bad(f"{where}.vocabulary", "is empty; a category column has its values here")
    else:
        vocabulary = None
    encoding = f.choice("encoding", COLUMN_ENCODINGS, "onehot", obj=raw, field=f"{where}.encoding")
    rare = raw.get("rare", [])
    if encoding == "code" and vocabulary is None:
        raise f.bad(f"{where}.encoding", f"is 'code' for a {col_kind} column; only a category column has codes")
    if not isinstance(rare, list) or (rare and encoding != "code") or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in rare) or \
            rare != sorted(set(rare)) or (rare and not 0 <= rare[0] <= rare[-1] < len(vocabulary)):
        raise f.bad(f"{where}.rare", f"is {_show(rare)}; it must be a sorted list of distinct indices into the "
                                     "column's 'vocabulary' (a code column's rare categories)")
    for key in ("missing", "inputs", "out_of_range"):
        f.integer(key, 0, 2 ** 62, 0, obj=raw, field=f"{where}.{key}")
    if "scale" in raw:  # numbers are divided by it: a power of two > 0
        scale = f.number("scale", positive=True, obj=raw, field=f"{where}.scale")
        if math.frexp(scale)[0] != 0.5:
            raise f.bad(f"{where}.scale", f"is {_show(raw['scale'])}; it must be a power of two")
    if raw.get("categories") is not None:
        f.integer("categories", 0, 2 ** 62, obj=raw, field=f"{where}.categories")
    if not isinstance(raw.get("reason", ""), str):
        raise f.bad(f"{where}.reason", "must be a string")
    checked = dict(raw, name=name, kind=col_kind, codes=codes, date_format=date_format, vocabulary=vocabulary,
                   encoding=encoding, rare=rare)
    return Column(**checked)  # every field of the JSON checked above, the fields mlpkit adds too


def _check_transformer(pre, f: _JsonFile, skops: Path) -> None:
    """The fitted ColumnTransformer reads the JSON's columns and makes the JSON's inputs (not another run's)."""
    other = f"{skops} does not match {f.path}"
    try:
        ct = pre.transformer
        parts = {name: list(cols) for name, _, cols in ct.transformers_ if name != "remainder"}
        expect = {}
        if pre.numeric:
            expect["numeric"] = pre.numeric
        if pre.onehot:
            expect["category"] = [c.name for c in pre.onehot]
        if parts != expect:
            read = ", ".join(c for cols in parts.values() for c in map(str, cols))
            raise ConfigError(f"{other}: it reads the columns {read or '(none)'}, the JSON's 'columns' name "
                              f"{', '.join(c for cols in expect.values() for c in cols)} (another run's file?)")
        if pre.onehot:
            for i, col in enumerate(pre.onehot):
                codes = [int(c) for c in pre.encoder.categories_[i]]
                if codes and (min(codes) < -1 or max(codes) >= len(col.vocabulary)):
                    raise ConfigError(f"{other}: the column {col.name!r} has {max(codes) + 1} categories in "
                                      f"the transformer but {len(col.vocabulary)} in its 'vocabulary'")
        pre._count_inputs()
        made = pre._input_names()
    except ConfigError:
        raise
    except Exception as err:  # a transformer of another shape than mlpkit fits
        raise ConfigError(f"{other} ({type(err).__name__}); the run directory is damaged") from None
    if made != pre.inputs:
        first = next((i for i, (a, b) in enumerate(zip(made, pre.inputs)) if a != b), min(len(made), len(pre.inputs)))
        raise f.bad("inputs", f"does not match {skops.name}: it makes {len(made)} inputs, the JSON names "
                              f"{len(pre.inputs)} (first difference at input {first})")


def _linear_weights(kwargs: dict, pieces: int, k: int = 1) -> int:
    """How many weights the linear layers of an MLP of these (checked) widths hold (at least; TabM: k heads)."""
    total, width_in = 0, kwargs["in_dim"]
    for width in kwargs.get("hidden", []):
        total += width_in * width * pieces
        width_in = width
    return total + width_in * kwargs["out_dim"] * k


def _build_model(f: _JsonFile, pre, weights: Dict[str, Any], ckpt_path: Path):
    """The network model.json describes, after checking it against the preprocessing and the size of the
    checkpoint's tensors (so a crafted width never allocates more than the checkpoint holds)."""
    from mlpkit.models.embeddings import check_kwargs as check_encoder_kwargs
    from mlpkit.models.embeddings import encoder_size
    from mlpkit.models.mlp import MODELS
    from mlpkit.tasks import get_task

    if f.get("format") != "mlpkit-model-1":
        raise f.bad("format", f"is {_show(f.get('format'))}; allowed: mlpkit-model-1")
    name = f.choice("model", tuple(MODELS.names()))
    kwargs = f.object("kwargs")
    n_in = f.integer("in_dim", 1, 2 ** 31, obj=kwargs, field="kwargs.in_dim")
    if n_in != len(pre.inputs):
        raise f.bad("kwargs.in_dim", f"is {n_in}, but preprocessing.json's 'inputs' names {len(pre.inputs)} inputs")
    n_out = f.integer("out_dim", 1, MAX_CLASSES, obj=kwargs, field="kwargs.out_dim")
    want_out = get_task(pre.task).out_dim(len(pre.classes))
    if n_out != want_out:
        raise f.bad("kwargs.out_dim", f"is {n_out}, but a {pre.task} run with {len(pre.classes)} classes has "
                                      f"{want_out} output{'s' if want_out > 1 else ''}")
    pieces = 1
    if name in ("mlp", "tabm"):
        hidden = f.get("hidden", ..., kwargs, "kwargs.hidden")
        if not isinstance(hidden, list) or len(hidden) > 1000 or not all(
                isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= 2 ** 31 for w in hidden):
            raise f.bad("kwargs.hidden", f"is {_show(hidden)}; it must be a list of integer widths >= 1")
        params = f.object("activation_params", kwargs, "kwargs.activation_params") \
            if "activation_params" in kwargs else {}
        if "pieces" in params:
            pieces = f.integer("pieces", 2, MAX_PIECES, obj=params, field="kwargs.activation_params.pieces")
        check_encoder_kwargs(f.bad, kwargs, n_in)
        layout = getattr(pre, "layout", None)
        if "layout" in kwargs and layout is not None and kwargs["layout"] != layout.to_json():
            raise f.bad("kwargs.layout", f"is {_show(kwargs['layout'])}, but preprocessing.json makes "
                                         f"{_show(layout.to_json())}")
    k = 1
    if name == "tabm":
        f.choice("task", (pre.task,), obj=kwargs, field="kwargs.task")
        k = f.integer("k", 1, 1024, obj=kwargs, field="kwargs.k")
    held = sum(int(t.numel()) for t in weights.values() if hasattr(t, "numel"))
    needed = _linear_weights(kwargs, pieces, k) + encoder_size(kwargs, n_in)
    if needed > held:
        field = "kwargs.hidden" if name != "perceptron" and kwargs.get("hidden") else "kwargs"
        raise f.bad(field, f"describes a network of {needed} weights, but {ckpt_path} holds {held} values")
    try:
        return MODELS[name](**kwargs)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise f.bad("kwargs", f"does not describe an mlpkit {name} ({str(err).splitlines()[0][:200]})") from None


def _build_models(spec: "_JsonFile", pre: Any, weights: dict, path: Path, members: Any):
    """The network of a checkpoint: one model, or the seed ensemble of `members` models (trainer.refit_models)
    whose weights are `nets.<i>.<name>`, each checked as one model's."""
    from mlpkit.checks import RANGES

    if members == 1:
        return _build_model(spec, pre, weights, path)
    high = RANGES["trainer"]["refit_models"]["high"]
    if isinstance(members, bool) or not isinstance(members, int) or not 2 <= members <= high:
        raise ConfigError(f"{path}: 'members' is {_show(members)}; it must be an integer from 1 to {high}; "
                          "the checkpoint is damaged")
    from mlpkit.models.ensemble import SeedEnsemble, member_weights

    parts = [member_weights(weights, i) for i in range(members)]
    if not all(parts) or sum(map(len, parts)) != len(weights):
        raise ConfigError(f"{path}: its weights are not those of {members} models (nets.<i>.<name>); "
                          "the checkpoint is damaged")
    return SeedEnsemble([_build_model(spec, pre, part, path) for part in parts], pre.task)


def _same_json(a: Any, b: Any) -> bool:
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def _not_a_run(path: Path, said) -> str:
    """What to say of a directory without metrics.json: a sweep's (or any folder of runs) names its runs."""
    from mlpkit.files import runs_inside

    inside, first = runs_inside(path, "metrics.json")
    if inside:
        return f"{said} {inside}: give one of them, e.g. python predict.py {first} ..."
    return (f"{said} is not a finished mlpkit run (no metrics.json); train it to the end, or continue it with "
            "python train.py resume=<run_dir>")


CHECKPOINTS = ("best", "last", "refit")  # checkpoints/<name>.pt; refit.pt where trainer.refit=true trained one


class Run:
    """A finished run, ready to predict: its preprocessing and its kept model, on the CPU.

    `report(line)` receives the warnings about the weights (a run that diverged); by default they are
    Python warnings."""

    def __init__(self, run_dir: str | Path, checkpoint: Optional[str] = None,
                 report: Optional[Callable[[str], None]] = None):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ConfigError(f"{run_dir}: no such run directory")
        self.warnings: List[str] = []
        metrics = _JsonFile(self.run_dir / "metrics.json", _not_a_run(self.run_dir, run_dir))
        self.status = RunStatus(metrics.choice("status", tuple(RunStatus.endings())))
        if not self.status.has_model:
            raise ConfigError(f"{run_dir} is not a finished run (status {self.status!r}); continue it with "
                              "python train.py resume=<run_dir>")
        kept = metrics.choice("kept", CHECKPOINTS, "best")
        epochs_run = metrics.integer("epochs_run", 0, 2 ** 62, None)
        metrics.integer("best_epoch", 0, 2 ** 62, None)
        self.metrics = metrics.data
        self.preprocessing = _load_preprocessing(self.run_dir)
        pre = self.preprocessing
        from mlpkit.tasks import TASKS

        if "task" in metrics.data and metrics.choice("task", tuple(TASKS)) != pre.task:
            raise metrics.bad("task", f"is {metrics.data['task']!r} but preprocessing.json's is {pre.task!r}")
        saved_classes = metrics.get("classes", None)
        if saved_classes is not None and metrics.strings("classes", MAX_CLASSES) != pre.classes:
            raise metrics.bad("classes", f"differs from preprocessing.json's {_show(pre.classes)}")
        if checkpoint is not None and checkpoint not in CHECKPOINTS:
            raise ConfigError(f"--checkpoint {checkpoint!r} is not known; choose one of: {', '.join(CHECKPOINTS)}")
        if checkpoint == "refit" and kept != "refit":
            raise ConfigError(f"--checkpoint refit: {run_dir} has no refit model (trainer.refit=true trains one); "
                              "choose best or last")
        self.checkpoint = checkpoint or kept
        if self.status == RunStatus.DIVERGED and epochs_run == 0:
            raise ConfigError(f"{run_dir} diverged before its first epoch finished: it holds only untrained "
                              "weights; train it again (e.g. with a lower optimizer.lr)")
        spec = _JsonFile(self.run_dir / "model.json")
        path = self.run_dir / "checkpoints" / f"{self.checkpoint}.pt"
        from mlpkit.training.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        weights = state.get("model")
        if not isinstance(weights, dict) or not weights or not all(
                isinstance(k, str) and hasattr(v, "numel") for k, v in weights.items()):
            raise ConfigError(f"{path}: 'model' does not hold a network's weights; the checkpoint is damaged")
        for key, mine in (("task", pre.task), ("classes", pre.classes)):
            if key in state and not _same_json(state[key], mine):
                raise ConfigError(f"{path}: its {key!r} differs from preprocessing.json's {_show(mine)}; "
                                  "the checkpoint is from another run")
        self.model = _build_models(spec, pre, weights, path, state.get("members", 1))
        if "model_kwargs" in state and not _same_json(state["model_kwargs"], spec.data["kwargs"]):
            raise spec.bad("kwargs", f"differs from the model {path} was trained with; one of the two files "
                                     "is from another run")
        try:
            self.model.load_state_dict(weights)
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise ConfigError(f"{path} does not hold the model model.json describes "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        self.model.eval()
        self.epoch = state.get("epoch") if isinstance(state.get("epoch"), int) else None
        if self.status == RunStatus.DIVERGED:
            if self.epoch == 0:
                note = (f"the run diverged with no good epoch: {self.checkpoint}.pt holds untrained weights, "
                        "and its predictions are those of an untrained network")
            else:
                at = f"epoch {self.epoch}" if self.epoch is not None else "the last good epoch"
                note = (f"the run diverged: predicting with {self.checkpoint}.pt, the weights of {at}, kept "
                        "before the loss became NaN or infinite")
            self._warn(note, report)

    def _warn(self, note: str, report: Optional[Callable[[str], None]]) -> None:
        self.warnings.append(note)
        if report is not None:
            report(f"warning: {note}")
        else:
            import warnings

            warnings.warn(note, RuntimeWarning, stacklevel=3)

    # -- what the run knows -----------------------------------------------------

    @property
    def task(self) -> "Task":
        from mlpkit.tasks import get_task

        return get_task(self.preprocessing.task)

    @property
    def classes(self) -> List[str]:
        return list(self.preprocessing.classes)

    @property
    def target(self) -> str:
        return self.preprocessing.target

    @property
    def feature_columns(self) -> List[str]:
        return self.preprocessing.feature_columns

    # -- predicting ---------------------------------------------------------------

    def outputs(self, frame, first_line: int = 2) -> "np.ndarray":
        """The network's raw outputs (logits, or standardised values) for the rows of a DataFrame."""
        import torch

        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ConfigError(_missing_message(missing, "the input"))
        try:
            X = self.preprocessing.transform(frame[self.feature_columns] if self.preprocessing.kind == "array"
                                             else frame, first_line)
        except ConfigError:
            raise
        except (ValueError, TypeError, IndexError, KeyError) as err:  # what the checks above cannot foresee
            raise ConfigError(f"the run's preprocessing could not be applied to these rows "
                              f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
        with torch.no_grad():
            return self.model(torch.from_numpy(X)).float().numpy()

    def predict_proba(self, data: Any) -> "np.ndarray":
        """(N, len(classes)) class probabilities for a DataFrame or a file path (classification runs)."""
        if not self.task.classification:
            raise ConfigError(f"predict_proba: this run is a {self.task}; use predict")
        return self.task.probabilities(self.outputs(self._frame(data)))

    def predict(self, data: Any) -> "np.ndarray":
        """A label per row (as written in the training file) or a value in the target's units."""
        out = self.outputs(self._frame(data))
        return self._decode(out)

    def _decode(self, out: "np.ndarray") -> "np.ndarray":
        import numpy as np

        pre = self.preprocessing
        decoded = self.task.decode(out, pre.y_mean, pre.y_std)
        return np.asarray(self.classes, dtype=object)[decoded] if self.task.classification else decoded

    def _frame(self, data: Any):
        import numpy as np
        import pandas as pd

        from mlpkit.data.table import read_table

        if isinstance(data, (str, os.PathLike)):
            frame = read_table(str(data), key="input")[0]
            return frame
        if isinstance(data, pd.DataFrame):
            dupes = sorted({str(c) for c in data.columns[data.columns.duplicated()]} & set(self.feature_columns))
            if dupes:
                raise ConfigError(f"the DataFrame has the column {dupes[0]!r} twice; give each column its own name")
            return data
        if isinstance(data, np.ndarray) and self.preprocessing.kind == "array":
            return pd.DataFrame(data, columns=self.feature_columns)
        raise ConfigError(f"predict takes a DataFrame or the path of a table, not {type(data).__name__}")

    def target_indices(self, values) -> "np.ndarray":
        """The target column of new rows as class indices (-1: a label the run never saw) or floats."""
        import numpy as np
        import pandas as pd

        from mlpkit.data.table import canonical_categories, lenient_numbers

        if not self.task.classification:  # '$5,251', '52.5%' too, as a training target of them was read
            return lenient_numbers(values)[0]
        labels = canonical_categories(values, self.preprocessing.target_codes)  # text, or NaN where missing
        return pd.Index(self.classes, dtype=object).get_indexer(labels.to_numpy(dtype=object)).astype(np.int64)

    # -- whole files ----------------------------------------------------------------

    def predict_file(self, path: str, output: str, keep: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS,
                     report=print, overwrite: bool = False, split: Optional[str] = None) -> Dict[str, Any]:
        """Stream `path` in chunks through the run into a CSV at `output` ('-': standard output).
        `split` (train, val, test, all): only the rows of that split of the run's own training file.
        Returns counts and, when the input holds the target column, the metrics on it."""
        import numpy as np

        from mlpkit.data.table import check_file, iter_chunks

        path = check_file(path, "input")
        if output != "-":
            target = check_output(output, [path], overwrite, self.protected_files(), "-o")
        header = _reading(path, lambda: _raw_header(path))
        keep = list(dict.fromkeys(keep))
        self.check_header(path, header, keep)
        training = self.training_file_match(path)
        rows = self.split_rows(path, split, training) if split else None
        has_target = bool(self.target) and self.target in header
        wanted = list(dict.fromkeys([*keep, *self.feature_columns, *([self.target] if has_target else [])]))
        text = [c.name for c in self.preprocessing.categorical] + list(keep)
        if has_target and self.task.classification:
            text.append(self.target)
        stats: Dict[str, Any] = {"rows": 0, "unseen": {}, "missing": 0, "out_of_range": 0, "not_dates": {}}
        truth: List[np.ndarray] = []
        scores: List[np.ndarray] = []
        seen = 0
        with _Output(output if output == "-" else target, overwrite) as fh:
            for chunk in _chunks(path, iter_chunks(path, wanted, text, chunk_rows)):
                first_line = 2 + seen
                if rows is not None:
                    chosen = np.isin(np.arange(seen, seen + len(chunk)), rows)
                    seen += len(chunk)
                    chunk = chunk[chosen]
                    if not len(chunk):
                        continue
                else:
                    seen += len(chunk)
                    if not len(chunk):  # a header without rows: pandas' one empty chunk writes nothing
                        continue
                out = self.outputs(chunk, first_line)
                frame = _floats_as_text(self._result_frame(chunk, out, keep))
                try:
                    frame.to_csv(fh, header=stats["rows"] == 0, index=False, float_format=FLOAT_FORMAT)
                except BrokenPipeError:
                    raise
                except OSError as err:
                    raise ConfigError(_write_error(output, err, "-o")) from None
                self._count(stats, chunk)
                if has_target:
                    truth.append(self.target_indices(chunk[self.target]))
                    scores.append(out)
            if rows is not None and len(rows) and rows[-1] >= seen:
                raise ConfigError(f"{self.run_dir / 'splits.npz'} names row {int(rows[-1])} of the training file, "
                                  f"but {path} has {seen} rows; it is not the file the run was trained on")
            if stats["rows"] == 0:
                raise ConfigError(f"input {path!r} has a header but no data rows")
        _report_counts(stats, report)
        if has_target:
            stats["metrics"] = self._metrics(np.concatenate(truth), np.concatenate(scores), report,
                                             _rows_said(split, training))
        return stats

    def check_header(self, path: str, header: List[str], keep: Sequence[str]) -> None:
        """ConfigError for an input header that predict cannot use as asked: a column it reads named twice,
        a missing feature column, a --keep column that is not there or that clashes with an output column."""
        used = [*self.feature_columns, *keep, *([self.target] if self.target else [])]
        dupes = sorted({c for c in header if header.count(c) > 1} & set(used))
        if dupes:
            raise ConfigError(f"input {path!r}: the column name {dupes[0]!r} appears twice in the header; "
                              "give each column its own name")
        missing = [c for c in self.feature_columns if c not in header]
        if missing:
            raise ConfigError(_missing_message(missing, path))
        unknown = [c for c in keep if c not in header]
        if unknown:
            raise ConfigError(f"--keep {unknown[0]!r} is not a column of {path}; columns: {', '.join(header)}")
        reserved = self.output_columns()
        clash = [c for c in keep if c in reserved]
        if clash:
            raise ConfigError(f"--keep {clash[0]!r}: the output has a column of that name already "
                              f"({', '.join(reserved)}); rename that column of the input")

    def _count(self, stats: Dict[str, Any], chunk) -> None:
        """A chunk's rows, missing values, out-of-range numbers and unseen categories into `stats`."""
        stats["rows"] += len(chunk)
        stats["missing"] += int(chunk[self.feature_columns].isna().sum().sum())
        stats["out_of_range"] += sum(n for n, _ in self.preprocessing.out_of_range(chunk).values())
        for col, n in self.preprocessing.unseen(chunk).items():
            stats["unseen"][col] = stats["unseen"].get(col, 0) + n
        for col, (n, examples) in self.preprocessing.not_dates(chunk).items():
            fmt = next(c.date_format for c in self.preprocessing.columns if c.name == col)
            seen = stats["not_dates"].setdefault(col, [0, [], fmt])
            seen[0] += n
            seen[1] += [e for e in examples if e not in seen[1]][:3 - len(seen[1])]

    def output_columns(self) -> List[str]:
        """The columns predict writes after the --keep ones."""
        return ["prediction", *([f"proba_{c}" for c in self.classes] if self.task.classification else [])]

    def protected_files(self) -> List[str]:
        """The run directory's own files: never an output."""
        names = ["metrics.json", "model.json", "preprocessing.json", "preprocessing.skops", "splits.npz",
                 *(f"checkpoints/{name}.pt" for name in CHECKPOINTS)]
        return [str(self.run_dir / n) for n in names]

    # -- the run's own training file -----------------------------------------------

    def recorded_data(self) -> Dict[str, Any]:
        """What .hydra/config.yaml says of the run's data (path resolved against the run's working
        directory, seed, fractions); {} when the run does not record it (or not readably)."""
        out: Dict[str, Any] = {}
        config = _read_yaml(self.run_dir / ".hydra" / "config.yaml")
        data = config.get("data") if isinstance(config, dict) else None
        if not isinstance(data, dict) or data.get("name") != "csv" or not isinstance(data.get("path"), str):
            return out
        path = data["path"]
        if not os.path.isabs(path):
            hydra = _read_yaml(self.run_dir / ".hydra" / "hydra.yaml")
            cwd = ((hydra.get("hydra") or {}).get("runtime") or {}).get("cwd") if isinstance(hydra, dict) else None
            path = os.path.join(cwd, path) if isinstance(cwd, str) else path
        out["path"] = path
        seed, vf, tf = config.get("seed"), data.get("val_fraction"), data.get("test_fraction")
        if isinstance(seed, int) and not isinstance(seed, bool):
            out["seed"] = seed
        for key, v in (("val_fraction", vf), ("test_fraction", tf)):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1:
                out[key] = float(v)
        return out

    def training_file_match(self, path: str) -> bool:
        """Whether `path` is the run's training file: the same file, or one of the same size and content."""
        recorded = self.recorded_data().get("path")
        return bool(recorded) and _same_content(path, recorded)

    def split_rows(self, path: str, split: str, training: bool) -> "np.ndarray":
        """The sorted source rows of `split` in the run's training file (splits.npz, or drawn again from
        the recorded seed and fractions with the code that drew them)."""
        import numpy as np

        if split not in SPLITS:
            raise ConfigError(f"--split {split!r} is not known; choose one of: {', '.join(SPLITS)}")
        if not training:
            recorded = self.recorded_data().get("path")
            raise ConfigError(f"--split {split} needs the run's own training file as INPUT "
                              f"({recorded or 'the run does not record it'}); {path} is not that file")
        parts = self._recorded_splits() or self._draw_splits(path)
        rows = np.concatenate([parts[s] for s in ("train", "val", "test")]) if split == "all" else parts[split]
        return np.unique(rows)

    def _recorded_splits(self) -> Optional[Dict[str, "np.ndarray"]]:
        import numpy as np

        import zipfile

        path = self.run_dir / "splits.npz"
        if not path.is_file():
            return None
        try:
            with zipfile.ZipFile(path) as archive:  # what it unpacks to, before it is unpacked
                size = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError):
            size = 0  # np.load says what is wrong below
        if size > SPLITS_LIMIT:
            raise ConfigError(f"{path} unpacks to {size} bytes, more than the row numbers of any table "
                              f"({SPLITS_LIMIT}); the run directory is damaged")
        try:
            with np.load(path, allow_pickle=False) as npz:
                parts = {k: npz[k] for k in ("train", "val", "test")}
        except Exception as err:  # a damaged archive, an object array, a key missing
            raise ConfigError(f"{path} is not a readable mlpkit splits file ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:120] if str(err) else ''}); the run directory is "
                              "damaged") from None
        for key, rows in parts.items():
            if rows.ndim != 1 or rows.dtype.kind not in "iu" or (len(rows) and rows.min() < 0):
                raise ConfigError(f"{path}: {key!r} must be a list of row numbers >= 0; the run directory "
                                  "is damaged")
        return parts

    def _draw_splits(self, path: str) -> Dict[str, "np.ndarray"]:
        """The split a run without splits.npz drew, drawn again by mlpkit.data.split.split_rows from
        the rows with a target value, the seed and the fractions in .hydra/config.yaml."""
        import numpy as np

        from mlpkit.data.split import split_rows
        from mlpkit.data.table import iter_chunks

        data = self.recorded_data()
        if not all(k in data for k in ("seed", "val_fraction", "test_fraction")):
            raise ConfigError(f"{self.run_dir} has no splits.npz, and .hydra/config.yaml lacks the seed or "
                              "data.val_fraction/data.test_fraction that drew the split")
        text = [self.target] if self.task.classification else []
        values = [self.target_indices(c[self.target]) if self.task.classification else
                  c[self.target].to_numpy(dtype=np.float64, na_value=np.nan)
                  for c in _chunks(path, iter_chunks(path, [self.target], text))]
        y = np.concatenate(values)
        keep = (y >= 0) if self.task.classification else np.isfinite(y)
        source = np.flatnonzero(keep)
        parts = split_rows(y[keep], self.task, data["val_fraction"], data["test_fraction"], data["seed"], "csv")
        return {k: source[p] for k, p in zip(("train", "val", "test"), parts)}

    def _result_frame(self, chunk, out: "np.ndarray", keep: Sequence[str]):
        import pandas as pd

        cols: Dict[str, Any] = {c: chunk[c].to_numpy() for c in keep}
        cols["prediction"] = self._decode(out)
        if self.task.classification:
            proba = self.task.probabilities(out)
            for i, label in enumerate(self.classes):
                cols[f"proba_{label}"] = proba[:, i]
        return pd.DataFrame(cols)

    def _metrics(self, truth: "np.ndarray", out: "np.ndarray", report, where: str = "") -> Optional[Dict[str, Any]]:
        """The metrics on the rows whose target value the run knows; none (and a note) when no row has one."""
        import numpy as np

        from mlpkit import metrics

        known = truth >= 0 if self.task.classification else np.isfinite(truth)
        n_known = int(known.sum())
        skipped = int((~known).sum())
        if n_known == 0:
            what = ("a number" if not self.task.classification else
                    f"one of the run's classes ({', '.join(self.classes[:10])}"
                    f"{', ...' if len(self.classes) > 10 else ''})")
            report(f"note: no metrics: the target column {self.target!r} holds no value the run knows in any of "
                   f"the {skipped} rows (a {self.task} run needs {what})")
            return None
        pre = self.preprocessing
        result = self.task.metrics(truth[known], out[known], pre.y_mean, pre.y_std)
        note = f" ({skipped} rows without a known target value left out)" if skipped else ""
        report(f"metrics on the {n_known} rows with a target value{where}{note}: {metrics.format_metrics(result)}")
        return result

    # -- export -------------------------------------------------------------------

    def export_onnx(self, path: str | Path, overwrite: bool = False) -> Path:
        """The network as ONNX (input `inputs`: (rows, len(inputs)) float32 preprocessed features;
        output `outputs`), and beside it `<path>.json` naming the inputs in order and the outputs.
        Both are written to temporary files and renamed once whole, with the user's umask."""
        try:
            import onnxscript  # noqa: F401  (the exporter needs it)
        except ImportError:
            raise ConfigError('--export needs the export extra: pip install "mlpkit[export]"') from None
        import logging
        import warnings

        import torch

        path = Path(path)
        side = path.with_name(path.name + ".json")
        path, side = (Path(check_output(str(p), [], overwrite, self.protected_files(), "--export"))
                      for p in (path, side))
        pre = self.preprocessing
        text = json.dumps({
            "inputs": pre.inputs, "outputs": self.task.outputs_text,
            "task": self.task, "classes": self.classes, "y_mean": pre.y_mean, "y_std": pre.y_std,
            "preprocessing": "the run directory's preprocessing.json / preprocessing.skops"}, indent=2) + "\n"
        n = len(pre.inputs)
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(self.model, (torch.zeros(2, n),), None, input_names=["inputs"],
                                            output_names=["outputs"], dynamo=True, verbose=False,
                                            dynamic_shapes=({0: torch.export.Dim("rows")},))
        finally:
            quiet.setLevel(level)
        with _Output(str(path), overwrite, flag="--export", binary=True) as out:
            out.close_for(lambda tmp: program.save(tmp))
        with _Output(str(side), overwrite, flag="--export") as fh:
            try:
                fh.write(text)
            except OSError as err:
                raise ConfigError(_write_error(str(side), err, "--export")) from None
        return path


def load_run(run_dir: str | Path, checkpoint: Optional[str] = None,
             report: Optional[Callable[[str], None]] = None) -> Run:
    """A finished run directory as a Run: `.predict(df_or_path)`, `.predict_proba(df_or_path)`.
    `checkpoint`: best, last or refit (None: the one the run kept, whose test metrics metrics.json holds)."""
    return Run(run_dir, checkpoint, report)


def _read_yaml(path: Path) -> Any:
    """A small YAML file of the run (Hydra's record), or None when absent, too large or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > 2 ** 20:
            return None
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001  (a record we cannot read is a record we do not have)
        return None


def _same_content(a: str, b: str) -> bool:
    """The same file (device and inode: also through links), or two files of the same size and bytes."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino):
        return True
    if sa.st_size != sb.st_size:
        return False
    try:
        return _digest(a) == _digest(b)
    except OSError:
        return False


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _reading(path: str, read: Callable[[], Any]) -> Any:
    """read(), with what a damaged table raises (pandas, pyarrow, the OS) as one ConfigError naming it."""
    try:
        return read()
    except (ConfigError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001  (pyarrow and pandas raise many types for a damaged file)
        from mlpkit.data.table import read_error_detail

        raise ConfigError(f"input={path!r} is not a readable .csv, .tsv or .parquet table "
                          f"({read_error_detail(err, kind=True)})") from None


def _floats_as_text(frame):
    """`frame` with its float columns written out as FLOAT_FORMAT makes them (missing values as empty
    text): the characters DataFrame.to_csv(float_format=FLOAT_FORMAT) writes, 2-3x faster than its
    formatting of each value (tests compare the two)."""
    import numpy as np

    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind == "f":
            text = np.array([FLOAT_FORMAT % v for v in values.tolist()], dtype=object)
            text[np.isnan(values)] = ""
            frame[name] = text
    return frame


def _chunks(path: str, chunks):
    """The chunks of a table, a read error in any of them a ConfigError naming the file."""
    while True:
        chunk = _reading(path, lambda: next(chunks, None))
        if chunk is None:
            return
        yield chunk


def _raw_header(path: str) -> List[str]:
    """The column names as the file writes them (pandas renames a repeated `x` to `x.1`; this does not), an
    empty one as training read it (`Unnamed: <position>`: table.read_names)."""
    from mlpkit.data import table

    if table.is_parquet(path):
        return table.header_of(path)
    fmt = table.sniff_format(path, "input")
    try:
        raw = table._raw_header(path, fmt)
    except UnicodeDecodeError:
        raw = table._raw_header(path, fmt.as_encoding("cp1252"))
    return table.read_names(raw, table.header_of(path)) if any(not name.strip() for name in raw) else raw


def _missing_message(missing: Sequence[str], where: str) -> str:
    s = "s" if len(missing) > 1 else ""
    return (f"{where} lacks the feature column{s} the run was trained on: {', '.join(map(repr, missing))}")


def _report_counts(stats: Dict[str, Any], report) -> None:
    report(f"predicted {stats['rows']} rows")
    if stats["missing"]:
        report(f"{stats['missing']} missing values in feature columns were filled as in training "
               "(median, or the category of missing values)")
    if stats.get("out_of_range"):
        report(f"{stats['out_of_range']} infinite or out-of-range values in numeric columns were treated as "
               "missing, as in training")
    if stats.get("not_dates"):
        from mlpkit.data.preprocess import not_dates_text

        for name, (n, examples, fmt) in stats["not_dates"].items():
            report(f"column {name!r}: {not_dates_text(n, examples, fmt, ' of the training file')}: treated as "
                   "missing, as in training")
    if stats["unseen"]:
        detail = ", ".join(f"{c}: {n}" for c, n in stats["unseen"].items())
        report(f"categories never seen in training ({detail} rows) were encoded as the rare-category input "
               "where the column has one, else as no category (a column that is one code input: as the code its "
               "rare categories share)")


# ---------------------------------------------------------------------------
# Output files: never an input, never over an existing file unless told, whole or not at all


def default_output(input_path: str) -> str:
    """`<input stem>.predictions.csv` in the current directory; only the last suffix is removed
    (a.2024.csv -> a.2024.predictions.csv), with a compression's before it (new.csv.gz -> new.predictions.csv)."""
    name = os.path.basename(os.path.normpath(str(input_path)))
    base, last = os.path.splitext(name)
    if last.lower() in (".gz", ".bz2", ".xz", ".zst") and os.path.splitext(base)[1]:
        name = base
    stem = os.path.splitext(name)[0] if not name.startswith(".") or name.count(".") > 1 else name
    return f"{stem or name}.predictions.csv"


def _identity(path: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output(output: str, inputs: Sequence[str], overwrite: bool, protected: Sequence[str] = (),
                 flag: str = "-o") -> str:
    """The path to write for `output`, or a ConfigError: not a directory, in an existing folder, not one of
    `inputs` or `protected` (same file through any symlink or hard link), not something other than a
    regular file (a device, a pipe), not an existing file unless `overwrite`. A symlink is followed: the
    file it names is what gets replaced, never the link (renaming over /dev/stdout would replace it)."""
    if os.path.isdir(output):
        raise ConfigError(f"{flag} {output} is a directory; give the path of a file (or - for standard output)")
    target = os.path.realpath(output) if os.path.islink(output) else output
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ConfigError(f"{flag} {output}: the folder {folder} does not exist; create it first")
    mine = _identity(target)
    for other in [*inputs, *protected]:
        theirs = _identity(other)
        same = (mine is not None and mine == theirs) or \
            (mine is None and os.path.realpath(target) == os.path.realpath(other))
        if same:
            what = "the INPUT" if other in inputs else "a file of the run directory"
            raise ConfigError(f"{flag} {output} is {what} ({other}); predict.py never writes over it: give "
                              "another output path")
    if os.path.lexists(target) and not os.path.isfile(target):  # /dev/null, a pipe, a socket: never replaced
        raise ConfigError(f"{flag} {output} is not a regular file (a device, a pipe or a socket); give the path "
                          "of a file, or -o - for standard output")
    if os.path.lexists(output) and not overwrite:
        raise ConfigError(f"{flag} {output} exists; add --overwrite to replace it, or give another path")
    return target


def _write_error(target: str, err: OSError, flag: str) -> str:
    where = "standard output" if target == "-" else target
    reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or type(err).__name__)
    return f"cannot write {where} ({flag}): {reason}; nothing was written there"


def _publish(tmp: str, target: str, overwrite: bool, flag: str) -> None:
    """Rename the whole temp file to `target`; without `overwrite`, never over a file that appeared."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails, atomically, when target exists
    except FileExistsError:
        raise ConfigError(f"{flag} {target} exists; add --overwrite to replace it, or give another path") from None
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EACCES):
            raise
        if os.path.lexists(target):  # a file system without hard links: check, then rename
            raise ConfigError(f"{flag} {target} exists; add --overwrite to replace it, or give another path") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


class _Output:
    """The output file, written to a temporary name beside it and renamed at the end with the user's
    umask: an error (or Ctrl-C) leaves nothing, and a write error is one line."""

    def __init__(self, target: str, overwrite: bool = False, flag: str = "-o", binary: bool = False):
        self.target, self.overwrite, self.flag, self.binary = target, overwrite, flag, binary
        self.tmp: Optional[str] = None
        self.fh: Any = None
        self.writer: Optional[Callable[[str], None]] = None

    def __enter__(self):
        if self.target == "-":
            return sys.stdout
        folder = os.path.dirname(os.path.abspath(self.target))
        try:
            # a short prefix: a name near the file system's 255-byte limit still has room for the temporary one
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.target)[:64]}.", suffix=".tmp",
                                            dir=folder)
        except OSError as err:
            raise ConfigError(_write_error(self.target, err, self.flag)) from None
        if self.binary:
            os.close(fd)
            return self
        self.fh = os.fdopen(fd, "w", newline="", encoding="utf-8")
        return self.fh

    def close_for(self, writer: Callable[[str], None]) -> None:
        """Binary outputs: `writer(tmp_path)` writes the file itself."""
        self.writer = writer

    def __exit__(self, kind, value, tb):
        if self.tmp is None:
            if kind is None:
                try:
                    sys.stdout.flush()
                except BrokenPipeError:
                    raise
                except OSError as err:
                    raise ConfigError(_write_error("-", err, self.flag)) from None
            return False
        try:
            if kind is None:
                if self.writer is not None:
                    self.writer(self.tmp)
                if self.fh is not None:
                    self.fh.flush()
                    os.fsync(self.fh.fileno())
                    self.fh.close()
                os.chmod(self.tmp, umask_mode())
                _publish(self.tmp, self.target, self.overwrite, self.flag)
                self.tmp = None
        except OSError as err:
            raise ConfigError(_write_error(self.target, err, self.flag)) from None
        finally:
            if self.tmp is not None:
                if self.fh is not None:
                    try:
                        self.fh.close()
                    except OSError:
                        pass
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass
        return False


# ---------------------------------------------------------------------------
# The command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict.py", description="Apply a trained mlpkit run to new rows.",
        epilog="Writes one row per input row, in input order: the --keep columns, then `prediction` "
               "(a class label, or a value in the target's units), then proba_<label> per class. "
               "Never writes over INPUT or the run's files; an existing OUTPUT only with --overwrite.")
    parser.add_argument("run_dir", help="a finished run directory (outputs/runs/... or outputs/multirun/...)")
    parser.add_argument("input", nargs="?",
                        help="a .csv, .tsv or .parquet file with the columns the run was trained on")
    parser.add_argument("-o", "--output", help="output CSV ('-' for standard output; default: <input name without "
                                               "its last suffix>.predictions.csv in the current directory)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUTPUT (and the --export files) if they exist")
    parser.add_argument("--checkpoint", choices=CHECKPOINTS,
                        help="which weights (default: the ones the run's test metrics came from; refit: the model "
                             "trainer.refit=true trained on the train + val rows, which is then that default)")
    parser.add_argument("--keep", nargs="+", default=[], metavar="COL", help="input columns to copy to the output")
    parser.add_argument("--split", choices=SPLITS,
                        help="INPUT is the run's training file: predict only the rows of this split, as the run "
                             "drew it (test: the metrics of metrics.json's test)")
    parser.add_argument("--export", metavar="MODEL.onnx", help="also write the network as ONNX (needs mlpkit[export])")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # before any heavy import: --help and usage errors answer at once
    if args.input is None and args.export is None:
        parser.error("give an INPUT file to predict, or --export MODEL.onnx")
    if args.split and args.input is None:
        parser.error("--split needs INPUT, the run's training file")

    def report(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
    try:
        output = None
        if args.input is not None:  # the cheap refusals first, before the run is loaded
            from mlpkit.data.table import check_file

            source = check_file(args.input, "input")
            output = args.output or default_output(source)
            if output != "-":
                check_output(output, [source], args.overwrite)
        if args.export:
            outputs = [os.path.abspath(p) for p in (args.export, args.export + ".json")]
            if output not in (None, "-") and os.path.abspath(output) in outputs:
                raise ConfigError(f"-o {output} and --export {args.export} name the same file; give two paths")
            for target in (args.export, args.export + ".json"):
                check_output(target, [args.input] if args.input else [], args.overwrite, flag="--export")
        run = load_run(args.run_dir, args.checkpoint, report=report)
        startup.release()  # the imports and the run are loaded: collection goes on for the rows
        if args.export:
            written = run.export_onnx(args.export, overwrite=args.overwrite)
            report(f"wrote {written} and {written.name}.json")
        if args.input is not None:
            run.predict_file(args.input, output, args.keep, report=report, overwrite=args.overwrite,
                             split=args.split)
            if output != "-":
                report(f"predictions: {output}")
    except ConfigError as err:
        exit_with(err)
    except KeyboardInterrupt:
        print("predict.py: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of standard output stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
