"""Applying a finished run to new rows: `python predict.py RUN_DIR INPUT` and `mlpkit.load_run`.

A run directory holds everything needed (written by the training command): preprocessing.json
(+ preprocessing.skops for a table: the fitted ColumnTransformer), model.json (the network's
shape), checkpoints/best.pt and last.pt (weights, loaded with weights_only=True) and metrics.json
(which checkpoint the run kept). Nothing in it is unpickled, so a run directory from someone else
runs none of their code.

    run = mlpkit.load_run("outputs/runs/2026-11-22/10-00-00_data=csv,...")
    run.predict("new.csv")            # labels as written in the training file, or values
    run.predict_proba(frame)          # (N, classes) probabilities, columns in run.classes order
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from mlpkit.checkpoint import load_checkpoint
from mlpkit.data.preprocess import Preprocessing
from mlpkit.data.table import canonical_categories, check_file, header_of, iter_chunks, read_table
from mlpkit.errors import ConfigError, exit_with

FINISHED = ("completed", "early_stopped", "diverged", "pruned")
CHUNK_ROWS = 50_000


class Run:
    """A finished run, ready to predict: its preprocessing and its kept model, on the CPU."""

    def __init__(self, run_dir: str | Path, checkpoint: Optional[str] = None):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise ConfigError(f"{run_dir}: no such run directory")
        metrics_path = self.run_dir / "metrics.json"
        if not metrics_path.is_file():
            raise ConfigError(f"{run_dir} is not a finished mlpkit run (no metrics.json); train it to the end, "
                              "or continue it with python train.py resume=<run_dir>")
        try:
            self.metrics = json.loads(metrics_path.read_text())
            spec = json.loads((self.run_dir / "model.json").read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{run_dir} is not a finished mlpkit run ({type(err).__name__}: {err})") from None
        status = self.metrics.get("status")
        if status not in FINISHED:
            raise ConfigError(f"{run_dir} is not a finished run (status {status!r}); continue it with "
                              "python train.py resume=<run_dir>")
        self.preprocessing = Preprocessing.load(self.run_dir)
        self.checkpoint = checkpoint or self.metrics.get("kept") or "best"
        if self.checkpoint not in ("best", "last"):
            raise ConfigError(f"--checkpoint {self.checkpoint!r} is not known; choose one of: best, last")
        self.model = _build_model(spec)
        path = self.run_dir / "checkpoints" / f"{self.checkpoint}.pt"
        state = load_checkpoint(path)
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError) as err:
            raise ConfigError(f"{path} does not hold this run's model ({type(err).__name__})") from None
        self.model.eval()

    # -- what the run knows -----------------------------------------------------

    @property
    def task(self) -> str:
        return self.preprocessing.task

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

    def outputs(self, frame, first_line: int = 2) -> np.ndarray:
        """The network's raw outputs (logits, or standardised values) for the rows of a DataFrame."""
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise ConfigError(_missing_message(missing, "the input"))
        X = self.preprocessing.transform(frame[self.feature_columns] if self.preprocessing.kind == "array"
                                         else frame, first_line)
        with torch.no_grad():
            return self.model(torch.from_numpy(X)).float().numpy()

    def predict_proba(self, data: Any) -> np.ndarray:
        """(N, len(classes)) class probabilities for a DataFrame or a file path (classification runs)."""
        from mlpkit.metrics import class_probabilities

        if self.task == "regression":
            raise ConfigError("predict_proba: this run is a regression; use predict")
        return class_probabilities(self.outputs(self._frame(data)), self.task)

    def predict(self, data: Any) -> np.ndarray:
        """A label per row (as written in the training file) or a value in the target's units."""
        out = self.outputs(self._frame(data))
        return self._decode(out)

    def _decode(self, out: np.ndarray) -> np.ndarray:
        pre = self.preprocessing
        if self.task == "regression":
            return out[:, 0].astype(np.float64) * pre.y_std + pre.y_mean
        index = (out[:, 0] > 0).astype(np.int64) if self.task == "binary" else out.argmax(1)
        return np.asarray(self.classes, dtype=object)[index]

    def _frame(self, data: Any):
        import pandas as pd

        if isinstance(data, (str, os.PathLike)):
            return read_table(str(data), key="input")[0]
        if isinstance(data, pd.DataFrame):
            return data
        if isinstance(data, np.ndarray) and self.preprocessing.kind == "array":
            return pd.DataFrame(data, columns=self.feature_columns)
        raise ConfigError(f"predict takes a DataFrame or the path of a table, not {type(data).__name__}")

    def target_indices(self, values) -> np.ndarray:
        """The target column of new rows as class indices (-1: a label the run never saw) or floats."""
        import pandas as pd

        if self.task == "regression":
            return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        labels = canonical_categories(values, self.preprocessing.target_codes)
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup.get(v, -1) if isinstance(v, str) else -1 for v in labels], dtype=np.int64)

    # -- whole files ----------------------------------------------------------------

    def predict_file(self, path: str, output: str, keep: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS,
                     report=print) -> Dict[str, Any]:
        """Stream `path` in chunks through the run into a CSV at `output` ('-': standard output).
        Returns counts and, when the input holds the target column, the metrics on it."""
        path = check_file(path, "input")
        header = header_of(path)
        missing = [c for c in self.feature_columns if c not in header]
        if missing:
            raise ConfigError(_missing_message(missing, path))
        unknown = [c for c in keep if c not in header]
        if unknown:
            raise ConfigError(f"--keep {unknown[0]!r} is not a column of {path}; columns: {', '.join(header)}")
        has_target = bool(self.target) and self.target in header
        wanted = list(dict.fromkeys([*keep, *self.feature_columns, *([self.target] if has_target else [])]))
        text = [c.name for c in self.preprocessing.categorical] + list(keep)
        if has_target:
            text.append(self.target)
        stats: Dict[str, Any] = {"rows": 0, "unseen": {}, "missing": 0, "out_of_range": 0}
        truth: List[np.ndarray] = []
        scores: List[np.ndarray] = []
        with _Output(output) as fh:
            for chunk in iter_chunks(path, wanted, text, chunk_rows):
                first_line = 2 + stats["rows"]
                out = self.outputs(chunk, first_line)
                frame = self._result_frame(chunk, out, keep)
                frame.to_csv(fh, header=stats["rows"] == 0, index=False, float_format="%.9g")
                stats["rows"] += len(chunk)
                stats["missing"] += int(chunk[self.feature_columns].isna().sum().sum())
                stats["out_of_range"] += sum(n for n, _ in self.preprocessing.out_of_range(chunk).values())
                for col, n in self.preprocessing.unseen(chunk).items():
                    stats["unseen"][col] = stats["unseen"].get(col, 0) + n
                if has_target:
                    truth.append(self.target_indices(chunk[self.target]))
                    scores.append(out)
        if stats["rows"] == 0:
            raise ConfigError(f"input {path!r} has a header but no data rows")
        _report_counts(stats, report)
        if has_target:
            stats["metrics"] = self._metrics(np.concatenate(truth), np.concatenate(scores), report)
        return stats

    def _result_frame(self, chunk, out: np.ndarray, keep: Sequence[str]):
        import pandas as pd

        from mlpkit.metrics import class_probabilities

        cols: Dict[str, Any] = {c: chunk[c].to_numpy() for c in keep}
        cols["prediction"] = self._decode(out)
        if self.task != "regression":
            proba = class_probabilities(out, self.task)
            for i, label in enumerate(self.classes):
                cols[f"proba_{label}"] = proba[:, i]
        return pd.DataFrame(cols)

    def _metrics(self, truth: np.ndarray, out: np.ndarray, report) -> Dict[str, Any]:
        from mlpkit import metrics

        if self.task == "regression":
            known = np.isfinite(truth)
            pre = self.preprocessing
            result = metrics.regression_metrics(truth[known], out[known, 0] * pre.y_std + pre.y_mean)
        else:
            known = truth >= 0
            result = metrics.classification_metrics(truth[known], metrics.class_probabilities(out[known], self.task))
        skipped = int((~known).sum())
        note = f" ({skipped} rows without a known target value left out)" if skipped else ""
        report(f"metrics on the {int(known.sum())} rows with a target value{note}: {metrics.format_metrics(result)}")
        return result

    # -- export -------------------------------------------------------------------

    def export_onnx(self, path: str | Path) -> Path:
        """The network as ONNX (input `inputs`: (rows, len(inputs)) float32 preprocessed features;
        output `outputs`), and beside it `<path>.json` naming the inputs in order and the outputs."""
        try:
            import onnxscript  # noqa: F401  (the exporter needs it)
        except ImportError:
            raise ConfigError('--export needs the export extra: pip install "mlpkit[export]"') from None
        from mlpkit.checkpoint import write_json

        path = Path(path)
        n = len(self.preprocessing.inputs)
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(self.model, (torch.zeros(2, n),), None, input_names=["inputs"],
                                            output_names=["outputs"], dynamo=True, verbose=False,
                                            dynamic_shapes=({0: torch.export.Dim("rows")},))
            program.save(str(path))
        finally:
            quiet.setLevel(level)
        pre = self.preprocessing
        write_json(path.with_name(path.name + ".json"), {
            "inputs": pre.inputs, "outputs": ("logits (softmax for probabilities)" if self.task == "multiclass" else
                                             "one logit (sigmoid for the probability of the second class)"
                                             if self.task == "binary" else "standardised value: value * y_std + y_mean"),
            "task": self.task, "classes": self.classes, "y_mean": pre.y_mean, "y_std": pre.y_std,
            "preprocessing": "the run directory's preprocessing.json / preprocessing.skops"})
        return path


def load_run(run_dir: str | Path, checkpoint: Optional[str] = None) -> Run:
    """A finished run directory as a Run: `.predict(df_or_path)`, `.predict_proba(df_or_path)`."""
    return Run(run_dir, checkpoint)


def _build_model(spec: Dict[str, Any]) -> torch.nn.Module:
    try:
        if spec.get("format") != "mlpkit-model-1":
            raise ValueError(f"format {spec.get('format')!r}")
        from mlpkit.model import MODELS

        return MODELS[spec["model"]](**spec["kwargs"])
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"model.json does not describe an mlpkit model ({err})") from None


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
    if stats["unseen"]:
        detail = ", ".join(f"{c}: {n}" for c, n in stats["unseen"].items())
        report(f"categories never seen in training ({detail} rows) were encoded as the rare-category input "
               "where the column has one, else as no category")


class _Output:
    """The output file, written to a temporary name and renamed at the end: an error leaves nothing."""

    def __init__(self, target: str):
        self.target = target
        self.tmp: Optional[str] = None

    def __enter__(self):
        if self.target == "-":
            return sys.stdout
        folder = os.path.dirname(os.path.abspath(self.target))
        if not os.path.isdir(folder):
            raise ConfigError(f"-o {self.target}: the folder {folder} does not exist")
        fd, self.tmp = tempfile.mkstemp(prefix=".predictions.", suffix=".tmp", dir=folder)
        self.fh = os.fdopen(fd, "w", newline="")
        return self.fh

    def __exit__(self, kind, value, tb):
        if self.tmp is None:
            sys.stdout.flush()
            return False
        self.fh.close()
        if kind is None:
            os.replace(self.tmp, self.target)
        else:
            os.unlink(self.tmp)
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="predict.py", description="Apply a trained mlpkit run to new rows.",
        epilog="Writes one row per input row, in input order: the --keep columns, then `prediction` "
               "(a class label, or a value in the target's units), then proba_<label> per class.")
    parser.add_argument("run_dir", help="a finished run directory (outputs/runs/... or outputs/multirun/...)")
    parser.add_argument("input", nargs="?", help="a .csv, .tsv or .parquet file with the columns the run was trained on")
    parser.add_argument("-o", "--output", help="output CSV ('-' for standard output; default: "
                                               "<input stem>.predictions.csv in the current directory)")
    parser.add_argument("--checkpoint", choices=("best", "last"),
                        help="which weights (default: the ones the run's test metrics came from)")
    parser.add_argument("--keep", nargs="+", default=[], metavar="COL", help="input columns to copy to the output")
    parser.add_argument("--export", metavar="MODEL.onnx", help="also write the network as ONNX (needs mlpkit[export])")
    args = parser.parse_args(argv)
    if args.input is None and args.export is None:
        parser.error("give an INPUT file to predict, or --export MODEL.onnx")
    try:
        run = load_run(args.run_dir, args.checkpoint)
        if args.export:
            written = run.export_onnx(args.export)
            print(f"wrote {written} and {written.name}.json", file=sys.stderr)
        if args.input is not None:
            output = args.output or f"{Path(args.input).name.split('.')[0]}.predictions.csv"
            run.predict_file(args.input, output, args.keep,
                             report=lambda msg: print(msg, file=sys.stderr, flush=True))
            if output != "-":
                print(f"predictions: {output}", file=sys.stderr)
    except ConfigError as err:
        exit_with(err)
    except KeyboardInterrupt:
        print("predict.py: interrupted; no output was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of standard output stopped early (e.g. `| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
