"""predict.py against what goes wrong around it: outputs that would destroy data (the input, an existing
file, a file of the run), outputs that cannot be written, target columns the run cannot score, damaged
or crafted run directories, headers and --keep columns that would lose a column silently, diverged
runs, metrics on the run's own training rows (--split), and --help without torch.

Two small runs are trained once for the module (a multiclass and a regression table), through train.py in
this process (`train_in_process`); the tests call `mlpkit.predict.main` in this process, and run `python`
as a process only where the process is the point.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import PYTHON, REPO, messy_table, run_python, train_in_process

pytestmark = pytest.mark.slow  # trains two runs through train.py
PREDICT_PY = REPO / "predict.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (the training table, the run directory), trained once for the module; the runs are
    started from their folder with a relative data.path, as a user does."""
    root = tmp_path_factory.mktemp("hardening")
    out = {}
    for target, task in (("species", "multiclass"), ("price", "regression")):
        messy_table(root / f"{target}.csv", n=300, task=task)
        run_dir = root / f"run_{target}"
        extra = ["data.categorical=[zip]"] if target == "species" else []
        run = train_in_process(["data=csv", f"data.path={target}.csv", f"data.target={target}", "data.drop=[id]",
                                *extra, "model.hidden=[16]", "trainer.max_epochs=4", "trainer.progress=false",
                                f"hydra.run.dir={run_dir}"], root)
        assert run.returncode == 0, run.describe()
        out[target] = (root / f"{target}.csv", run_dir)
    return out


def _error(proc) -> str:
    """The one line of a refusal (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mlpkit: error: ")
    return lines[0]


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------
# 1. the output is never the input; an existing output only with --overwrite


def test_default_output_name_keeps_all_but_the_last_suffix():
    from mlpkit.predict import default_output

    assert default_output("a.2024.csv") == "a.2024.predictions.csv"
    assert default_output("a.2025.csv") == "a.2025.predictions.csv"
    assert default_output("x.predictions.csv") == "x.predictions.predictions.csv"
    assert default_output("some/dir/new.parquet") == "new.predictions.csv"
    assert default_output("new.csv.gz") == default_output("new.tsv.xz") == "new.predictions.csv"
    assert default_output("new.gz") == "new.predictions.csv"
    assert default_output("data") == "data.predictions.csv"


def test_output_is_never_the_input_whatever_names_it(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    src = tmp_path / "in.csv"
    shutil.copy(path, src)
    before = src.read_bytes()
    (tmp_path / "link.csv").symlink_to(src)
    os.link(src, tmp_path / "hard.csv")
    for out in (src, "in.csv", tmp_path / "link.csv", tmp_path / "hard.csv", tmp_path / "sub" / ".." / "in.csv"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        for extra in ([], ["--overwrite"]):
            msg = _error(cli(run_dir, src, "-o", out, *extra))
            assert "INPUT" in msg and "never writes over it" in msg
    # the input given through a link, the output its real name
    assert "INPUT" in _error(cli(run_dir, tmp_path / "link.csv", "-o", src, "--overwrite"))
    assert src.read_bytes() == before and not _leftovers(tmp_path)


def test_the_default_output_of_a_predictions_file_is_not_that_file(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    src = tmp_path / "x.predictions.csv"
    shutil.copy(path, src)
    before = src.read_bytes()
    proc = cli(run_dir, src)
    assert proc.returncode == 0, proc.stderr
    assert src.read_bytes() == before
    assert (tmp_path / "x.predictions.predictions.csv").is_file()


def test_an_existing_output_is_replaced_only_with_overwrite(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    out = tmp_path / "p.csv"
    out.write_text("precious\n")
    msg = _error(cli(run_dir, path, "-o", out))
    assert str(out) in msg and "--overwrite" in msg
    assert out.read_text() == "precious\n"
    (tmp_path / "a.2024.predictions.csv").write_text("precious\n")  # the default name, too
    shutil.copy(path, tmp_path / "a.2024.csv")
    assert "--overwrite" in _error(cli(run_dir, tmp_path / "a.2024.csv"))
    proc = cli(run_dir, path, "-o", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("prediction,")
    assert not _leftovers(tmp_path)


def test_overwrite_through_a_symlink_replaces_the_file_it_names_not_the_link(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    assert "--overwrite" in _error(cli(run_dir, path, "-o", tmp_path / "link.csv"))
    proc = cli(run_dir, path, "-o", tmp_path / "link.csv", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().startswith("prediction,")
    assert not _leftovers(tmp_path)


def test_the_run_directorys_files_are_never_an_output(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = (copy / "metrics.json").read_bytes()
    msg = _error(cli(copy, path, "-o", copy / "metrics.json", "--overwrite"))
    assert "run directory" in msg
    assert (copy / "metrics.json").read_bytes() == before


# ---------------------------------------------------------------------------
# 2. the user's umask


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_file_mode_follows_the_umask(runs, tmp_path, cli, umask, mode):
    path, run_dir = runs["species"]
    old = os.umask(umask)
    try:
        proc = cli(run_dir, path, "-o", tmp_path / "p.csv")
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p.csv").stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------------------
# 3. outputs that cannot be written: one line, exit 2, no temporary file


def test_output_paths_that_cannot_be_written(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    (tmp_path / "folder").mkdir()
    assert "is a directory" in _error(cli(run_dir, path, "-o", tmp_path / "folder"))
    assert "does not exist" in _error(cli(run_dir, path, "-o", tmp_path / "nowhere" / "p.csv"))
    assert "cannot write" in _error(cli(run_dir, path, "-o", "/proc/mlpkit-predictions.csv"))
    assert "exists" in _error(cli(run_dir, path, "-o", "/proc/self/status"))
    assert "cannot write" in _error(cli(run_dir, path, "-o", "/proc/mlpkit-predictions.csv", "--overwrite"))
    # a pipe, and links to one: renaming a file over them (or over the link, as over /dev/stdout) is refused
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "to_fifo").symlink_to(tmp_path / "fifo")
    for special in ("fifo", "to_fifo"):
        assert "not a regular file" in _error(cli(run_dir, path, "-o", tmp_path / special, "--overwrite"))
    assert (tmp_path / "to_fifo").is_symlink() and (tmp_path / "fifo").is_fifo()
    assert not _leftovers(tmp_path) and not _leftovers(tmp_path / "folder")


def test_a_read_only_folder_and_a_full_disk(runs, tmp_path, cli, monkeypatch):
    import pandas as pd

    import mlpkit.predict as predict

    path, run_dir = runs["species"]
    ro = tmp_path / "ro"
    ro.mkdir()

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    with monkeypatch.context() as m:  # root writes into a chmod 0o555 folder, so the error is simulated
        m.setattr(predict.tempfile, "mkstemp", refuse)
        msg = _error(cli(run_dir, path, "-o", ro / "p.csv"))
    assert "cannot write" in msg and "read-only" in msg.lower()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    for where in ("to_csv", "fsync"):
        with monkeypatch.context() as m:
            if where == "to_csv":
                m.setattr(pd.DataFrame, "to_csv", full)
            else:
                m.setattr(predict.os, "fsync", full)
            msg = _error(cli(run_dir, path, "-o", tmp_path / "p.csv"))
        assert "disk is full" in msg
        assert not (tmp_path / "p.csv").exists() and not _leftovers(tmp_path)


def test_export_to_a_place_that_cannot_be_written(runs, tmp_path, cli):
    pytest.importorskip("onnxscript")
    _, run_dir = runs["species"]
    assert "does not exist" in _error(cli(run_dir, "--export", tmp_path / "nowhere" / "m.onnx"))
    (tmp_path / "m.onnx").write_text("old")
    assert "--overwrite" in _error(cli(run_dir, "--export", tmp_path / "m.onnx"))
    msg = _error(cli(run_dir, "--export", "/proc/mlpkit-model.onnx"))
    assert "cannot write" in msg
    old = os.umask(0o027)
    try:
        proc = cli(run_dir, "--export", tmp_path / "m.onnx", "--overwrite")
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    for name in ("m.onnx", "m.onnx.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "m.onnx").stat().st_size > 100 and not _leftovers(tmp_path)


# ---------------------------------------------------------------------------
# 4. a target column with no value the run knows


def test_target_columns_without_a_known_value_predict_all_rows_and_skip_the_metrics(runs, tmp_path, cli):
    import pandas as pd

    species_path, species_run = runs["species"]
    price_path, price_run = runs["price"]
    frame = pd.read_csv(species_path)
    cases = {
        "unknown_labels": (species_run, frame.assign(species="Emperor")),
        "empty": (species_run, frame.assign(species="")),
        "numbers_for_classes": (species_run, frame.assign(species=np.linspace(0.5, 9.5, len(frame)))),
        "labels_for_numbers": (price_run, pd.read_csv(price_path).assign(price="expensive")),
        "price_empty": (price_run, pd.read_csv(price_path).assign(price=np.nan)),
    }
    for name, (run_dir, data) in cases.items():
        src = tmp_path / f"{name}.csv"
        data.to_csv(src, index=False)
        proc = cli(run_dir, src, "-o", tmp_path / f"{name}.out.csv")
        assert proc.returncode == 0, (name, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "no metrics" in proc.stderr and "metrics on" not in proc.stderr, (name, proc.stderr)
        assert len(pd.read_csv(tmp_path / f"{name}.out.csv")) == len(data)


# ---------------------------------------------------------------------------
# 5. a damaged or crafted run directory: one line naming the file and the field


def _edit(name, whole=False):
    """A damage that edits the JSON file `name` in place (fn(data)), or replaces it (whole: fn's result)."""
    def change(fn):
        def apply(run: Path, other: Path):
            data = json.loads((run / name).read_text())
            out = fn(data, other)
            (run / name).write_text(json.dumps(out if whole else data))
        return apply
    return change


def _set(name, key, value):
    return _edit(name)(lambda d, o: d.__setitem__(key, value))


def _kwargs(key, value):
    return _edit("model.json")(lambda d, o: d["kwargs"].__setitem__(key, value))


def _column(i, key, value):
    return _edit("preprocessing.json")(lambda d, o: d["columns"][i].__setitem__(key, value))


def _copy_from_other(*names):
    def apply(run: Path, other: Path):
        for n in names:
            shutil.copy(other / n, run / n)
    return apply


# name -> (damage(run copy, another run), words the message must hold: the file and the field)
DAMAGE = {
    "metrics_a_list": (_edit("metrics.json", whole=True)(lambda d, o: [d]), ["metrics.json", "list", "object"]),
    "metrics_kept_a_path": (_set("metrics.json", "kept", "../../../etc/passwd"), ["metrics.json", "'kept'"]),
    "metrics_kept_a_number": (_set("metrics.json", "kept", 3), ["metrics.json", "'kept'"]),
    "metrics_status_unknown": (_set("metrics.json", "status", "great"), ["metrics.json", "'status'"]),
    "metrics_task_unknown": (_set("metrics.json", "task", "ranking"), ["metrics.json", "'task'"]),
    "metrics_classes_other": (_set("metrics.json", "classes", ["a", "b", "c"]), ["metrics.json", "'classes'"]),
    "metrics_epochs_text": (_set("metrics.json", "epochs_run", "many"), ["metrics.json", "'epochs_run'"]),
    "metrics_not_json": (lambda r, o: (r / "metrics.json").write_text("{oops"), ["metrics.json", "JSON"]),
    "pre_a_list": (_edit("preprocessing.json", whole=True)(lambda d, o: [d]), ["preprocessing.json", "object"]),
    "pre_task_unknown": (_set("preprocessing.json", "task", "ranking"), ["preprocessing.json", "'task'"]),
    "pre_classes_short": (_set("preprocessing.json", "classes", ["Adelie", "Gentoo"]),
                          ["preprocessing.json", "'classes'"]),
    "pre_classes_nested": (_set("preprocessing.json", "classes", [["Adelie"], "Chinstrap", "Gentoo"]),
                           ["preprocessing.json", "'classes'"]),
    "pre_classes_a_dict": (_set("preprocessing.json", "classes", {"a": 1}), ["preprocessing.json", "'classes'"]),
    "pre_inputs_other": (_edit("preprocessing.json")(lambda d, o: d.__setitem__("inputs", d["inputs"][::-1])),
                         ["preprocessing.json", "'inputs'"]),
    "pre_inputs_short": (_edit("preprocessing.json")(lambda d, o: d.__setitem__("inputs", d["inputs"][:3])),
                         ["preprocessing.json", "'inputs'"]),
    "pre_no_columns": (_edit("preprocessing.json")(lambda d, o: d.pop("columns")),
                       ["preprocessing.json", "'columns'"]),
    "pre_column_missing": (_edit("preprocessing.json")(lambda d, o: d["columns"].pop(3)),
                           ["preprocessing.skops", "preprocessing.json", "columns"]),
    "pre_columns_a_dict": (_set("preprocessing.json", "columns", {"x": 1}), ["preprocessing.json", "'columns'"]),
    "pre_vocabulary_null": (_column(2, "vocabulary", None), ["preprocessing.json", "'columns[2].vocabulary'"]),
    "pre_vocabulary_numbers": (_column(2, "vocabulary", [1, 2]), ["preprocessing.json", "'columns[2].vocabulary'"]),
    "pre_vocabulary_short": (_column(2, "vocabulary", ["Biscoe"]), ["preprocessing.skops", "vocabulary"]),
    "pre_column_kind": (_column(4, "kind", "fancy"), ["preprocessing.json", "'columns[4].kind'"]),
    "pre_date_format": (_edit("preprocessing.json")(lambda d, o: d["columns"][4].update(codes="date",
                                                                                       date_format="%Q")),
                        ["preprocessing.json", "'columns[4].date_format'"]),
    "pre_column_extra_field": (_column(4, "evil", 1), ["preprocessing.json", "'columns[4].evil'"]),
    "pre_y_std_zero": (_set("preprocessing.json", "y_std", 0), ["preprocessing.json", "'y_std'"]),
    "skops_of_another_run": (_copy_from_other("preprocessing.skops"), ["preprocessing.skops", "does not match"]),
    "model_a_list": (_edit("model.json", whole=True)(lambda d, o: [d]), ["model.json", "object"]),
    "model_kwargs_a_list": (_set("model.json", "kwargs", [1, 2]), ["model.json", "'kwargs'"]),
    "model_unknown": (_set("model.json", "model", "transformer"), ["model.json", "'model'"]),
    "model_hidden_floats": (_kwargs("hidden", [1e7, 1e7]), ["model.json", "'kwargs.hidden'"]),
    "model_hidden_huge": (_kwargs("hidden", [10_000_000, 10_000_000]), ["model.json", "'kwargs.hidden'", "holds"]),
    "model_hidden_other": (_kwargs("hidden", [8]), ["model.json"]),
    "model_in_dim": (_kwargs("in_dim", 3), ["model.json", "'kwargs.in_dim'"]),
    "model_out_dim": (_kwargs("out_dim", 7), ["model.json", "'kwargs.out_dim'"]),
    "model_activation": (_kwargs("activation", "nope"), ["model.json", "'kwargs'"]),
    # the checkpoint the run kept ({kept}.pt: refit.pt, as a table's run refits by default)
    "checkpoint_of_another_run": (lambda r, o: shutil.copy(o / _kept(o), r / _kept(r)), ["{kept}.pt", "another run"]),
    "checkpoint_garbage": (lambda r, o: (r / _kept(r)).write_bytes(b"not a checkpoint"), ["{kept}.pt"]),
}


def _kept(run: Path) -> str:
    return f"checkpoints/{json.loads((run / 'metrics.json').read_text())['kept']}.pt"


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_directory_gets_one_line_naming_the_file_and_the_field(runs, tmp_path, cli, case):
    import mlpkit
    from mlpkit.errors import ConfigError

    path, run_dir = runs["species"]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    damage, words = DAMAGE[case]
    damage(copy, runs["price"][1])
    msg = _error(cli(copy, path, "-o", tmp_path / "p.csv"))
    kept = json.loads((run_dir / "metrics.json").read_text())["kept"]
    for word in words:
        assert word.format(kept=kept) in msg, (case, msg)
    assert "--checkpoint" not in msg
    assert not (tmp_path / "p.csv").exists() and not _leftovers(tmp_path)
    with pytest.raises(ConfigError) as err:
        mlpkit.load_run(copy)
    assert f"mlpkit: error: {err.value}" == msg


def test_a_damaged_splits_file_is_named(runs, tmp_path, cli, monkeypatch):
    path, run_dir = runs["species"]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    np.savez(copy / "splits.npz", train=np.zeros((2, 2)), val=np.arange(3), test=np.arange(3))
    msg = _error(cli(copy, path, "--split", "test", "-o", tmp_path / "p.csv"))
    assert "splits.npz" in msg and "'train'" in msg
    (copy / "splits.npz").write_bytes(b"garbage")
    assert "splits.npz" in _error(cli(copy, path, "--split", "test", "-o", tmp_path / "p.csv"))
    import mlpkit.predict as predict

    shutil.copy(run_dir / "splits.npz", copy / "splits.npz")
    monkeypatch.setattr(predict, "SPLITS_LIMIT", 100)  # a file that unpacks to more is not unpacked
    assert "unpacks to" in _error(cli(copy, path, "--split", "test", "-o", tmp_path / "p.csv"))
    monkeypatch.undo()
    np.savez(copy / "splits.npz", train=np.arange(3), val=np.arange(3, 6), test=np.array([7, 10 ** 6]))
    msg = _error(cli(copy, path, "--split", "test", "-o", tmp_path / "p.csv"))
    assert "splits.npz" in msg and "1000000" in msg
    assert not (tmp_path / "p.csv").exists() and not _leftovers(tmp_path)


def test_a_damaged_input_table_is_one_line(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    pd.read_csv(path).to_parquet(tmp_path / "in.parquet")
    data = (tmp_path / "in.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[:len(data) // 2])
    noisy = bytearray(data)
    for i in range(200, len(data) - 2000, 97):
        noisy[i] = (noisy[i] * 7 + 13) % 256
    (tmp_path / "noise.parquet").write_bytes(bytes(noisy))
    for name in ("cut.parquet", "noise.parquet"):
        msg = _error(cli(run_dir, tmp_path / name, "-o", tmp_path / "p.csv"))
        assert name in msg and "not a readable" in msg
    assert not (tmp_path / "p.csv").exists() and not _leftovers(tmp_path)


def test_a_long_output_name_and_a_closed_pipe(runs, tmp_path, cli, monkeypatch):
    import pandas as pd

    import mlpkit.predict as predict

    path, run_dir = runs["species"]
    long = tmp_path / ("p" * 250 + ".csv")  # 254 bytes: the temporary name beside it must fit too
    proc = cli(run_dir, path, "-o", long)
    assert proc.returncode == 0, proc.stderr
    assert long.is_file() and not _leftovers(tmp_path)

    def closed(*args, **kwargs):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
    monkeypatch.setattr(pd.DataFrame, "to_csv", closed)
    monkeypatch.setattr(predict.os, "dup2", lambda *a: None)
    monkeypatch.setattr(sys.stdout, "fileno", lambda: 1, raising=False)
    proc = cli(run_dir, path, "-o", "-")  # `predict.py ... -o - | head`: quiet, exit 1, as before
    assert proc.returncode == 1 and "error" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------
# 6. columns lost silently; diverged runs


def test_a_repeated_feature_name_in_the_header_is_refused(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    lines = path.read_text().splitlines(keepends=True)
    header = lines[0].replace("mass", "mass", 1).rstrip("\n") + ",mass\n"
    rows = [line.rstrip("\n") + ",1\n" if line.strip() else line for line in lines[1:]]
    bad = tmp_path / "dupe.csv"
    bad.write_text(header + "".join(rows))
    msg = _error(cli(run_dir, bad, "-o", tmp_path / "p.csv"))
    assert "'mass'" in msg and "twice" in msg


def test_keep_never_loses_a_column_to_the_output_columns(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    src = tmp_path / "in.csv"
    pd.read_csv(path).assign(prediction="mine", proba_Adelie=0.5).to_csv(src, index=False)
    for col in ("prediction", "proba_Adelie"):
        msg = _error(cli(run_dir, src, "--keep", "id", col, "-o", tmp_path / "p.csv"))
        assert repr(col) in msg and "--keep" in msg
    proc = cli(run_dir, src, "--keep", "id", "id", "-o", tmp_path / "p.csv")  # a name given twice: once
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(tmp_path / "p.csv").columns)[:2] == ["id", "prediction"]


def test_a_diverged_run_says_which_weights_it_uses_or_refuses(runs, tmp_path, cli):
    path, run_dir = runs["species"]
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics.update(status="diverged", kept="best")
    (copy / "metrics.json").write_text(json.dumps(metrics))
    proc = cli(copy, path, "-o", tmp_path / "p.csv")
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "diverged" in warning[0] and "best.pt" in warning[0] and "epoch" in warning[0]
    metrics.update(epochs_run=0, best_epoch=0)
    (copy / "metrics.json").write_text(json.dumps(metrics))
    msg = _error(cli(copy, path, "-o", tmp_path / "q.csv"))
    assert "diverged" in msg and "untrained" in msg
    with pytest.warns(RuntimeWarning, match="diverged"):
        import mlpkit

        metrics.update(epochs_run=3, best_epoch=3)
        (copy / "metrics.json").write_text(json.dumps(metrics))
        mlpkit.load_run(copy)


# ---------------------------------------------------------------------------
# 7. the run's own training file: said so, and --split


@pytest.mark.parametrize("target", ["species", "price"])
def test_split_test_reproduces_the_runs_test_metrics(runs, tmp_path, target):
    import mlpkit

    path, run_dir = runs[target]
    saved = json.loads((run_dir / "metrics.json").read_text())["test"]
    run = mlpkit.load_run(run_dir)
    lines = []
    stats = run.predict_file(str(path), str(tmp_path / "p.csv"), split="test", report=lines.append)
    n_test = len(np.load(run_dir / "splits.npz")["test"])
    assert stats["rows"] == n_test
    for key, value in stats["metrics"].items():
        if isinstance(value, float):
            assert value == pytest.approx(saved[key], rel=1e-6, abs=1e-6), key
    if target == "species":
        assert stats["metrics"]["confusion_matrix"] == saved["confusion_matrix"]
    assert any("test split" in line for line in lines)
    # a run directory without splits.npz: the split is drawn again from the recorded seed and fractions
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "splits.npz").unlink()
    again = mlpkit.load_run(copy).predict_file(str(path), str(tmp_path / "q.csv"), split="test",
                                               report=lambda m: None)
    assert (tmp_path / "q.csv").read_bytes() == (tmp_path / "p.csv").read_bytes()
    assert again["metrics"] == stats["metrics"]


def test_splits_partition_the_training_file(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    counts = {}
    for split in ("train", "val", "test", "all"):
        proc = cli(run_dir, path, "--split", split, "--keep", "id", "-o", tmp_path / f"{split}.csv")
        assert proc.returncode == 0, proc.stderr
        counts[split] = pd.read_csv(tmp_path / f"{split}.csv")["id"]
        assert counts[split].is_monotonic_increasing  # input order
    assert sorted([*counts["train"], *counts["val"], *counts["test"]]) == sorted(counts["all"])
    assert len(counts["all"]) == 300


def test_metrics_on_the_training_file_say_so(runs, tmp_path, cli):
    import pandas as pd

    path, run_dir = runs["species"]
    proc = cli(run_dir, path, "-o", tmp_path / "p.csv")
    assert proc.returncode == 0 and "training file" in proc.stderr and "--split test" in proc.stderr
    shutil.copy(path, tmp_path / "copy.csv")  # a copy of it: the same bytes
    proc = cli(run_dir, tmp_path / "copy.csv", "-o", tmp_path / "q.csv")
    assert proc.returncode == 0 and "training file" in proc.stderr
    pd.read_csv(path).head(50).to_csv(tmp_path / "new.csv", index=False)  # other rows: nothing said
    proc = cli(run_dir, tmp_path / "new.csv", "-o", tmp_path / "r.csv")
    assert proc.returncode == 0 and "training file" not in proc.stderr
    msg = _error(cli(run_dir, tmp_path / "new.csv", "--split", "test", "-o", tmp_path / "s.csv"))
    assert "--split test" in msg and "training file" in msg


# ---------------------------------------------------------------------------
# 8. --help and argument errors without torch; one real process


def test_help_and_usage_errors_do_not_import_torch_or_pandas(tmp_path):
    code = ("import sys\nfrom mlpkit.predict import main\n"
            "for argv in (['--help'], ['--split', 'nope', 'r', 'i'], []):\n"
            "    try:\n        main(argv)\n    except SystemExit as stop:\n        print('exit', stop.code)\n"
            "print(sorted(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))\n")
    proc = subprocess.run([PYTHON, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-4:] == ["exit 0", "exit 2", "exit 2", "[]"], proc.stdout
    assert "--overwrite" in proc.stdout and "--split" in proc.stdout


def test_as_a_process_the_input_survives_and_the_refusal_is_one_line(runs, tmp_path):
    path, run_dir = runs["species"]
    src = tmp_path / "in.csv"
    shutil.copy(path, src)
    before = src.read_bytes()
    proc = run_python(PREDICT_PY, [str(run_dir), str(src), "-o", str(src), "--overwrite"], tmp_path)
    assert "INPUT" in _error(proc)
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
