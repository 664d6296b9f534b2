"""mlpkit against scikit-learn's Pipeline + MLP on a user's own tables, on the same rows.

    python scripts/compare_tables.py penguins.csv:species Chile.csv:vote:"Unnamed: 0" --seeds 0 1 2
    python scripts/compare_tables.py --manifest tables.json --seeds 0 1 2 --out docs/tables_vs_sklearn.md

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

Failures (train.py refusing or crashing, predict.py failing, a mismatch) are printed with the
exact command and the end of its output, and the table goes on.
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
from typing import Any, Dict, List, Optional

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


def train_mlpkit(table: Dict[str, Any], seed: int, run_dir: Path, timeout: int, reuse: bool = False) -> Dict[str, Any]:
    cmd = [sys.executable, "train.py", "data=csv", f"data.path={table['path']}", f"data.target={table['target']}"]
    if table.get("drop"):
        cmd.append(f"data.drop={hydra_list(table['drop'])}")
    cmd += [f"seed={seed}", f"hydra.run.dir={run_dir}"]
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


def sklearn_fit(df, pre: Dict[str, Any], splits: Dict[str, np.ndarray], seed: int, rows: str,
                scale_y: bool = False) -> Dict[str, Any]:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cols = [c for c in pre["columns"] if c["kind"] != "dropped"]
    numeric = [c["name"] for c in cols if c["kind"] == "numeric"]
    categorical = [c["name"] for c in cols if c["kind"] in ("category", "boolean")]
    X = pd.DataFrame(index=df.index)
    for name in numeric:
        X[name] = pd.to_numeric(df[name], errors="coerce").astype("float64")
    for name in categorical:  # as text, missing kept as NaN (the imputer's constant replaces it)
        s = df[name]
        X[name] = pd.Series(np.where(s.notna(), s.astype(str), np.nan), index=df.index, dtype=object)
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
    fit_rows = splits["train"] if rows == "train" else np.concatenate([splits["train"], splits["val"]])
    test_rows = splits["test"]
    if task in CLASSIFICATION:
        y_fit = y_all.iloc[fit_rows].astype(str).to_numpy()
        y_test = y_all.iloc[test_rows].astype(str).to_numpy()
    else:
        y_fit = y_all.iloc[fit_rows].astype(float).to_numpy()
        y_test = y_all.iloc[test_rows].astype(float).to_numpy()
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
    p = run_cmd([sys.executable, "predict.py", str(run_dir), table["path"], "-o", str(out)], timeout)
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
    args = ap.parse_args(argv)

    import pandas as pd

    tables = [parse_spec(s) for s in args.tables] + (load_manifest(args.manifest) if args.manifest else [])
    if not tables:
        ap.error("no table given")
    runs_root = Path(args.keep_runs) if args.keep_runs else Path(tempfile.mkdtemp(prefix="compare_tables_"))
    rows, failures = [], []
    for table in tables:
        name = table.get("name") or Path(table["path"]).stem
        df = pd.read_csv(table["path"])
        per_seed = []
        for seed in args.seeds:
            run_dir = runs_root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')}_seed{seed}"
            res = train_mlpkit(table, seed, run_dir, args.timeout, args.reuse)
            if res["rc"] != 0:
                failures.append(f"**{name}**, seed {seed}: `{res['command']}` exited {res['rc']}:\n"
                                f"```\n{tail(res['output'], 25)}\n```")
                print(f"[{name} seed {seed}] train.py FAILED (exit {res['rc']})", file=sys.stderr, flush=True)
                continue
            task = res["pre"]["task"]
            sk = sklearn_fit(df, res["pre"], res["splits"], seed, args.sk_rows, args.sk_scale_y)
            problem = None if args.no_predict else check_predict(table, run_dir, df, res, args.timeout)
            if problem:
                failures.append(f"**{name}**, seed {seed}: {problem}")
            m = res["metrics"]
            per_seed.append({"seed": seed, "task": task, "mlpkit": m["test"], "sklearn": sk,
                             "mlpkit_s": res["seconds"], "mlpkit_run_s": m.get("seconds"),
                             "epochs": m.get("epochs_run"), "status": m.get("status"),
                             "inputs": len(res["pre"]["inputs"]),
                             "used": [c["name"] for c in res["pre"]["columns"] if c["kind"] != "dropped"],
                             "dropped": {c["name"]: c["reason"] for c in res["pre"]["columns"]
                                         if c["kind"] == "dropped"},
                             "rows": {k: len(v) for k, v in res["splits"].items()}})
            key = "accuracy" if task in CLASSIFICATION else "rmse"
            print(f"[{name} seed {seed}] {task}: mlpkit {key} {m['test'][key]:.4f} ({res['seconds']:.1f} s), "
                  f"sklearn {sk[key]:.4f} ({sk['seconds']:.1f} s, {sk['n_iter']} iter)", file=sys.stderr, flush=True)
        if per_seed:
            info = describe(df, table["target"], per_seed[0]["used"])
            rows.append((name, table, info, per_seed))
    md = report(rows, failures, args)
    print(md)
    if args.out:
        Path(args.out).write_text(md)
    return 1 if failures else 0


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {sys.version.split()[0]}"]
    for pkg in ("mlpkit", "torch", "scikit-learn", "pandas", "numpy", "hydra-core"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)


def report(rows, failures, args) -> str:
    lines = [f"Seeds {', '.join(map(str, args.seeds))}; scikit-learn fitted on the run's "
             f"{'train rows' if args.sk_rows == 'train' else 'train + val rows'}"
             f"{'; regression targets standardised for scikit-learn (TransformedTargetRegressor)' if args.sk_scale_y else ''}"
             "; means over the seeds that ran.",
             "",
             "| data set | rows | feature columns used (text / missing cells) | task | metric | mlpkit | scikit-learn | "
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
    sources = [f"- **{name}**: `{table['path']}`, target `{table['target']}`"
               + (f", data.drop={table['drop']}" if table.get("drop") else "")
               + (f"; from {table['source']}" if table.get("source") else "")
               for name, table, _, _ in rows]
    lines += ["", "Tables:", ""] + sources
    lines += ["", "Versions: " + versions()]
    lines += ["", "Failures:", ""]
    lines += failures or ["none"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
