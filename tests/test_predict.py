"""From a messy file to predictions, as a user does it: `python train.py data=csv ...` then
`python predict.py RUN_DIR new.csv`; the predictions scored by scikit-learn against what the run wrote in
metrics.json. The runs go through train.py in this process (`train_in_process`) and most predictions through
predict.py's main in this process (`cli`); a prediction and a refusal run predict.py as a process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, messy_table, run_python, train_in_process

pytestmark = pytest.mark.slow  # trains three runs through train.py (the fixture `runs`)
PREDICT_PY = REPO / "predict.py"
RUNS = {  # name -> (task, extra overrides)
    "species": ("multiclass", ["data.drop=[id]", "data.categorical=[zip]"]),
    "churn": ("binary", ["data.drop=[id]", "trainer.class_weight=balanced"]),
    "price": ("regression", ["data.drop=[id]"]),
}


def predict(args, cwd: Path, timeout: float = 120):
    """`python predict.py *args` in cwd, as a process: a Run (returncode, stdout, stderr)."""
    return run_python(PREDICT_PY, [str(a) for a in args], cwd, timeout=timeout)


def _train_run(root: Path, target: str):
    """One run of `target`'s task on a messy table of 400 rows: (the table, the run directory, the process)."""
    task, extra = RUNS[target]
    root.mkdir(parents=True, exist_ok=True)
    path = messy_table(root / f"{target}.csv", n=400, task=task)
    run_dir = root / f"run_{target}"
    run = train_in_process(["data=csv", f"data.path={path}", f"data.target={target}", *extra, "trainer.max_epochs=10",
                 "trainer.progress=false", f"hydra.run.dir={run_dir}"], root)
    return path, run_dir, run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One trained run per task: target -> (the table, the run directory)."""
    root = tmp_path_factory.mktemp("predict")
    out = {}
    for target in RUNS:
        path, run_dir, run = _train_run(root, target)
        assert run.returncode == 0, run.describe()
        out[target] = (path, run_dir)
    return out


def _test_rows(path: Path, run_dir: Path, where: Path) -> Path:
    """The run's own test rows, written as a new file (as they appear in the source file)."""
    import pandas as pd

    rows = np.load(run_dir / "splits.npz", allow_pickle=False)["test"]
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    out = where / "test_rows.csv"
    frame.iloc[np.sort(rows)].to_csv(out, index=False)
    return out


@pytest.mark.parametrize("target", list(RUNS))
def test_predictions_on_the_runs_test_rows_score_what_metrics_json_says(runs, target, tmp_path, cli):
    import pandas as pd
    from sklearn import metrics as skm

    path, run_dir = runs[target]
    test_file = _test_rows(path, run_dir, tmp_path)
    args = [run_dir, test_file, "-o", tmp_path / "p.csv"]
    # one as a process, as a user runs it; the others in this process (the same main(), imports paid once)
    proc = predict(args, tmp_path) if target == "species" else cli(*args)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    truth = pd.read_csv(test_file)[target]
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"prediction": str} if RUNS[target][0] != "regression" else None)
    assert len(pred) == len(truth)
    if RUNS[target][0] == "regression":
        rmse = skm.mean_squared_error(truth, pred["prediction"]) ** 0.5
        assert rmse == pytest.approx(saved["rmse"], rel=1e-6)
        assert skm.r2_score(truth, pred["prediction"]) == pytest.approx(saved["r2"], rel=1e-6)
        assert skm.mean_absolute_error(truth, pred["prediction"]) == pytest.approx(saved["mae"], rel=1e-6)
        assert "rmse" in proc.stderr
        return
    classes = sorted(truth.astype(str).unique())
    proba = pred[[f"proba_{c}" for c in classes]].to_numpy()
    assert (pred["prediction"] == np.asarray(classes)[proba.argmax(1)]).all()
    assert skm.accuracy_score(truth, pred["prediction"]) == pytest.approx(saved["accuracy"], abs=1e-9)
    assert skm.balanced_accuracy_score(truth, pred["prediction"]) == pytest.approx(saved["balanced_accuracy"], abs=1e-6)
    assert skm.f1_score(truth, pred["prediction"], average="macro") == pytest.approx(saved["f1_macro"], abs=1e-6)
    if len(classes) == 2:
        auc = skm.roc_auc_score(truth == classes[1], proba[:, 1])
    else:
        auc = skm.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
    assert auc == pytest.approx(saved["roc_auc"], abs=1e-6)
    assert skm.confusion_matrix(truth, pred["prediction"], labels=classes).tolist() == saved["confusion_matrix"]
    assert "balanced_accuracy" in proc.stderr


def test_load_run_predicts_from_a_frame_or_a_path(runs):
    import pandas as pd

    import mlpkit

    path, run_dir = runs["species"]
    run = mlpkit.load_run(run_dir)
    frame = pd.read_csv(path)
    labels = run.predict(path)
    proba = run.predict_proba(frame)
    assert proba.shape == (400, 3) and np.allclose(proba.sum(1), 1)
    assert list(labels) == list(np.asarray(run.classes)[proba.argmax(1)])
    assert set(labels) <= {"Adelie", "Chinstrap", "Gentoo"}
    assert (labels == frame["species"]).mean() > 0.8


def test_output_layout_keep_columns_and_input_order(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["churn"]
    proc = cli(run_dir, path, "--keep", "name", "id")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "churn.predictions.csv")  # the default name, in the current directory
    assert list(out.columns) == ["name", "id", "prediction", "proba_no", "proba_yes"]
    assert list(out["name"]) == list(pd.read_csv(path)["name"])  # one row per input row, in input order
    stdout = cli(run_dir, path, "-o", "-")
    assert stdout.returncode == 0 and stdout.stdout.splitlines()[0] == "prediction,proba_no,proba_yes"
    assert len(stdout.stdout.splitlines()) == 401


def test_unseen_categories_and_missing_values_are_predicted_and_counted(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    frame = pd.read_csv(path).drop(columns=["species", "const"]).head(20)  # no target, extra columns missing
    frame.loc[:4, "island"] = "Atlantis"
    frame.loc[5:7, "sex"] = None
    frame.loc[8:9, "zip"] = 99999
    frame.loc[10, "bill length"] = None
    new = tmp_path / "new.csv"
    frame.to_csv(new, index=False)
    proc = cli(run_dir, new, "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    assert "island: 5" in proc.stderr and "zip: 2" in proc.stderr
    assert "missing values" in proc.stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == 20


def _error(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_inputs_get_one_line_and_leave_nothing(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    frame = pd.read_csv(path)
    frame.drop(columns=["island", "mass"]).to_csv(tmp_path / "cols.csv", index=False)
    msg = _error(predict([run_dir, tmp_path / "cols.csv", "-o", tmp_path / "o.csv"], tmp_path))  # as a process
    assert "'island'" in msg and "'mass'" in msg
    text = frame.astype(object)
    text.loc[57, "mass"] = "heavy"
    text.to_csv(tmp_path / "text.csv", index=False)
    msg = _error(cli(run_dir, tmp_path / "text.csv", "-o", tmp_path / "o.csv"))
    assert "'mass'" in msg and "'heavy'" in msg and "line 59" in msg  # data row 57 + the header + 1
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in _error(cli(run_dir, tmp_path / "empty.csv", "-o", tmp_path / "o.csv"))
    frame.head(0).to_csv(tmp_path / "header.csv", index=False)
    said = cli(run_dir, tmp_path / "header.csv", "-o", "-")  # to standard output: not a CSV header, then an error
    assert said.returncode == 2 and said.stdout == "" and "has a header but no data rows" in said.stderr
    (tmp_path / "bin.csv").write_bytes(b"\x7fELF\x02\x01\x01\x00binary")
    assert "binary" in _error(cli(run_dir, tmp_path / "bin.csv", "-o", tmp_path / "o.csv"))
    assert "no such file" in _error(cli(run_dir, tmp_path / "absent.csv"))
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert "not a finished" in _error(cli(unfinished, path))
    sweep = tmp_path / "sweep"  # a sweep's folder: its jobs are the runs
    for job in ("0_seed=1", "1_seed=2"):
        shutil.copytree(run_dir, sweep / job)
    msg = _error(cli(sweep, path))
    assert "holds 2 runs (0_seed=1, 1_seed=2), not one run" in msg and f"predict.py {sweep / '0_seed=1'}" in msg
    assert not (tmp_path / "o.csv").exists() and not list(tmp_path.glob(".predictions.*"))


def test_chunked_prediction_equals_one_pass(runs, tmp_path):
    import mlpkit

    path, run_dir = runs["price"]
    run = mlpkit.load_run(run_dir)
    run.predict_file(str(path), str(tmp_path / "a.csv"), chunk_rows=7, report=lambda m: None)
    run.predict_file(str(path), str(tmp_path / "b.csv"), chunk_rows=100_000, report=lambda m: None)
    import pandas as pd

    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    assert len(a) == len(b) == 400
    np.testing.assert_allclose(a["prediction"], b["prediction"], rtol=1e-5)  # float32 sums by other blocks


def test_parquet_input(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["churn"]
    frame = pd.read_csv(path)
    frame.to_parquet(tmp_path / "in.parquet")
    proc = cli(run_dir, tmp_path / "in.parquet", "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    assert cli(run_dir, path, "-o", tmp_path / "c.csv").returncode == 0
    assert (tmp_path / "p.csv").read_text() == (tmp_path / "c.csv").read_text()


def test_onnx_export_matches_torch(runs, tmp_path, cli):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import pandas as pd
    import torch

    import mlpkit

    path, run_dir = runs["species"]
    proc = cli(run_dir, "--export", tmp_path / "model.onnx")
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((tmp_path / "model.onnx.json").read_text())
    run = mlpkit.load_run(run_dir)
    assert spec["inputs"] == run.preprocessing.inputs and spec["classes"] == run.classes
    X = run.preprocessing.transform(pd.read_csv(path))
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    got = session.run(None, {"inputs": X})[0]
    with torch.no_grad():
        expected = run.model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("target", ["species", "churn"])
def test_tensorboard_holds_the_new_test_metrics_and_the_confusion_matrix(runs, target):
    from conftest import read_events

    _, run_dir = runs[target]
    ev = read_events(run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("f1_macro", "roc_auc", "balanced_accuracy"):
        assert ev.values(f"hparam/test_{key}")[-1] == pytest.approx(saved["test"][key], rel=1e-5)
    assert "images/confusion_matrix" in ev.images
    assert saved["kept"] in ("best", "last", "refit") and saved["classes"]


def test_numbers_are_written_as_pandas_writes_them_with_the_float_format():
    """predict.py writes its float columns out itself (FLOAT_FORMAT, missing as empty): the same characters
    as DataFrame.to_csv(float_format=FLOAT_FORMAT), for float32 and float64, NaN, inf, -0.0 and the
    largest and smallest magnitudes; other columns as they are."""
    import io

    import pandas as pd

    from mlpkit.predict import FLOAT_FORMAT, _floats_as_text

    rng = np.random.default_rng(0)
    a = rng.random(300).astype(np.float32)
    a[:7] = [np.nan, np.inf, -np.inf, -0.0, 1e-7, 3.4e38, 1.4e-45]
    b = rng.normal(0, 1e6, 300)
    b[:8] = [np.nan, 1e20, -1e-300, 5.0, 0.1, 123456789012.0, np.inf, -0.0]
    frame = pd.DataFrame({"a": a, "b": b, "text": rng.choice(["x", "y,z", None], 300), "n": np.arange(300)})

    def written(df):
        out = io.StringIO()
        df.to_csv(out, index=False, float_format=FLOAT_FORMAT)
        return out.getvalue()

    expected = written(frame)
    assert written(_floats_as_text(frame.copy())) == expected
    assert "\n,," in expected and ",inf," in expected and "-0," in expected  # the edge values are in it


def test_a_column_with_an_empty_header_is_read_by_the_name_training_gave_it(tmp_path, cli):
    """R's write.csv leaves the row names' header field empty; pandas, and so training, call that column
    `Unnamed: 0`. predict.py finds it by that name too (it read the header as written, found no such
    column and refused the run's own training file): the run's test rows score what metrics.json says,
    and --keep takes the column by that name; a streamed run (data.stream=true, which reads the file in
    chunks the same way) trains on it."""
    import pandas as pd

    path = messy_table(tmp_path / "t.csv", n=300, task="binary")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text('""' + lines[0][len("id"):] + "".join(lines[1:]))  # the id column's header emptied
    run_dir = tmp_path / "run"
    run = train_in_process(["data=csv", f"data.path={path}", "data.target=churn", "trainer.max_epochs=3",
                            "trainer.progress=false", f"hydra.run.dir={run_dir}"], tmp_path)
    assert run.returncode == 0, run.describe()
    assert "Unnamed: 0" in json.loads((run_dir / "preprocessing.json").read_text())["inputs"]
    proc = cli(run_dir, path, "--split", "test", "--keep", "Unnamed: 0", "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "p.csv", dtype={"prediction": str})
    rows = np.load(run_dir / "splits.npz")["test"]
    assert list(pred["Unnamed: 0"]) == list(pd.read_csv(path)["Unnamed: 0"].iloc[np.sort(rows)])
    truth = pd.read_csv(path, dtype={"churn": str})["churn"].iloc[np.sort(rows)].to_numpy()
    accuracy = float((pred["prediction"].to_numpy() == truth).mean())
    assert accuracy == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["test"]["accuracy"])
    streamed = train_in_process(["data=csv", f"data.path={path}", "data.target=churn", "data.stream=true",
                                 "trainer.max_epochs=1", "trainer.progress=false",
                                 f"hydra.run.dir={tmp_path / 'streamed'}"], tmp_path)
    assert streamed.returncode == 0, streamed.describe()
    assert "Unnamed: 0" in json.loads((tmp_path / "streamed" / "preprocessing.json").read_text())["inputs"]
