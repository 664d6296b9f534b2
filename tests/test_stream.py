"""data.stream=true: a table read block by block gives the model the inputs the in-memory path gives on
the same train rows (exactly for vocabularies and one-hot inputs; medians within the sketch's bound), its
split is a deterministic function of row number and seed, train.py trains on it and predict.py applies the
run, and what it cannot do is refused with one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import finish, messy_table, popen_train, read_metrics, refusal, train_in_process

SEED = 7


def _parquet(csv: Path, path: Path, row_group_size: int) -> Path:
    """The table of `csv` as read by the in-memory path, written to Parquet in row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlpkit.data.table import read_table

    df, _ = read_table(str(csv))
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size)
    return path


def _in_memory(path: Path, target: str, train_rows: np.ndarray, **options):
    """The in-memory path's Preprocessing fitted on exactly `train_rows`, and the table as it reads it."""
    from mlpkit.data.preprocess import Preprocessing
    from mlpkit.data.table import assign_roles, read_table

    df, _ = read_table(str(path))
    roles = assign_roles(df, target)
    rest = np.setdiff1d(np.arange(len(df)), train_rows)
    pre, _ = Preprocessing.fit_table(df.iloc[np.concatenate([train_rows, rest])], len(train_rows), roles.columns,
                                     seed=SEED, **options)
    return pre, df


def _stream(path: Path, target: str, val=0.15, test=0.15, **options):
    from mlpkit.data.stream import load_stream

    return load_stream(str(path), target, "auto", [], [], SEED, val, test, True, **options)


def _train_rows(data, n: int, val=0.15, test=0.15) -> np.ndarray:
    from mlpkit.data.stream import split_of

    rows = np.arange(n)
    return rows[split_of(rows, SEED, val, test) == 0]


@pytest.mark.parametrize("fmt, options", [("parquet", {}), ("csv", {}), ("parquet", {"numeric": "robust"}),
                                          ("parquet", {"numeric": "quantile", "onehot_max": 2})])
@pytest.mark.parametrize("task, target", [("multiclass", "species"), ("binary", "churn"), ("regression", "price")])
def test_streamed_inputs_equal_the_in_memory_ones(tmp_path, monkeypatch, fmt, options, task, target):
    from mlpkit.data import stream
    from mlpkit.data.table import read_table

    monkeypatch.setattr(stream, "READ_ROWS", 50)  # read in 8 blocks (text) or in 50-row batches of 11 row groups
    csv = messy_table(tmp_path / "t.csv", n=400, seed=3, task=task)
    table = _parquet(csv, tmp_path / "t.parquet", row_group_size=37) if fmt == "parquet" else csv
    data = _stream(table, target, **options)
    keep = np.flatnonzero(read_table(str(csv))[0][target].notna().to_numpy())
    train_rows = np.intersect1d(_train_rows(data, 400), keep)
    mem, df = _in_memory(csv, target, train_rows, **options)
    pre = data.preprocessing

    assert pre.inputs == mem.inputs
    assert pre.layout == mem.layout == data.layout
    assert bool(pre.coded) == ("onehot_max" in options)  # onehot_max=2: the wider categories are codes
    for ours, theirs in zip(pre.columns, mem.columns):
        assert (ours.name, ours.kind, ours.vocabulary, ours.scale, ours.inputs, ours.encoding, ours.rare) == \
            (theirs.name, theirs.kind, theirs.vocabulary, theirs.scale, theirs.inputs, theirs.encoding, theirs.rare)
    X_ours, X_theirs = pre.transform(df), mem.transform(df)
    categories = [i for i, name in enumerate(pre.inputs) if name.startswith(tuple(c.name for c in pre.categorical))]
    assert categories and np.array_equal(X_ours[:, categories], X_theirs[:, categories])  # exact: the same counts
    np.testing.assert_allclose(X_ours, X_theirs, rtol=1e-5, atol=1e-5)  # medians exact here: n < SKETCH_SIZE

    assert len(data.X_train) == len(train_rows) and data.in_dim == len(mem.inputs)
    # the train batches, unshuffled, are the in-memory inputs of the train rows in file order
    batches = list(data.X_train.batches(64))
    X_stream = np.concatenate([xb.numpy() for xb, _ in batches])
    np.testing.assert_allclose(X_stream, X_theirs[train_rows], rtol=1e-5, atol=1e-5)
    y_stream = np.concatenate([yb.numpy().reshape(len(yb), -1)[:, 0] for _, yb in batches])
    if task == "regression":
        y = df[target].to_numpy(dtype=float)[train_rows]
        assert pre.y_mean == pytest.approx(y.mean()) and pre.y_std == pytest.approx(y.std())
        np.testing.assert_allclose(y_stream * pre.y_std + pre.y_mean, y, rtol=1e-5)
    else:
        labels = df[target].astype(str).str.strip().to_numpy()[train_rows]
        assert data.classes == sorted(set(df[target].dropna().astype(str).str.strip()))
        assert [data.classes[int(i)] for i in y_stream] == list(labels)


def test_median_sketch_within_its_bound(tmp_path, monkeypatch):
    """With more train values than the sample holds, the median used for imputation lies between the
    train values' quantiles 0.5 -+ eps (Dvoretzky-Kiefer-Wolfowitz, delta = 1e-6)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlpkit.data import stream

    monkeypatch.setattr(stream, "SKETCH_SIZE", 500)
    rng = np.random.default_rng(0)
    n = 6000
    x = rng.lognormal(0, 1.5, n)
    x[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({"x": x, "z": rng.normal(size=n), "y": rng.normal(size=n)})
    path = tmp_path / "big.parquet"
    pq.write_table(pa.Table.from_pandas(df), path, row_group_size=700)
    data = _stream(path, "y")
    col = next(c for c in data.preprocessing.columns if c.name == "x")
    median = data.preprocessing.transformer.named_transformers_["numeric"].steps[0][1].statistics_[0] * col.scale
    train = x[_train_rows(data, n)]
    train = train[np.isfinite(train)]
    eps = math.sqrt(math.log(2 / 1e-6) / (2 * 500))
    rank = float(np.mean(train < median))
    assert len(train) > 500 and 0.5 - eps <= rank <= 0.5 + eps
    assert median != np.median(train)  # a sample, not the exact median: the bound is what is tested


def test_split_is_a_deterministic_function_of_row_and_seed():
    from mlpkit.data.stream import split_of

    rows = np.arange(200_000)
    a = split_of(rows, 1, 0.2, 0.1)
    assert np.array_equal(a, split_of(rows, 1, 0.2, 0.1))
    assert np.array_equal(a[150_000:], split_of(rows[150_000:], 1, 0.2, 0.1))  # wherever a block starts
    assert not np.array_equal(a, split_of(rows, 2, 0.2, 0.1))
    # binomial: the standard deviation of a fraction is below 0.001 here
    assert abs(np.mean(a == 1) - 0.2) < 0.005 and abs(np.mean(a == 2) - 0.1) < 0.005


@pytest.mark.slow
def test_train_streams_and_predict_applies_the_run(tmp_path, cli):
    csv = messy_table(tmp_path / "t.csv", n=500, seed=1, task="binary")
    table = _parquet(csv, tmp_path / "t.parquet", row_group_size=64)
    run = train_in_process(["data=csv", f"data.path={table}", "data.target=churn", "data.stream=true", "model.hidden=[8]",
                 "trainer.max_epochs=2", "trainer.batch_size=32", f"seed={SEED}", f"hydra.run.dir={tmp_path / 'run'}"],
                tmp_path)
    assert run.returncode == 0, run.stderr
    assert "data.stream=true" in run.stdout + run.stderr
    metrics = read_metrics(tmp_path / "run")
    assert metrics["status"] == "completed" and len(metrics["history"]["train_loss"]) == 2

    from mlpkit.data.stream import split_of

    splits = np.load(tmp_path / "run" / "splits.npz")
    rows = np.arange(500)
    for i, name in enumerate(("train", "val", "test")):
        assert np.array_equal(splits[name], rows[split_of(rows, SEED, 0.15, 0.15) == i])
    out = cli(tmp_path / "run", table, "-o", tmp_path / "p.csv", "--split", "test")
    assert out.returncode == 0, out.stderr
    said = float(out.stdout.split("accuracy ")[1].split(",")[0] if "accuracy " in out.stdout
                 else out.stderr.split("accuracy ")[1].split(",")[0])
    assert said == pytest.approx(metrics["test"]["accuracy"], abs=1e-4)


@pytest.mark.parametrize("embedding", ["periodic", "piecewise_linear"])
def test_the_tabular_recipe_streams_a_regression_with_its_clamp_and_bins(tmp_path, cli, embedding):
    """data=csv's recipe on a streamed regression: clamped outputs from the pass's exact target range,
    piecewise-linear bin edges from a sample of the train rows; predict.py stays in that range."""
    import pandas as pd

    csv = messy_table(tmp_path / "t.csv", n=400, seed=2, task="regression")
    table = _parquet(csv, tmp_path / "t.parquet", row_group_size=64)
    run = train_in_process(["data=csv", f"data.path={table}", "data.target=price", "data.stream=true", f"embedding={embedding}",
                 "model.hidden=[8]", "trainer.max_epochs=2", f"seed={SEED}", f"hydra.run.dir={tmp_path / 'run'}"],
                tmp_path)
    assert run.returncode == 0, run.stderr
    kwargs = json.loads((tmp_path / "run" / "model.json").read_text())["kwargs"]
    price = pd.read_parquet(table)["price"].to_numpy()
    train_rows = np.load(tmp_path / "run" / "splits.npz")["train"]
    pre = json.loads((tmp_path / "run" / "preprocessing.json").read_text())
    low, high = [v * pre["y_std"] + pre["y_mean"] for v in kwargs["clamp"]]
    assert low == pytest.approx(np.nanmin(price[train_rows])) and high == pytest.approx(np.nanmax(price[train_rows]))
    assert ("bins" in kwargs) == (embedding == "piecewise_linear")
    out = cli(tmp_path / "run", table, "-o", tmp_path / "p.csv")
    assert out.returncode == 0, out.stderr
    predicted = pd.read_csv(tmp_path / "p.csv")["prediction"]
    assert predicted.min() >= low - 1e-3 * abs(low) and predicted.max() <= high + 1e-3 * abs(high)


@pytest.mark.parametrize("extra, said", [
    (["data=moons"], "data.stream"),
    (["data=csv", "data.path={gz}"], "compressed"),
    (["data=csv", "data.path={csv}", "model=perceptron"], "model=perceptron"),
    (["data=csv", "data.path={csv}", "trainer.batch_size=0"], "trainer.batch_size"),
    (["data=csv", "data.path={csv}", "trainer.class_weight=balanced"], "class_weight=balanced"),
])
def test_what_streaming_cannot_do_is_refused(tmp_path, extra, said):
    csv = messy_table(tmp_path / "t.csv", n=60, task="binary")
    gz = tmp_path / "t.csv.gz"
    gz.write_bytes(b"x")
    args = [a.format(csv=csv, gz=gz) for a in extra] + ["data.stream=true"]
    message = refusal(args)
    assert said in message and "\n" not in message


@pytest.mark.parametrize("extra, said", [
    (["data.path={one_group}"], "holds 1 row group, fewer than the job's 2 processes"),
    (["data.path={groups}", "trainer.batch_size=1"], "trainer.batch_size=1 is smaller than the job's 2 processes"),
])
def test_what_streaming_on_several_processes_cannot_do_is_refused(tmp_path, monkeypatch, extra, said):
    """As rank 0 of 2 (torchrun's variables): each process reads its own row groups and part of each batch."""
    csv = messy_table(tmp_path / "t.csv", n=200, task="binary")
    one_group, groups = _parquet(csv, tmp_path / "one.parquet", 200), _parquet(csv, tmp_path / "g.parquet", 50)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = ["data=csv", "data.target=churn", "data.stream=true", "trainer.strategy=ddp",
            *[a.format(one_group=one_group, groups=groups) for a in extra]]
    message = refusal(args)
    assert said in message and "\n" not in message


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ranks_read_their_own_pieces_of_each_epoch(tmp_path, monkeypatch, fmt):
    """Rank 0 and rank 1 of 2 read disjoint rows whose union is the epoch's train split; the counts the
    pass recorded give each rank's rows (so every rank computes the same steps); the pieces each rank
    reads change with the epoch; the val split read in shares and merged is the one-process val split."""
    from mlpkit.data import stream

    monkeypatch.setattr(stream, "READ_ROWS", 50)  # a text file: 8 blocks
    csv = messy_table(tmp_path / "t.csv", n=400, seed=3, task="binary")  # its id column: every row distinct
    table = _parquet(csv, tmp_path / "t.parquet", row_group_size=37) if fmt == "parquet" else csv
    data = _stream(table, "churn")
    X = data.X_train

    def rows(split, **kw) -> np.ndarray:
        return np.concatenate([xb.numpy() for xb, _ in split.batches(16, **kw)])

    def as_set(a: np.ndarray) -> set:
        return {tuple(r) for r in a.round(4).tolist()}

    whole = rows(X)
    assert len(as_set(whole)) == len(X) == len(whole)
    firsts = set()
    for epoch in range(4):
        mine = [rows(X, epoch=epoch, rank=r, world_size=2) for r in range(2)]
        assert [len(m) for m in mine] == X.rows_per_rank(epoch, 2).tolist()
        assert as_set(mine[0]).isdisjoint(as_set(mine[1])) and as_set(mine[0]) | as_set(mine[1]) == as_set(whole)
        steps = X.steps(epoch, [10, 6])
        assert steps == min(len(mine[0]) // 10, len(mine[1]) // 6) > 0
        assert [len(list(X.batches(k, epoch=epoch, steps=steps, rank=r, world_size=2)))
                for r, k in enumerate((10, 6))] == [steps, steps]
        firsts.add(tuple(X.source.table.pieces(0, 2, X.epoch_order(epoch)[1])))
    assert len(firsts) > 1  # which rank reads which piece rotates with the epoch
    parts = [rows(data.X_val, rank=r, world_size=2) for r in range(2)]
    np.testing.assert_array_equal(data.X_val.merge(parts), rows(data.X_val))


def test_the_test_split_is_read_once(tmp_path, monkeypatch):
    """The final test pass gives the loss and the outputs for the metrics from one read of the file,
    and its numbers are those of the kept model on every test row."""
    import torch

    from mlpkit.data import stream
    from mlpkit.models.mlp import MLP
    from mlpkit.training.trainer import Trainer

    table = _parquet(messy_table(tmp_path / "t.csv", n=300, seed=2, task="binary"), tmp_path / "t.parquet", 64)
    data = _stream(table, "churn")
    reads = []
    batches = stream.StreamSplit.batches

    def counted(self, size, **kw):
        reads.append((self.split, kw.get("epoch")))
        return batches(self, size, **kw)

    monkeypatch.setattr(stream.StreamSplit, "batches", counted)
    torch.manual_seed(0)
    model = MLP(data.in_dim, [8], data.out_dim)
    result = Trainer(max_epochs=2, batch_size=32, device="cpu").fit(model, data)
    assert reads.count(("test", None)) == 1 and reads.count(("val", None)) == 2
    xb, yb = next(batches(data.X_test, len(data.X_test)))
    model.eval()
    with torch.no_grad():
        out = model(xb)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), yb.reshape(-1).float())
    assert result.test["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert result.test["accuracy"] == pytest.approx(float(((out.reshape(-1) > 0) == (yb.reshape(-1) > 0.5))
                                                          .float().mean()))


def test_a_table_too_large_for_memory_is_streamed(tmp_path, monkeypatch):
    from conftest import compose_config

    from mlpkit.app import build, config

    csv = messy_table(tmp_path / "t.csv", n=60, task="binary")
    args = ["data=csv", f"data.path={csv}"]
    assert not build.stream_table(compose_config(args))  # fits: in memory, as before
    monkeypatch.setattr(config, "available_memory", lambda device: 1000)  # bytes
    assert build.stream_table(compose_config(args))
    assert not build.stream_table(compose_config([*args, "model=perceptron"]))  # cannot stream: in memory


@pytest.mark.slow
def test_an_interrupted_streamed_run_resumes_to_the_uninterrupted_result(tmp_path):
    """Each epoch's order of rows follows from (seed, epoch): resume continues exactly."""
    import signal
    import time

    table = _parquet(messy_table(tmp_path / "t.csv", n=400, seed=2, task="binary"), tmp_path / "t.parquet", 64)
    args = ["data=csv", f"data.path={table}", "data.target=churn", "data.stream=true", "model.hidden=[8]",
            "trainer.max_epochs=8", "trainer.batch_size=32", "early_stopping=none", f"seed={SEED}"]
    reference = train_in_process([*args, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path)
    assert reference.returncode == 0, reference.stderr
    run_dir = tmp_path / "run"
    start = time.perf_counter()
    proc = popen_train([*args, f"hydra.run.dir={run_dir}"], tmp_path)
    for line in proc.stdout:
        if line.startswith("epoch    1/8"):
            proc.send_signal(signal.SIGINT)
            break
    first = finish(proc, args, tmp_path, start, 240)
    assert first.returncode == 130 and read_metrics(run_dir)["status"] == "interrupted", first.stderr
    resumed = train_in_process([f"resume={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    got, want = read_metrics(run_dir), read_metrics(tmp_path / "reference")
    assert got["history"]["train_loss"] == want["history"]["train_loss"] and got["test"] == want["test"]


@pytest.mark.parametrize("stream", ["false", "true"])
def test_a_constant_target_is_said_to_hold_one_value_on_both_paths(tmp_path, stream):
    """A target with one value and no data.task: what the column holds, not what the inferred task needs."""
    import pandas as pd

    table = tmp_path / "t.parquet"
    pd.DataFrame({"x": np.arange(40) * 0.5, "y": 5.0}).to_parquet(table)
    args = ["data=csv", f"data.path={table}", "data.target=y", f"data.stream={stream}"]
    assert refusal(args, run_dir=tmp_path / "run") == (
        "data=csv: the target has only one class: it holds '5' in every row with a value, so there is nothing to "
        "learn (classification needs two classes or more, and a regression a target that varies)")
    assert refusal([*args, "data.task=binary"], run_dir=tmp_path / "run2") == (
        "data=csv: the target has only one class ('5'); classification needs at least two")


def test_streamed_dates_and_timestamps_equal_the_in_memory_ones(tmp_path, monkeypatch):
    """A text date column (with a value that is not a date) and a column of timestamps with a time zone, read
    in 50-row batches of row groups: the same columns, missing counts and inputs as the in-memory path."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlpkit.data import stream

    monkeypatch.setattr(stream, "READ_ROWS", 50)
    n = 300
    rng = np.random.default_rng(4)
    when = pd.date_range("2015-03-01 06:00", periods=n, freq="29h")
    df = pd.DataFrame({"opened": when.strftime("%d/%m/%Y").to_numpy(dtype=object),
                       "seen": when.tz_localize("America/New_York", nonexistent="shift_forward"),
                       "x": rng.normal(size=n), "churn": np.where(rng.random(n) < 0.5, "yes", "no")})
    df.loc[7, "opened"] = "soon"
    table = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), table, row_group_size=37)
    data = _stream(table, "churn")
    train_rows = _train_rows(data, n)
    mem, frame = _in_memory(table, "churn", train_rows)
    pre = data.preprocessing
    assert pre.inputs == mem.inputs and "opened" in pre.inputs and "seen" in pre.inputs
    for ours, theirs in zip(pre.columns, mem.columns):
        assert (ours.name, ours.kind, ours.codes, ours.date_format, ours.scale) == \
            (theirs.name, theirs.kind, theirs.codes, theirs.date_format, theirs.scale)
    assert [c.date_format for c in pre.columns[:2]] == ["%d/%m/%Y", "ISO8601"]
    assert pre.columns[0].missing == 1  # 'soon', counted as the in-memory load counts it
    np.testing.assert_allclose(pre.transform(frame), mem.transform(frame), rtol=1e-5, atol=1e-5)


def test_a_streamed_target_of_formatted_numbers_trains_as_the_plain_numbers(tmp_path):
    """'$12,345.67' in the target, streamed in blocks (some of which pandas may read as numbers): the same
    run as the file with the numbers written plainly, and a word among them named with its row."""
    import pandas as pd

    rng = np.random.default_rng(6)
    n = 300
    x = rng.normal(size=n)
    price = np.round(20000 + 5000 * x + rng.normal(scale=300, size=n), 2)
    fancy, plain = tmp_path / "fancy.csv", tmp_path / "plain.csv"
    pd.DataFrame({"x": x, "price": [f"${v:,.2f}" for v in price]}).to_csv(fancy, index=False)
    pd.DataFrame({"x": x, "price": price}).to_csv(plain, index=False)
    args = ["data.target=price", "data=csv", "data.stream=true", "model.hidden=[8]", "trainer.max_epochs=2",
            "trainer.batch_size=32", f"seed={SEED}"]
    for path in (fancy, plain):
        run = train_in_process([*args, f"data.path={path}", f"hydra.run.dir={tmp_path / path.stem}"], tmp_path)
        assert run.returncode == 0, run.stderr
    got, want = read_metrics(tmp_path / "fancy"), read_metrics(tmp_path / "plain")
    assert got["history"]["train_loss"] == want["history"]["train_loss"] and got["test"] == want["test"]
    words = pd.read_csv(fancy, dtype=str)
    words.loc[250, "price"] = "call us"
    words.to_csv(tmp_path / "words.csv", index=False)
    said = refusal([*args, f"data.path={tmp_path / 'words.csv'}"], run_dir=tmp_path / "run")
    assert "the target holds 'call us' at data row 251, where the first rows hold numbers" in said, said
