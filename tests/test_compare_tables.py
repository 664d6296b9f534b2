"""scripts/compare_tables.py's own logic, in process and small: table specs, ranks and the report's
counts, reusing stored peers only on the same rows, the one line when a peer's package is missing,
and the peers fitted on the run's rows (scikit-learn's HistGradientBoosting against a direct fit;
LightGBM, CatBoost and RealMLP-TD only where `.[bench]` is installed). mlpkit itself never imports
the peers' packages."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ct():
    spec = importlib.util.spec_from_file_location("compare_tables", REPO / "scripts" / "compare_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_specs_and_manifest_paths(ct, tmp_path):
    assert ct.parse_spec("a.csv:y:id,Unnamed: 0") == {"path": "a.csv", "target": "y", "drop": ["id", "Unnamed: 0"]}
    assert ct.parse_spec("a.csv:y") == {"path": "a.csv", "target": "y", "drop": []}
    with pytest.raises(SystemExit, match="not path:target"):
        ct.parse_spec("a.csv")
    (tmp_path / "m.json").write_text(json.dumps([{"path": "t.csv", "target": "y", "name": "t"}]))
    (entry,) = ct.load_manifest(str(tmp_path / "m.json"))
    assert entry["path"] == str(tmp_path / "t.csv") and entry["drop"] == []


def test_ranks_share_places_on_ties_and_follow_the_metric_direction(ct):
    assert ct.ranks({"a": 0.9, "b": 0.9, "c": 0.8}, higher_better=True) == {"a": 1.5, "b": 1.5, "c": 3.0}
    assert ct.ranks({"a": 2.0, "b": 1.0, "c": 3.0}, higher_better=False) == {"b": 1.0, "a": 2.0, "c": 3.0}
    per_table = [({"mlpkit": 0.9, "hgb": 0.8, "realmlp": 0.95}, True), ({"mlpkit": 1.0, "hgb": 2.0}, False)]
    full, partial = ct.mean_rank_rows(per_table, ["mlpkit", "hgb", "realmlp"])
    assert "(1 tables with every system)" in full and full.endswith("| 2.00 | 3.00 | 1.00 |")
    assert "without RealMLP-TD (2 tables)" in partial and partial.endswith("| 1.00 | 2.00 |  |")


def seed_entry(seed, task, mlpkit, peers, seconds=10.0):
    return {"seed": seed, "task": task, "mlpkit": mlpkit, "mlpkit_s": seconds, "sklearn": peers.get("mlp"),
            "peers": peers, "rows": {"train": 70, "val": 15, "test": 15}}


def test_report_counts_mlpkit_against_each_goal(ct):
    clf = [seed_entry(s, "binary", {"accuracy": 0.9, "roc_auc": 0.95},
                      {"hgb": {"accuracy": 0.85, "roc_auc": 0.9, "fit_seconds": 1.0},
                       "lightgbm": {"accuracy": 0.95, "roc_auc": 0.97, "fit_seconds": 0.5},
                       "catboost": {"accuracy": 0.88, "roc_auc": 0.93, "fit_seconds": 3.0},
                       "realmlp": {"accuracy": 0.89 + 0.02 * s, "roc_auc": 0.96, "fit_seconds": 100.0}})
           for s in (0, 1)]  # RealMLP-TD's mean accuracy 0.90: a tie counts as "at or above"
    reg = [seed_entry(0, "regression", {"rmse": 1.0, "r2": 0.8},
                      {"hgb": {"rmse": 1.2, "r2": 0.7, "fit_seconds": 1.0},
                       "lightgbm": {"rmse": 1.1, "r2": 0.75, "fit_seconds": 1.0},
                       "catboost": {"rmse": 0.99, "r2": 0.81, "fit_seconds": 1.0}})]
    rows = [("A", {}, {}, clf), ("B", {}, {}, reg)]
    md = "\n".join(ct.peers_report(rows, ["mlpkit", "hgb", "lightgbm", "catboost", "realmlp"]))
    assert "- mlpkit at or above HistGradientBoosting: 2 of 2 tables" in md
    assert "- mlpkit at or above the best of HistGradientBoosting, LightGBM and CatBoost: 0 of 2 tables" in md
    assert "- mlpkit at or above RealMLP-TD: 1 of 1 tables" in md
    assert "| A | accuracy | 0.900 | 0.850 | **0.950** | 0.880 | 0.900 |" in md
    assert "| B | rmse | 1.000 | 1.200 | 1.100 | **0.990** | - |" in md
    assert "| A | 85 | 10.0 | 1.0 | 0.5 | 3.0 | 100.0 |" in md  # training seconds; rows fit = train + val


def test_missing_peer_package_is_one_line_before_any_work(ct, monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("lightgbm", "pytabkit") else real(name, *a))
    assert ct.missing_peers(["mlp", "hgb"]) is None
    rc = ct.main([str(tmp_path / "absent.csv:y"), "--peers", "hgb", "lightgbm", "realmlp"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err == ('compare_tables: --peers lightgbm, realmlp need lightgbm, pytabkit, not installed here: '
                   'pip install -e ".[bench]" (or leave them out with --peers)')


def test_stored_peers_are_reused_only_on_the_same_rows_and_merged(ct, tmp_path):
    splits = {"train": np.arange(0, 6), "val": np.arange(6, 8), "test": np.arange(8, 10)}
    digest = ct.splits_digest(splits)
    moved = ct.splits_digest({**splits, "train": np.arange(1, 7), "val": np.asarray([0, 7])})
    assert digest != moved
    rec = {"table": "t", "seed": 0, "splits_sha256": digest, "used": ["a", "b"], "mlpkit": {"test": {"rmse": 2.0}},
           "peers": {"realmlp": {"rmse": 1.0, "config": "x"}}}
    path = tmp_path / "results.json"
    ct.merge_results(path, [rec])
    ct.merge_results(path, [{**rec, "mlpkit": {"test": {"rmse": 1.5}}, "peers": {"hgb": {"rmse": 1.2, "config": "y"}}}])
    stored = json.loads(path.read_text())
    assert len(stored["results"]) == 1 and stored["results"][0]["mlpkit"]["test"]["rmse"] == 1.5
    peers, note = ct.stored_peers(stored, "t", 0, digest, ["a", "b"])
    assert set(peers) == {"realmlp", "hgb"} and note is None
    peers, note = ct.stored_peers(stored, "t", 0, moved, ["a", "b"])  # other rows: nothing reused, and said so
    assert peers == {} and note == "the stored peers were fitted on other train/val/test rows: not reused"
    peers, note = ct.stored_peers(stored, "t", 0, digest, ["a"])  # other columns: reused, and said so
    assert set(peers) == {"realmlp", "hgb"} and "fitted on the columns ['a', 'b'], mlpkit now uses ['a']" in note
    assert ct.stored_peers(stored, "t", 1, digest, ["a", "b"]) == ({}, None)


def small_table(n=240, seed=0):
    """Numbers with missing cells, a text category with missing cells, a binary target that depends on both."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x + (colour == "red") * 1.5 > 0.5, "yes", "no")
    x_seen = np.where(rng.random(n) < 0.1, np.nan, x)
    colour_seen = np.where(rng.random(n) < 0.1, None, colour)
    df = pd.DataFrame({"x": x_seen, "noise": rng.normal(size=n), "colour": colour_seen, "y": y})
    pre = {"task": "binary", "target": "y",
           "columns": [{"name": "x", "kind": "numeric"}, {"name": "noise", "kind": "numeric"},
                       {"name": "colour", "kind": "category"}, {"name": "id", "kind": "dropped"}]}
    idx = rng.permutation(n)
    splits = {"train": idx[: n // 2], "val": idx[n // 2: 3 * n // 4], "test": idx[3 * n // 4:]}
    return df, pre, splits


def test_hist_gradient_boosting_peer_is_a_direct_fit_on_train_and_val_rows(ct):
    from sklearn.ensemble import HistGradientBoostingClassifier

    df, pre, splits = small_table()
    got = ct.peer_fit("hgb", df, pre, splits, seed=3, threads=1)
    fit = np.concatenate([splits["train"], splits["val"]])
    X = df[["x", "noise", "colour"]].copy()
    X["colour"] = pd.Categorical(X["colour"], categories=sorted(set(X["colour"].iloc[fit].dropna())))
    ref = HistGradientBoostingClassifier(random_state=3, categorical_features=["colour"])
    ref.fit(X.iloc[fit], df["y"].iloc[fit])
    want = float(np.mean(ref.predict(X.iloc[splits["test"]]) == df["y"].iloc[splits["test"]].to_numpy()))
    assert got["accuracy"] == pytest.approx(want) and got["rows_fit"] == len(fit)
    assert got["accuracy"] > 0.75  # the category and the number carry the target


@pytest.mark.parametrize("peer, package", [("lightgbm", "lightgbm"), ("catboost", "catboost"), ("realmlp", "pytabkit")])
def test_bench_peers_fit_categories_and_missing_values(ct, peer, package):
    pytest.importorskip(package, reason=f"{package} is in the optional extra: pip install -e \".[bench]\"")
    df, pre, splits = small_table()
    got = ct.peer_fit(peer, df, pre, splits, seed=0, threads=1)
    assert got["accuracy"] > 0.7 and 0.5 < got["roc_auc"] <= 1.0 and got["fit_seconds"] > 0


def test_mlpkit_never_imports_the_bench_packages():
    bench = {"lightgbm", "catboost", "pytabkit"}
    for path in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not {n.split(".")[0] for n in names} & bench, f"{path} imports {names}"
