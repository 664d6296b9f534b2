"""trainer.refit=true: after the run has chosen its best epoch on the val rows, a fresh model trained on the
train + val rows for that many epochs is the kept model (checkpoints/refit.pt): what metrics.json's test
metrics are of and what predict.py applies; a refit stopped by a signal leaves a run that resumes to the same
refit; a run that cannot be refitted (streamed) says why and keeps its first model."""

from __future__ import annotations

import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch

from support import finish, messy_table, popen_train, read_metrics, train_in_process

ARGS = ["model.hidden=[16]", "trainer.max_epochs=12", "early_stopping.patience=3", "trainer.batch_size=4",
        "trainer.progress=false", "trainer.refit=true", "trainer.refit_models=1", "seed=3"]


def _args(table, *more):
    return ["data=csv", f"data.path={table}", "data.target=churn", *ARGS, *more]


def _split_metrics(run, table, split):
    """The run's own metrics (mlpkit.metrics, as metrics.json has them) of its kept model on one split."""
    from mlpkit.tasks import TASKS

    df = pd.read_csv(table)
    rows = np.load(run.run_dir / "splits.npz")[split]
    proba = run.predict_proba(df.iloc[rows])
    y = df["churn"].iloc[rows].astype(str).map({c: i for i, c in enumerate(run.classes)}).to_numpy()
    return TASKS["binary"].metrics(y.reshape(-1, 1).astype("float32"), np.log(proba[:, 1:] / proba[:, :1]), 0.0, 1.0)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    table = messy_table(root / "t.csv", n=400, seed=1, task="binary")
    run = train_in_process([*_args(table), f"hydra.run.dir={root / 'run'}"], root)
    assert run.returncode == 0, run.stderr
    return table, root / "run", run


def test_the_refit_is_the_kept_model_trained_on_train_and_val_for_the_best_epochs(refitted):
    import mlpkit

    table, run_dir, run = refitted
    m = read_metrics(run_dir)
    splits = np.load(run_dir / "splits.npz")
    assert m["kept"] == "refit" and (run_dir / "checkpoints" / "refit.pt").is_file()
    r = m["refit"]
    assert r["epochs"] == m["best_epoch"] >= 1 and len(r["history"]["train_loss"]) == r["epochs"]
    assert r["train_rows"] == len(splits["train"]) + len(splits["val"])
    assert f"refit  a fresh model on the {len(splits['train'])} train + {len(splits['val'])} val rows for " \
           f"{r['epochs']} epoch" in run.stdout
    kept, first = mlpkit.load_run(run_dir), mlpkit.load_run(run_dir, "best")
    assert kept.checkpoint == "refit" and first.checkpoint == "best"
    for name, want in (("refit", m["test"]), ("best", r["test_before"])):  # each model's own test metrics
        got = _split_metrics(kept if name == "refit" else first, table, "test")
        assert got["accuracy"] == pytest.approx(want["accuracy"]) and got["roc_auc"] == pytest.approx(want["roc_auc"])
    a, b = (torch.load(run_dir / "checkpoints" / f"{n}.pt", weights_only=True)["model"] for n in ("refit", "best"))
    assert any(not torch.equal(a[k], b[k]) for k in a), "the refit holds the first model's weights"


def test_a_refit_stopped_by_a_signal_resumes_to_the_same_refit(refitted, tmp_path):
    table, run_dir, _ = refitted
    stopped = tmp_path / "run"
    args = [*_args(table), f"hydra.run.dir={stopped}"]
    start = time.perf_counter()
    proc = popen_train(args, tmp_path)
    for line in proc.stdout:
        if line.startswith("refit  a fresh model"):
            proc.send_signal(signal.SIGTERM)
            break
    first = finish(proc, args, tmp_path, start, 240)
    m = read_metrics(stopped)
    assert first.returncode == 130 and m["status"] == "interrupted", first.stderr
    # in one of its epochs, or (on a busy machine) once they were done
    assert "refit" in m["message"] and "resume=<run_dir>" in m["message"], m["message"]
    resumed = train_in_process([f"resume={stopped}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    got, want = read_metrics(stopped), read_metrics(run_dir)
    assert got["status"] == want["status"] and got["kept"] == "refit" and got["test"] == want["test"]
    a, b = (torch.load(d / "checkpoints" / "refit.pt", weights_only=True)["model"] for d in (stopped, run_dir))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_streamed_run_keeps_its_first_model_and_says_why(tmp_path, cli):
    table = messy_table(tmp_path / "t.csv", n=200, seed=2, task="binary")
    run = train_in_process([*_args(table, "data.stream=true", "trainer.max_epochs=3"),
                            f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert run.returncode == 0, run.stderr
    m = read_metrics(tmp_path / "run")
    assert m["kept"] in ("best", "last") and "not refitted" in m["refit"]["skipped"]
    assert "trainer.refit=true: a streamed run (data.stream) is not refitted" in run.stdout + run.stderr
    assert not (tmp_path / "run" / "checkpoints" / "refit.pt").exists()
    proc = cli(tmp_path / "run", table, "--checkpoint", "refit", "-o", tmp_path / "p.csv")
    assert proc.returncode == 2 and proc.stderr.strip().endswith("has no refit model (trainer.refit=true trains "
                                                                 "one); choose best or last"), proc.stderr
    assert not (tmp_path / "p.csv").exists()


def test_a_run_that_keeps_its_last_epoch_is_refitted_for_all_its_epochs(tmp_path):
    table = messy_table(tmp_path / "t.csv", n=200, seed=2, task="binary")
    run = train_in_process([*_args(table, "early_stopping.restore_best=false", "trainer.max_epochs=40",
                                   "trainer.batch_size=32", "optimizer.lr=0.01"),
                            f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert run.returncode == 0, run.stderr
    m = read_metrics(tmp_path / "run")
    assert m["kept"] == "refit" and m["refit"]["kept_before"] == "last"
    assert m["refit"]["epochs"] == m["epochs_run"] and len(m["refit"]["history"]["train_loss"]) == m["epochs_run"]
    assert m["status"] == "early_stopped" and m["epochs_run"] > m["best_epoch"]  # the last epoch, not the best one


def test_a_refit_that_cannot_be_written_leaves_an_interrupted_run_that_resumes(refitted, tmp_path, monkeypatch):
    """A full disk at refit.pt: one line, status interrupted with the first model whole, and the resume (with
    room again) gives the same refit as the run that had room."""
    import errno

    from mlpkit.training import checkpoint

    table, run_dir, _ = refitted
    real = checkpoint.save_checkpoint

    def full(path, state):
        if path.name == "refit.pt":
            raise checkpoint.RunError(f"could not write {path}: {__import__('os').strerror(errno.ENOSPC)}")
        real(path, state)

    monkeypatch.setattr(checkpoint, "save_checkpoint", full)
    stopped = tmp_path / "run"
    first = train_in_process([*_args(table), f"hydra.run.dir={stopped}"], tmp_path)
    m = read_metrics(stopped)
    assert first.returncode == 130 and m["status"] == "interrupted", first.stderr
    assert "could not write" in m["message"] and "resume=<run_dir>" in m["message"], m["message"]
    assert "Traceback" not in first.stderr and not (stopped / "checkpoints" / "refit.pt").exists()
    monkeypatch.setattr(checkpoint, "save_checkpoint", real)
    resumed = train_in_process([f"resume={stopped}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert read_metrics(stopped)["test"] == read_metrics(run_dir)["test"]


def test_refit_models_keeps_the_average_of_a_seed_ensemble(refitted, tmp_path):
    """trainer.refit_models=3: three refit models (seeds 3, 4, 5), the first the very model of
    trainer.refit_models=1; the kept model averages their probabilities: metrics.json's test metrics, what
    load_run and predict apply; each member's own test metrics beside them. A checkpoint whose members do
    not add up is refused in one line."""
    import mlpkit
    from mlpkit.errors import ConfigError

    table, run_dir, _ = refitted
    ens = tmp_path / "run"
    args = [a.replace("refit_models=1", "refit_models=3") for a in _args(table)]
    run = train_in_process([*args, f"hydra.run.dir={ens}"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert "refit  3 fresh models (seeds 3..5) on the" in run.stdout and "x 3 models" in run.stdout
    m, one = read_metrics(ens), read_metrics(run_dir)
    assert m["kept"] == "refit" and m["refit"]["models"] == 3 and len(m["refit"]["members_test"]) == 3
    assert m["refit"]["members_test"][0] == one["test"]  # member 0 is the single refit
    state = torch.load(ens / "checkpoints" / "refit.pt", weights_only=True)
    single = torch.load(run_dir / "checkpoints" / "refit.pt", weights_only=True)["model"]
    assert state["members"] == 3 and len(state["model"]) == 3 * len(single)
    assert all(torch.equal(state["model"][f"nets.0.{k}"], v) for k, v in single.items())
    for i in (1, 2):
        assert any(not torch.equal(state["model"][f"nets.{i}.{k}"], v) for k, v in single.items())

    kept = mlpkit.load_run(ens)
    df = pd.read_csv(table)
    rows = df.iloc[np.load(ens / "splits.npz")["test"]]
    X = torch.from_numpy(kept.preprocessing.transform(rows))
    with torch.no_grad():
        mean = torch.stack([torch.sigmoid(net(X).double())[:, 0] for net in kept.model.nets]).mean(0)
    np.testing.assert_allclose(kept.predict_proba(rows)[:, 1], mean.numpy(), rtol=1e-5, atol=1e-6)
    got = _split_metrics(kept, table, "test")
    assert got["accuracy"] == pytest.approx(m["test"]["accuracy"])
    assert got["roc_auc"] == pytest.approx(m["test"]["roc_auc"])

    for members, weights in ((0, state["model"]), (10 ** 9, state["model"]), (2, state["model"]),
                             (True, state["model"]), (3, {k: v for k, v in state["model"].items()
                                                          if not k.startswith("nets.2.")})):
        torch.save({**state, "members": members, "model": weights}, ens / "checkpoints" / "refit.pt")
        with pytest.raises(ConfigError) as err:
            mlpkit.load_run(ens)
        line = str(err.value)
        assert "\n" not in line and "refit.pt" in line and ("members" in line or "model" in line), line
