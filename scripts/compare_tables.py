"""mlpkit against scikit-learn's Pipeline + MLP, gradient-boosted trees and RealMLP-TD on a user's own
tables, on the same rows.

    python scripts/compare_tables.py penguins.csv:species Chile.csv:vote:"Unnamed: 0" --seeds 0 1 2
    python scripts/compare_tables.py --manifest tables.json --seeds 0 1 2 --out docs/tables_vs_sklearn.md
    python scripts/compare_tables.py --manifest tables.json --results docs/tables_vs_peers.json   # + raw results
    python scripts/compare_tables.py --manifest tables.json --reuse-peers docs/tables_vs_peers.json \
        --stored-peers-only --results new.json        # only mlpkit trained again, the peers as stored

A table is `path:target[:drop1,drop2]` (the path may not hold `:`), or an entry of a JSON
manifest: a list of {"path", "target", "drop" (list, optional), "name" (optional), "source"
(optional, printed under the table)}.

For each table and seed:

1. `python train.py data=csv data.path=... data.target=... [data.drop=[...]] seed=S
   hydra.run.dir=<tmp>` runs as a subprocess with mlpkit's defaults (nothing tuned); its
   metrics.json gives mlpkit's test metrics, its splits.npz the train/val/test rows (0-based data
   rows of the file), its preprocessing.json the feature columns it used and their kinds.
2. The table is read with a plain `pd.read_csv(path)`, as a user would; scikit-learn gets the
   same feature columns (kind != "dropped"): numeric ones through SimpleImputer(median,
   add_indicator=True) + StandardScaler, category/boolean ones (as text) through
   SimpleImputer(constant "missing") + OneHotEncoder(handle_unknown="ignore"), then
   MLPClassifier / MLPRegressor with scikit-learn's defaults and random_state=S. It is fitted on
   the run's train rows only (`--sk-rows train`, the default: the rows mlpkit's weights are fitted
   on; mlpkit also looks at the val rows for early stopping) or on train + val rows
   (`--sk-rows trainval`), and scored on the run's test rows with scikit-learn's metric functions
   (the ones mlpkit's metrics.json uses).
3. `python predict.py <run_dir> <the same file> -o <tmp>.csv` is run too (`--no-predict` skips
   it); its predictions on the test rows are scored and must give mlpkit's test accuracy / RMSE.

4. The peers (`--peers`, default all; `--threads` each, default 2), on the same feature columns
   (numbers as float with NaN, categories as pandas categories of the fit rows' values; a date
   column as days since 1970, as mlpkit reads it), fitted with their defaults:
   `mlp` (step 2), `hgb` (HistGradientBoosting, categorical_features given), `lightgbm`
   (LGBMClassifier/Regressor, pandas category dtype), `catboost` (cat_features given, missing
   categories as their own "__missing__" category, verbose off) fitted on the train + val rows (no
   early stopping on our val rows; HistGradientBoosting's own default early stopping holds out 10%
   of them above 10,000 rows), and `realmlp` (pytabkit's RealMLP_TD_Classifier/Regressor) fitted
   on the train rows with the val rows as its validation set (it keeps its best epoch on them, as
   mlpkit does; numeric NaN, which it refuses, imputed by the train median plus a 0/1 indicator).
   lightgbm, catboost and pytabkit come with `pip install -e ".[bench]"`; mlpkit never imports them.
   Each one's `fit` seconds are recorded.

`--results FILE` merges each table/seed's raw results (mlpkit's test metrics, each peer's, the
rows' sha256 and the feature columns) into a JSON file; `--reuse-peers FILE` takes the peers from
such a file where they were fitted on the same rows (same seed and splits.npz) and fits only the
missing ones (`--stored-peers-only`: none), so that the mlpkit column can be redone alone.

Failures (train.py refusing or crashing, predict.py failing, a mismatch, a peer failing) are printed
with the exact command and the end of its output, and the table goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CLASSIFICATION = ("binary", "multiclass")


# ---------------------------------------------------------------------------
# Tables


def parse_spec(spec: str) -> Dict[str, Any]:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise SystemExit(f"compare_tables: {spec!r} is not path:target[:drop1,drop2]")
    drop = [d for d in parts[2].split(",") if d] if len(parts) == 3 else []
    return {"path": parts[0], "target": parts[1], "drop": drop}


def load_manifest(path: str) -> List[Dict[str, Any]]:
    entries = json.loads(Path(path).read_text())
    base = Path(path).resolve().parent
    out = []
    for e in entries:
        e = dict(e)
        p = Path(e["path"])
        e["path"] = str(p if p.is_absolute() else base / p)
        e.setdefault("drop", [])
        out.append(e)
    return out


def hydra_list(names: List[str]) -> str:
    """data.drop=[...] as a Hydra override value: every name quoted (names may hold spaces, `:`)."""
    quoted = []
    for n in names:
        q = n.replace("\\", "\\\\").replace("'", "\\'")
        quoted.append(f"'{q}'")
    return "[" + ",".join(quoted) + "]"


def describe(df, target: str, used: List[str]) -> Dict[str, Any]:
    """Rows with a target, the feature columns mlpkit used, how many of them are text (or
    booleans) in a plain pd.read_csv, and the missing cells in them (rows with a target)."""
    import pandas as pd

    keep = df[target].notna()
    text = [c for c in used if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    return {"rows_file": len(df), "rows": int(keep.sum()), "columns_file": len(df.columns) - 1,
            "columns": len(used), "text_columns": len(text),
            "missing_cells": int(df.loc[keep, used].isna().sum().sum())}


# ---------------------------------------------------------------------------
# Runs


def run_cmd(cmd: List[str], timeout: int) -> Dict[str, Any]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "HYDRA_FULL_ERROR": "1"})
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        rc, out = -9, f"timed out after {timeout} s\n{err.stdout or ''}{err.stderr or ''}"
    return {"rc": rc, "output": out, "seconds": time.perf_counter() - t0, "command": shlex.join(cmd)}


def train_mlpkit(table: Dict[str, Any], seed: int, run_dir: Path, timeout: int, reuse: bool = False,
                 overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    cmd = [sys.executable, "train.py", "data=csv", f"data.path={table['path']}", f"data.target={table['target']}"]
    if table.get("drop"):
        cmd.append(f"data.drop={hydra_list(table['drop'])}")
    cmd += list(overrides or []) + [f"seed={seed}", f"hydra.run.dir={run_dir}"]
    if reuse and (run_dir / "metrics.json").is_file():
        wall = run_dir / "wall_seconds.txt"
        res = {"rc": 0, "output": "", "command": shlex.join(cmd),
               "seconds": float(wall.read_text()) if wall.is_file() else float("nan")}
    else:
        res = run_cmd(cmd, timeout)
        if res["rc"] == 0:
            (run_dir / "wall_seconds.txt").write_text(f"{res['seconds']:.3f}\n")
    if res["rc"] == 0:
        try:
            res["metrics"] = json.loads((run_dir / "metrics.json").read_text())
            res["pre"] = json.loads((run_dir / "preprocessing.json").read_text())
            with np.load(run_dir / "splits.npz", allow_pickle=False) as z:
                res["splits"] = {k: np.asarray(z[k]) for k in ("train", "val", "test")}
        except Exception as err:  # a finished run without its files is a failure to report
            res["rc"] = -1
            res["output"] += f"\ncompare_tables: the run's files are unreadable: {type(err).__name__}: {err}"
    return res


def feature_frame(df, pre: Dict[str, Any]):
    """The run's feature columns (kind != "dropped") as the peers get them: numeric ones as float64
    (a date column as days since 1970-01-01, as mlpkit reads it; NaN where missing), category and
    boolean ones as text with NaN where missing. Returns (X, numeric names, categorical names)."""
    import pandas as pd

    cols = [c for c in pre["columns"] if c["kind"] != "dropped"]
    numeric = [c["name"] for c in cols if c["kind"] == "numeric"]
    categorical = [c["name"] for c in cols if c["kind"] in ("category", "boolean")]
    X = pd.DataFrame(index=df.index)
    for c in cols:
        s = df[c["name"]]
        if c["kind"] == "numeric" and c.get("date_format"):
            when = pd.to_datetime(s.astype(str).str.strip().where(s.notna()), format=c["date_format"], errors="coerce")
            X[c["name"]] = ((when - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)).astype("float64")
        elif c["kind"] == "numeric":
            X[c["name"]] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif c["kind"] in ("category", "boolean"):  # as text, missing kept as NaN
            X[c["name"]] = pd.Series(np.where(s.notna(), s.astype(str), np.nan), index=df.index, dtype=object)
    return X, numeric, categorical


def fit_rows_of(splits: Dict[str, np.ndarray], rows: str) -> np.ndarray:
    return splits["train"] if rows == "train" else np.concatenate([splits["train"], splits["val"]])


def targets(y_all, rows: np.ndarray, task: str) -> np.ndarray:
    y = y_all.iloc[rows]
    return y.astype(str).to_numpy() if task in CLASSIFICATION else y.astype(float).to_numpy()


def sklearn_fit(df, pre: Dict[str, Any], splits: Dict[str, np.ndarray], seed: int, rows: str,
                scale_y: bool = False) -> Dict[str, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, numeric, categorical = feature_frame(df, pre)
    task = pre["task"]
    y_all = df[pre["target"]]
    parts = []
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                           StandardScaler()), numeric))
    if categorical:
        parts.append(("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                           OneHotEncoder(handle_unknown="ignore")), categorical))
    est = MLPClassifier(random_state=seed) if task in CLASSIFICATION else MLPRegressor(random_state=seed)
    model = Pipeline([("pre", ColumnTransformer(parts)), ("mlp", est)])
    pipeline = model
    if scale_y and task not in CLASSIFICATION:  # not scikit-learn's default: the target standardised on the fit rows
        from sklearn.compose import TransformedTargetRegressor

        model = TransformedTargetRegressor(regressor=pipeline, transformer=StandardScaler())
    fit_rows, test_rows = fit_rows_of(splits, rows), splits["test"]
    y_fit, y_test = targets(y_all, fit_rows, task), targets(y_all, test_rows, task)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X.iloc[fit_rows], y_fit)
    fit_s = time.perf_counter() - t0
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    Xt = X.iloc[test_rows]
    if task in CLASSIFICATION:
        proba = model.predict_proba(Xt)
        classes = [str(c) for c in model.classes_]
        metrics = classification_metrics(y_test, np.asarray(classes)[proba.argmax(1)], proba, classes)
    else:
        metrics = regression_metrics(y_test, model.predict(Xt))
    fitted = model.regressor_ if hasattr(model, "regressor_") else model
    metrics.update(seconds=time.perf_counter() - t0, fit_seconds=fit_s, converged=converged,
                   n_iter=int(fitted.named_steps["mlp"].n_iter_),
                   inputs=int(len(fitted.named_steps["pre"].get_feature_names_out())))
    return metrics


# ---------------------------------------------------------------------------
# Peers: gradient-boosted trees and RealMLP-TD on the run's rows (pip install -e ".[bench]")

PEERS = {  # name -> (label in the report, the package it needs beyond mlpkit's own)
    "mlp": ("scikit-learn MLP", None),
    "hgb": ("HistGradientBoosting", None),
    "lightgbm": ("LightGBM", "lightgbm"),
    "catboost": ("CatBoost", "catboost"),
    "realmlp": ("RealMLP-TD", "pytabkit"),
}


def missing_peers(peers: List[str]) -> Optional[str]:
    """One line naming the chosen peers whose package is not installed (None when all are)."""
    import importlib.util

    lacking = [(p, PEERS[p][1]) for p in peers if PEERS[p][1] and importlib.util.find_spec(PEERS[p][1]) is None]
    if not lacking:
        return None
    return (f"compare_tables: --peers {', '.join(p for p, _ in lacking)} need{'s' if len(lacking) == 1 else ''} "
            f"{', '.join(m for _, m in lacking)}, not installed here: pip install -e \".[bench]\" "
            "(or leave them out with --peers)")


def category_frame(X, categorical: List[str], fit_rows: np.ndarray, fill: Optional[str] = None):
    """X with each categorical column as a pandas category whose categories are the values seen in
    the fit rows (a value seen only in other rows becomes missing); `fill` replaces missing values
    by a category of that name instead (CatBoost refuses NaN in a categorical column)."""
    import pandas as pd

    X = X.copy()
    for name in categorical:
        seen = sorted(set(X[name].iloc[fit_rows].dropna()))
        col = pd.Categorical(X[name].where(X[name].isin(seen)), categories=seen)
        if fill is not None:
            col = col.add_categories([fill]).fillna(fill)
        X[name] = col
    return X


def impute_numeric(X, numeric: List[str], fit_rows: np.ndarray):
    """RealMLP-TD refuses NaN in numeric columns: the fit rows' median in their place and a 0/1
    column `<name>__missing` beside each column with a missing value (scikit-learn's
    SimpleImputer(median, add_indicator=True), as in the MLP pipeline)."""
    X = X.copy()
    for name in numeric:
        miss = X[name].isna()
        if miss.any():
            med = X[name].iloc[fit_rows].median()
            X[name] = X[name].fillna(0.0 if np.isnan(med) else med)
            X[f"{name}__missing"] = miss.astype("float64")
    return X


def peer_fit(peer: str, df, pre: Dict[str, Any], splits: Dict[str, np.ndarray], seed: int, threads: int) -> Dict[str, Any]:
    """Fit one peer with its defaults and score it on the test rows.

    The trees (hgb, lightgbm, catboost) are fitted on the train + val rows with their defaults, no
    early stopping on our val rows (HistGradientBoosting's default early_stopping="auto" holds out 10%
    of what it is given when it has more than 10,000 rows; LightGBM 100 rounds; CatBoost 1000).
    RealMLP-TD is fitted on the train rows with the val rows as its validation set (X_val, y_val): it
    keeps its best epoch on them, as mlpkit does with its early stopping."""
    from threadpoolctl import threadpool_limits

    X, numeric, categorical = feature_frame(df, pre)
    task = pre["task"]
    y_all = df[pre["target"]]
    clf = task in CLASSIFICATION
    trainval, test = fit_rows_of(splits, "trainval"), splits["test"]
    fit_rows = splits["train"] if peer == "realmlp" else trainval
    y_fit, y_test = targets(y_all, fit_rows, task), targets(y_all, test, task)
    classes = sorted(set(y_fit)) if clf else []
    code = {c: i for i, c in enumerate(classes)}
    encode = (lambda y: np.asarray([code.get(v, -1) for v in y])) if clf else (lambda y: y)
    fit_kw: Dict[str, Any] = {}
    note = ""
    if peer == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        X = category_frame(X, categorical, fit_rows)
        wide = [n for n in categorical if len(X[n].cat.categories) > 255]  # over HGB's limit of categories
        for n in wide:
            X[n] = X[n].cat.codes.astype("float64").where(X[n].notna())
        if wide:
            note = f"as ordinal codes (more than 255 categories): {', '.join(wide)}"
        cats = [n for n in categorical if n not in wide]
        kind = HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor
        model = kind(random_state=seed, categorical_features=cats or None)
    elif peer == "lightgbm":
        import lightgbm

        X = category_frame(X, categorical, fit_rows)
        kind = lightgbm.LGBMClassifier if clf else lightgbm.LGBMRegressor
        model = kind(random_state=seed, n_jobs=threads, verbose=-1)
    elif peer == "catboost":
        import catboost

        X = category_frame(X, categorical, fit_rows, fill="__missing__")
        kind = catboost.CatBoostClassifier if clf else catboost.CatBoostRegressor
        model = kind(random_seed=seed, thread_count=threads, verbose=False, allow_writing_files=False,
                     cat_features=categorical)
    elif peer == "realmlp":
        from pytabkit import RealMLP_TD_Classifier, RealMLP_TD_Regressor

        X = impute_numeric(category_frame(X, categorical, fit_rows), numeric, fit_rows)
        kind = RealMLP_TD_Classifier if clf else RealMLP_TD_Regressor
        model = kind(random_state=seed, n_threads=threads, device="cpu", verbosity=0)
        val = splits["val"]
        fit_kw = {"X_val": X.iloc[val], "y_val": encode(targets(y_all, val, task)),
                  "cat_col_names": categorical}
    else:
        raise ValueError(f"unknown peer {peer!r}")
    with threadpool_limits(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model.fit(X.iloc[fit_rows], encode(y_fit), **fit_kw)
        fit_s = time.perf_counter() - t0
        Xt = X.iloc[test]
        if clf:
            raw = np.asarray(model.predict_proba(Xt))
            proba = np.zeros((len(test), len(classes)))
            proba[:, np.asarray(model.classes_).astype(int)] = raw
            metrics = classification_metrics(y_test, np.asarray(classes)[proba.argmax(1)], proba, classes)
        else:
            metrics = regression_metrics(y_test, np.asarray(model.predict(Xt), dtype=float).reshape(-1))
    metrics.update(fit_seconds=fit_s, seconds=time.perf_counter() - t0, rows_fit=int(len(fit_rows)))
    if note:
        metrics["note"] = note
    return metrics


def splits_digest(splits: Dict[str, np.ndarray]) -> str:
    """sha256 of the train / val / test row numbers: peers' results are reused only on the same rows."""
    import hashlib

    h = hashlib.sha256()
    for k in ("train", "val", "test"):
        h.update(k.encode() + np.asarray(splits[k], dtype=np.int64).tobytes())
    return h.hexdigest()


def peer_config(peer: str, args) -> str:
    """What a peer's result depends on beyond the rows, seed and columns (a stored result with another
    config is not reused)."""
    if peer == "mlp":
        return f"rows={args.sk_rows},scale_y={bool(args.sk_scale_y)}"
    return f"{peer} defaults; package {package_version(PEERS[peer][1] or 'scikit-learn')}"


def package_version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{pkg} {version(pkg)}"
    except PackageNotFoundError:
        return f"{pkg} (not installed)"


def stored_peers(results: Optional[Dict[str, Any]], name: str, seed: int, digest: str,
                 used: List[str]) -> Tuple[Dict[str, Any], Optional[str]]:
    """The peers' results stored for this table and seed in a results file when they were fitted on
    the same train / val / test rows, and a note when they are not reusable (other rows) or were
    fitted on other feature columns than mlpkit uses now (reused all the same, and said so)."""
    for r in (results or {}).get("results", []):
        if r["table"] == name and r["seed"] == seed:
            if r.get("splits_sha256") != digest:
                return {}, "the stored peers were fitted on other train/val/test rows: not reused"
            if r.get("used") != used:
                return r.get("peers", {}), (f"the stored peers were fitted on the columns {r.get('used')}, "
                                            f"mlpkit now uses {used}")
            return r.get("peers", {}), None
    return {}, None


def classification_metrics(y_true, pred, proba, classes) -> Dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true).astype(str)
    out = {"accuracy": float(accuracy_score(y_true, pred)),
           "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
           "f1_macro": float(f1_score(y_true, pred, labels=classes, average="macro", zero_division=0)),
           "roc_auc": float("nan")}
    try:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            out["roc_auc"] = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))
    except ValueError:  # a class absent from the test rows
        pass
    return out


def regression_metrics(y_true, pred) -> Dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"rmse": float(np.sqrt(mean_squared_error(y_true, pred))),
            "mae": float(mean_absolute_error(y_true, pred)), "r2": float(r2_score(y_true, pred))}


def check_predict(table: Dict[str, Any], run_dir: Path, df, res: Dict[str, Any], timeout: int) -> Optional[str]:
    """None when predict.py applies the run to its own file and reproduces its test metric."""
    import pandas as pd

    out = run_dir / "predict_check.csv"
    # --overwrite: the file is the check's own, left by a previous report over the same kept runs
    p = run_cmd([sys.executable, "predict.py", str(run_dir), table["path"], "-o", str(out), "--overwrite"], timeout)
    if p["rc"] != 0:
        return f"`{p['command']}` exited {p['rc']}:\n{tail(p['output'])}"
    pred = pd.read_csv(out, keep_default_na=False)
    if len(pred) != len(df):
        return f"`{p['command']}` wrote {len(pred)} rows for a file of {len(df)} data rows"
    test = res["splits"]["test"]
    task = res["pre"]["task"]
    y = df[res["pre"]["target"]].iloc[test]
    want = res["metrics"]["test"]
    if task in CLASSIFICATION:
        got = float(np.mean(labels(pred["prediction"].iloc[test]) == labels(y)))
        key = "accuracy"
    else:
        got = float(np.sqrt(np.mean((pd.to_numeric(pred["prediction"].iloc[test]).to_numpy() - y.to_numpy(float)) ** 2)))
        key = "rmse"
    if not np.isclose(got, want[key], rtol=1e-3, atol=1e-4):
        return (f"`{p['command']}`: its predictions on the run's test rows give {key} {got:.4f}, "
                f"metrics.json says {want[key]:.4f}")
    return None


def labels(values) -> np.ndarray:
    """Class labels as comparable text: 1, 1.0 and "1" all as "1"."""
    out = []
    for v in values:
        t = str(v).strip()
        try:
            f = float(t)
            if np.isfinite(f) and f == round(f):
                t = str(int(f))
        except ValueError:
            pass
        out.append(t)
    return np.asarray(out)


def tail(text: str, n: int = 12) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return "\n".join("    " + l for l in lines[-n:])


# ---------------------------------------------------------------------------
# Report


def fmt(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", nargs="*", help="path:target[:drop1,drop2]")
    ap.add_argument("--manifest", help="a JSON list of {path, target, drop, name, source}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sk-rows", choices=("train", "trainval"), default="train",
                    help="rows scikit-learn is fitted on (default: the run's train rows)")
    ap.add_argument("--sk-scale-y", action="store_true",
                    help="regression: wrap scikit-learn's pipeline in TransformedTargetRegressor(StandardScaler()) "
                         "(not its default; mlpkit standardises regression targets)")
    ap.add_argument("--no-predict", action="store_true", help="skip the predict.py check")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per train.py / predict.py")
    ap.add_argument("--out", help="also write the markdown here")
    ap.add_argument("--keep-runs", help="keep the run directories under this folder")
    ap.add_argument("--reuse", action="store_true",
                    help="with --keep-runs: use a finished run found there instead of training it again")
    ap.add_argument("--no-train", action="store_true",
                    help="with --keep-runs: train nothing, take the finished runs found there and skip the "
                         "tables/seeds that have none (with --stored-peers-only: a report from stored results)")
    ap.add_argument("--peers", nargs="*", choices=list(PEERS), default=list(PEERS),
                    help="the other systems, on the run's rows (default: all; lightgbm, catboost and realmlp need "
                         "pip install -e \".[bench]\")")
    ap.add_argument("--threads", type=int, default=2, help="threads each peer may use (default 2)")
    ap.add_argument("--mlpkit-overrides", nargs="*", default=[],
                    help="extra train.py overrides for the mlpkit column (default: none, mlpkit's defaults)")
    ap.add_argument("--results", help="merge every table/seed's raw results (mlpkit and peers) into this JSON file")
    ap.add_argument("--reuse-peers", metavar="JSON",
                    help="take the peers' results from this results file where it has them on the same rows and "
                         "columns (the same seed, splits and feature columns); fit only the others")
    ap.add_argument("--stored-peers-only", action="store_true",
                    help="with --reuse-peers: fit no peer at all, report what the file holds (only mlpkit is run)")
    args = ap.parse_args(argv)
    lacking = None if args.stored_peers_only else missing_peers(args.peers)
    if lacking:
        print(lacking, file=sys.stderr)
        return 2

    import pandas as pd

    tables = [parse_spec(s) for s in args.tables] + (load_manifest(args.manifest) if args.manifest else [])
    if not tables:
        ap.error("no table given")
    runs_root = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="compare_tables_"))
    stored = json.loads(Path(args.reuse_peers).read_text()) if args.reuse_peers else None
    records: List[Dict[str, Any]] = []
    rows, failures = [], []
    for table in tables:
        name = table.get("name") or Path(table["path"]).stem
        df = pd.read_csv(table["path"])
        per_seed = []
        for seed in args.seeds:
            run_dir = runs_root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')}_seed{seed}"
            if args.no_train and not (run_dir / "metrics.json").is_file():
                print(f"[{name} seed {seed}] no finished run in {runs_root}: skipped (--no-train)", file=sys.stderr)
                continue
            res = train_mlpkit(table, seed, run_dir, args.timeout, args.reuse or args.no_train, args.mlpkit_overrides)
            if res["rc"] != 0:
                failures.append(f"**{name}**, seed {seed}: `{res['command']}` exited {res['rc']}:\n"
                                f"```\n{tail(res['output'], 25)}\n```")
                print(f"[{name} seed {seed}] train.py FAILED (exit {res['rc']})", file=sys.stderr, flush=True)
                continue
            task = res["pre"]["task"]
            key = "accuracy" if task in CLASSIFICATION else "rmse"
            m = res["metrics"]
            used = [c["name"] for c in res["pre"]["columns"] if c["kind"] != "dropped"]
            digest = splits_digest(res["splits"])
            old, note = stored_peers(stored, name, seed, digest, used)
            if note:
                failures.append(f"**{name}**, seed {seed}: {note}")
                print(f"[{name} seed {seed}] {note}", file=sys.stderr, flush=True)
            peers: Dict[str, Any] = {}
            log = [f"mlpkit {key} {m['test'][key]:.4f} ({res['seconds']:.1f} s)"]
            for peer in args.peers:
                config = peer_config(peer, args)
                if peer in old and (args.stored_peers_only or old[peer].get("config") == config):
                    peers[peer] = old[peer]
                    log.append(f"{peer} {old[peer][key]:.4f} (stored)")
                    continue
                if args.stored_peers_only:
                    continue
                try:
                    if peer == "mlp":
                        out = sklearn_fit(df, res["pre"], res["splits"], seed, args.sk_rows, args.sk_scale_y)
                    else:
                        out = peer_fit(peer, df, res["pre"], res["splits"], seed, args.threads)
                except Exception as err:  # one peer failing on one table is reported, the rest goes on
                    failures.append(f"**{name}**, seed {seed}: {PEERS[peer][0]} failed: {type(err).__name__}: {err}")
                    print(f"[{name} seed {seed}] {peer} FAILED: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                    continue
                peers[peer] = {**out, "config": config}
                log.append(f"{peer} {out[key]:.4f} ({out['fit_seconds']:.1f} s)")
            problem = None if args.no_predict else check_predict(table, run_dir, df, res, args.timeout)
            if problem:
                failures.append(f"**{name}**, seed {seed}: {problem}")
            per_seed.append({"seed": seed, "task": task, "mlpkit": m["test"], "sklearn": peers.get("mlp"),
                             "peers": peers,
                             "mlpkit_s": res["seconds"], "mlpkit_run_s": m.get("seconds"),
                             "epochs": m.get("epochs_run"), "status": m.get("status"),
                             "inputs": len(res["pre"]["inputs"]),
                             "used": used,
                             "dropped": {c["name"]: c["reason"] for c in res["pre"]["columns"]
                                         if c["kind"] == "dropped"},
                             "rows": {k: len(v) for k, v in res["splits"].items()}})
            records.append({"table": name, "path": table["path"], "target": table["target"], "seed": seed,
                            "task": task, "splits_sha256": digest, "used": used,
                            "rows": per_seed[-1]["rows"],
                            "mlpkit": {"test": m["test"], "seconds": res["seconds"], "run_seconds": m.get("seconds"),
                                       "epochs": m.get("epochs_run"), "status": m.get("status"),
                                       "overrides": args.mlpkit_overrides, "commit": git_commit()},
                            "peers": peers})
            if args.results:  # after each table and seed: a long panel stopped midway keeps what it measured
                merge_results(Path(args.results), records[-1:])
            print(f"[{name} seed {seed}] {task}: " + ", ".join(log), file=sys.stderr, flush=True)
        if per_seed:
            info = describe(df, table["target"], per_seed[0]["used"])
            rows.append((name, table, info, per_seed))
    md = report(rows, failures, args)
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    return 1 if failures else 0


def git_commit() -> Optional[str]:
    """The commit of the checkout train.py runs from (None outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def merge_results(path: Path, records: List[Dict[str, Any]]) -> None:
    """Write `records` into the results file at `path`. An entry for the same table and seed is
    replaced by the new one; when both are on the same rows, the old entry's peers that the new one
    lacks are kept (so peers can be added in several commands, RealMLP-TD later)."""
    data = json.loads(path.read_text()) if path.is_file() else {"results": []}
    old = {(r["table"], r["seed"]): r for r in data.get("results", [])}
    for r in records:
        prev = old.get((r["table"], r["seed"]))
        if prev and prev.get("splits_sha256") == r["splits_sha256"]:
            r["peers"] = {**prev.get("peers", {}), **r["peers"]}
        old[(r["table"], r["seed"])] = r
    data["results"] = list(old.values())
    data["versions"] = versions()
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {sys.version.split()[0]}"]
    for pkg in ("mlpkit", "torch", "scikit-learn", "pandas", "numpy", "hydra-core", "lightgbm", "catboost", "pytabkit"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def report(rows, failures, args) -> str:
    sk = "mlp" in args.peers
    lines = [f"Seeds {', '.join(map(str, args.seeds))}"
             + (f"; scikit-learn fitted on the run's {'train rows' if args.sk_rows == 'train' else 'train + val rows'}"
                if sk else "")
             + ("; regression targets standardised for scikit-learn (TransformedTargetRegressor)"
                if sk and args.sk_scale_y else "")
             + "; means over the seeds that ran."
             + (f" mlpkit with {' '.join(args.mlpkit_overrides)}." if args.mlpkit_overrides else ""),
             ""]
    sk_rows = [(n, t, i, [s for s in ps if s["sklearn"]]) for n, t, i, ps in rows]
    sk_rows = [r for r in sk_rows if r[3]]
    if sk_rows:
        lines += sklearn_report(sk_rows)
    others = [p for p in args.peers if p != "mlp"]
    if others:
        lines += ["", "## Against the trees and RealMLP-TD", ""] + peers_report(rows, ["mlpkit"] + list(args.peers))
    sources = [f"- **{name}**: `{table['path']}`, target `{table['target']}`"
               + (f", data.drop={table['drop']}" if table.get("drop") else "")
               + (f"; from {table['source']}" if table.get("source") else "")
               + (f" ({table['why_drop']})" if table.get("why_drop") else "")
               for name, table, _, _ in rows]
    lines += ["", "Tables:", ""] + sources
    lines += ["", "Versions: " + versions()]
    lines += ["", "Failures:", ""]
    lines += failures or ["none"]
    return "\n".join(lines) + "\n"


def sklearn_report(rows) -> List[str]:
    lines = ["| data set | rows | feature columns used (text / missing cells) | task | metric | mlpkit | scikit-learn | "
             "mlpkit s (run) | sklearn s | mlpkit >= sklearn |",
             "|---|---:|---|---|---|---:|---:|---:|---:|---|"]
    for name, table, info, per_seed in rows:
        task = per_seed[0]["task"]
        keys = ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc"] if task in CLASSIFICATION else ["rmse", "r2"]
        mk = {k: mean(s["mlpkit"].get(k) for s in per_seed) for k in keys}
        sk = {k: mean(s["sklearn"].get(k) for s in per_seed) for k in keys}
        metric = " / ".join({"accuracy": "acc", "balanced_accuracy": "bal acc", "f1_macro": "F1 macro",
                             "roc_auc": "AUC", "rmse": "RMSE", "r2": "R²"}[k] for k in keys)
        main_key = keys[0]
        ok = (mk[main_key] >= sk[main_key] - 1e-12) if task in CLASSIFICATION else (mk[main_key] <= sk[main_key] + 1e-12)
        lines.append(
            f"| {name} | {info['rows']} | {info['columns']} ({info['text_columns']} / {info['missing_cells']}) | "
            f"{task} ({table['target']}) | {metric} | {' / '.join(fmt(mk[k]) for k in keys)} | "
            f"{' / '.join(fmt(sk[k]) for k in keys)} | "
            f"{fmt(mean(s['mlpkit_s'] for s in per_seed), 1)} ({fmt(mean(s['mlpkit_run_s'] for s in per_seed), 1)}) | "
            f"{fmt(mean(s['sklearn']['seconds'] for s in per_seed), 1)} | {'yes' if ok else '**no**'} |")
    lines += ["", "Per seed (first metric; mlpkit epochs and status; scikit-learn iterations, * = did not converge "
              "in max_iter=200):", ""]
    for name, table, info, per_seed in rows:
        task = per_seed[0]["task"]
        key = "accuracy" if task in CLASSIFICATION else "rmse"
        cells = [f"seed {s['seed']}: {fmt(s['mlpkit'][key])} vs {fmt(s['sklearn'][key])} "
                 f"({s['epochs']} ep {s['status']}; {s['sklearn']['n_iter']} it{'' if s['sklearn']['converged'] else '*'})"
                 for s in per_seed]
        s0 = per_seed[0]
        dropped = ", ".join(f"{k} ({v})" for k, v in s0["dropped"].items()) or "none"
        lines.append(f"- **{name}** ({key}; train/val/test {s0['rows']['train']}/{s0['rows']['val']}/"
                     f"{s0['rows']['test']}; mlpkit inputs {s0['inputs']}, scikit-learn inputs "
                     f"{s0['sklearn']['inputs']}; left out by mlpkit: {dropped}): " + "; ".join(cells))
    return lines


def label(system: str) -> str:
    return "mlpkit" if system == "mlpkit" else PEERS[system][0]


def system_values(per_seed, system: str, key: str, field: Optional[str] = None) -> List[float]:
    """One system's `key` on each seed that has it (mlpkit's test metrics, or a peer's result)."""
    out = []
    for s in per_seed:
        res = {"test": s["mlpkit"], "fit_seconds": s["mlpkit_s"]} if system == "mlpkit" else s["peers"].get(system)
        if res is not None:
            v = res["test"].get(key) if system == "mlpkit" and key != "fit_seconds" else res.get(key)
            if v is not None:
                out.append(float(v))
    return out


def ranks(values: Dict[str, float], higher_better: bool) -> Dict[str, float]:
    """1 = best; tied systems share the mean of their places."""
    order = sorted(values, key=lambda k: -values[k] if higher_better else values[k])
    out: Dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and np.isclose(values[order[j + 1]], values[order[i]], rtol=0, atol=1e-12):
            j += 1
        for k in order[i:j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def metric_table(rows, systems: List[str], keys: Dict[str, str], higher: Dict[str, bool], title: str) -> List[str]:
    """A markdown table: one row per table (the mean over seeds of its metric, the best in bold), then
    each system's mean rank over the tables where every system has a result, and, where some system
    is missing somewhere, over all tables without those systems."""
    head = "| data set | metric | " + " | ".join(label(s) for s in systems) + " |"
    lines = [title, "", head, "|---|---|" + "---:|" * len(systems)]
    per_table = []
    for name, table, info, per_seed in rows:
        task = per_seed[0]["task"]
        kind = "clf" if task in CLASSIFICATION else "reg"
        key = keys[kind]
        vals = {s: mean(system_values(per_seed, s, key)) for s in systems}
        present = {s: v for s, v in vals.items() if v is not None}
        per_table.append((present, higher[kind]))
        best = None if not present else max(present.values()) if higher[kind] else min(present.values())
        cells = [("**" + fmt(v) + "**") if v is not None and np.isclose(v, best, rtol=0, atol=1e-12) else fmt(v)
                 for v in vals.values()]
        lines.append(f"| {name} | {key} | " + " | ".join(cells) + " |")
    lines += mean_rank_rows(per_table, systems)
    return lines


def mean_rank_rows(per_table, systems: List[str]) -> List[str]:
    lines = []
    full = [(p, h) for p, h in per_table if all(s in p for s in systems)]
    if full:
        r = [ranks(p, h) for p, h in full]
        lines.append(f"| mean rank ({len(full)} tables with every system) | | "
                     + " | ".join(f"{np.mean([x[s] for x in r]):.2f}" for s in systems) + " |")
    partial = [s for s in systems if any(s not in p for p, _ in per_table)]
    kept = [s for s in systems if s not in partial]
    if partial and len(kept) > 1:
        r = [ranks({s: p[s] for s in kept}, h) for p, h in per_table]
        lines.append(f"| mean rank without {', '.join(label(s) for s in partial)} ({len(per_table)} tables) | | "
                     + " | ".join(f"{np.mean([x[s] for x in r]):.2f}" if s in kept else "" for s in systems) + " |")
    return lines


def goal_lines(rows) -> List[str]:
    """mlpkit against HistGradientBoosting, the best of the three tree libraries and RealMLP-TD, on the
    first metric (mean over seeds), counted over the tables where the peers ran."""
    counts = {"hgb": [0, 0], "trees": [0, 0], "realmlp": [0, 0]}
    for name, table, info, per_seed in rows:
        clf = per_seed[0]["task"] in CLASSIFICATION
        key = "accuracy" if clf else "rmse"
        mk = mean(system_values(per_seed, "mlpkit", key))
        peer = {p: mean(system_values(per_seed, p, key)) for p in ("hgb", "lightgbm", "catboost", "realmlp")}
        at_least = (lambda a, b: a >= b - 1e-12) if clf else (lambda a, b: a <= b + 1e-12)
        trees = [peer[p] for p in ("hgb", "lightgbm", "catboost")]
        checks = {"hgb": [peer["hgb"]], "trees": trees, "realmlp": [peer["realmlp"]]}
        for goal, vals in checks.items():
            if mk is not None and vals and all(v is not None for v in vals):
                counts[goal][1] += 1
                counts[goal][0] += all(at_least(mk, v) for v in vals)
    words = {"hgb": "HistGradientBoosting", "trees": "the best of HistGradientBoosting, LightGBM and CatBoost",
             "realmlp": "RealMLP-TD"}
    return [f"- mlpkit at or above {words[g]}: {a} of {n} tables" for g, (a, n) in counts.items() if n]


def common_seeds(rows, systems: List[str]):
    """Each table's seeds on which every system that ran on it has a result: the means compare
    systems on the same seeds (a peer fitted on fewer seeds takes the others out for everyone)."""
    out = []
    for name, table, info, per_seed in rows:
        ran = [m for m in systems if any(system_values([s], m, "fit_seconds") for s in per_seed)]
        kept = [s for s in per_seed if all(system_values([s], m, "fit_seconds") for m in ran)]
        if kept:
            out.append((name, table, info, kept))
    return out


def peers_report(rows, systems: List[str]) -> List[str]:
    rows = common_seeds(rows, systems)
    lines = ["The trees are fitted on the run's train + val rows with their defaults (categories given natively; "
             "HistGradientBoosting's own early stopping holds out 10% of them above 10,000 rows); RealMLP-TD on the "
             "train rows with the val rows as its validation set (best epoch kept), as mlpkit. Threads bounded "
             "(--threads). Accuracy: higher is better; RMSE: lower is better; best of each row in bold.", ""]
    lines += goal_lines(rows) + [""]
    lines += metric_table(rows, systems, {"clf": "accuracy", "reg": "rmse"}, {"clf": True, "reg": False},
                          "Test accuracy / RMSE (mean over the table's common seeds):")
    lines += ["", "Seeds per table (those on which every system shown for it has a result): "
              + "; ".join(f"{name} {','.join(str(s['seed']) for s in per_seed)}" for name, _, _, per_seed in rows)]
    lines += [""] + metric_table(rows, systems, {"clf": "roc_auc", "reg": "r2"}, {"clf": True, "reg": True},
                                 "Test ROC AUC / R² (mean over the table's common seeds):")
    head = "| data set | rows fit (trees) | " + " | ".join(label(s) for s in systems) + " |"
    lines += ["", "Training seconds (mean over seeds; mlpkit: the whole `train.py` command; the others: `fit`):", "",
              head, "|---|---:|" + "---:|" * len(systems)]
    for name, table, info, per_seed in rows:
        s0 = per_seed[0]["rows"]
        lines.append(f"| {name} | {s0['train'] + s0['val']} | "
                     + " | ".join(fmt(mean(system_values(per_seed, s, "fit_seconds")), 1) for s in systems) + " |")
    lines += ["", "Per seed (first metric: " + ", ".join(label(s) for s in systems) + "):", ""]
    for name, table, info, per_seed in rows:
        key = "accuracy" if per_seed[0]["task"] in CLASSIFICATION else "rmse"
        cells = [f"seed {s['seed']}: " + " / ".join(fmt(v[0]) if (v := system_values([s], m, key)) else "-"
                                                   for m in systems) for s in per_seed]
        notes = sorted({f"{PEERS[p][0]}: {r['note']}" for s in per_seed for p, r in s["peers"].items() if r.get("note")})
        lines.append(f"- **{name}** ({key}): " + "; ".join(cells) + (f" ({'; '.join(notes)})" if notes else ""))
    return lines


if __name__ == "__main__":
    sys.exit(main())
