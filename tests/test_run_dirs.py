"""A run's directory is its own: new or empty (resume aside), locked while it trains, files with the user's
umask; and the refusals of the command line that came with them (one line, before anything is written)."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY, compose_config, finished_run, good_csv, popen_train, read_metrics, refusal, train_in_process
from mlpkit.app.cli import check_resume, check_run, claim_dir, release_dirs, run_name, train_from_config
from mlpkit.errors import ConfigError


@pytest.fixture(autouse=True)
def _release():
    yield
    release_dirs()


def _snapshot(root: Path) -> dict:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(root).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished run (1 epoch of TINY), made in-process."""
    return finished_run(tmp_path_factory.mktemp("done") / "run", TINY)


# ---------------------------------------------------------------------------
# New or empty, and one run at a time


def test_a_finished_run_or_a_folder_of_files_is_never_a_new_run_directory(tmp_path, done):
    before = _snapshot(done)
    with pytest.raises(ConfigError, match=r"hydra.run.dir=.*not empty.*already ran there.*resume="):
        claim_dir(done, "hydra.run.dir")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match=r"not empty \(it holds 1 file of its own, e.g. 'thesis.tex'\)"):
        claim_dir(mine, "hydra.run.dir")
    with pytest.raises(ConfigError, match=r"hydra.run.dir=/: .*not empty"):
        claim_dir(Path("/"), "hydra.run.dir")
    with pytest.raises(ConfigError, match=r"hydra.sweep.dir=.*not empty"):
        claim_dir(done.parent, "hydra.sweep.dir")  # a finished sweep's folder: its jobs are in it
    assert _snapshot(done) == before and (mine / "thesis.tex").read_text() == "mine"
    claim_dir(tmp_path / "new" / "run", "hydra.run.dir")  # new: made; empty: fine
    (tmp_path / "empty").mkdir()
    claim_dir(tmp_path / "empty", "hydra.run.dir")


def test_a_file_or_an_unwritable_parent_is_one_line(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="it is a file, not a directory"):
        claim_dir(tmp_path / "f", "hydra.run.dir")
    with pytest.raises(ConfigError, match="cannot create or write the run directory"):
        claim_dir(tmp_path / "f" / "run", "hydra.run.dir")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot create or write the run directory"):
            claim_dir(locked / "run", "hydra.run.dir")


def test_a_directory_another_run_holds_is_refused_untouched(tmp_path, done):
    claim_dir(tmp_path / "a", "hydra.run.dir")  # flock is per open file: a second claim here is another run
    with pytest.raises(ConfigError, match=r"hydra.run.dir=.*/a: the directory is in use by another run"):
        claim_dir(tmp_path / "a", "hydra.run.dir")
    claim_dir(done, "hydra.run.dir", resume=True)
    before = _snapshot(done)
    with pytest.raises(ConfigError, match="in use by another run"):
        claim_dir(done, "hydra.run.dir", resume=True)  # resume of a run that is training
    assert _snapshot(done) == before


def test_check_run_refuses_a_finished_run_before_hydra_writes(tmp_path, done, capsys):
    before = _snapshot(done)
    cfg = compose_config([*TINY, f"hydra.run.dir={done}"], with_hydra=True)
    with pytest.raises(SystemExit) as exit_:
        check_run(cfg)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlpkit: error: hydra.run.dir=") and "not empty" in err and "\n" not in err
    assert _snapshot(done) == before


def test_two_runs_on_one_directory(tmp_path):
    """The second run started on a directory the first trains in: one line, exit 2, the first's files
    untouched and consistent (its config with its own metrics)."""
    run_dir = tmp_path / "shared"
    first = popen_train(["data=classification", "data.n_samples=120", "data.n_features=4", "model.hidden=[8]",
                         "trainer.max_epochs=100000", "trainer.progress=false", "early_stopping=none", "seed=1",
                         f"hydra.run.dir={run_dir}"], tmp_path / "a")
    try:
        while first.poll() is None and not (run_dir / "checkpoints" / "last.pt").exists():
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()
        second = train_in_process([*TINY, "seed=2", f"hydra.run.dir={run_dir}"], tmp_path / "b")
        still_running = first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        out, err = first.communicate()
    assert second.returncode == 2, second.describe()
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlpkit: error: hydra.run.dir={run_dir}"), second.describe()
    assert ("in use by another run" if still_running else "not empty") in lines[0]
    assert first.returncode == 130, err
    assert "seed=1" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["seed"] == 1
    assert read_metrics(run_dir)["status"] == "interrupted"


# ---------------------------------------------------------------------------
# Files with the user's umask


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_a_run_writes_honours_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        run = finished_run(tmp_path / "run", ["data=csv", f"data.path={good_csv(tmp_path / 't.csv')}",
                                              "data.target=label", "model.hidden=[4]", "trainer.max_epochs=1",
                                              "trainer.progress=false"])
    finally:
        os.umask(old)
    files = [p for p in run.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"metrics.json", "last.pt", "best.pt", "preprocessing.json", "model.json", "splits.npz",
            "data_source.json"} <= names, names
    assert any(n.startswith("events.out.tfevents") for n in names)
    wrong = {str(p.relative_to(run)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o666 & ~umask}
    assert not wrong, f"umask {oct(umask)}: {wrong}"


# ---------------------------------------------------------------------------
# A TensorBoard writer on a full disk


def test_a_full_disk_under_the_event_writer_ends_the_run_interrupted(tmp_path, monkeypatch, capfd):
    from tensorboard.summary.writer import record_writer

    real, count = record_writer.RecordWriter.write, [0]

    def full(self, data):
        count[0] += 1
        if count[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data)

    monkeypatch.setattr(record_writer.RecordWriter, "write", full)
    cfg = compose_config([*TINY, "trainer.max_epochs=5", "trainer.log_every_n_steps=1"])
    with pytest.raises(SystemExit) as exit_:
        train_from_config(cfg, tmp_path)
    assert exit_.value.code == 130
    metrics = read_metrics(tmp_path)
    assert metrics["status"] == "interrupted", metrics["message"]
    assert "TensorBoard event file" in metrics["message"] and "the disk is full" in metrics["message"]
    assert "resume=" in metrics["message"]
    assert "Traceback" not in capfd.readouterr().err
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------------------
# Resume: the same data, and history lists of one length


def _resume_config(run_dir: Path, *more: str):
    saved = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    return compose_config([*saved, *more, f"resume={run_dir}"])


@pytest.mark.parametrize("change, needle", [("flip", "its sha256 differs: same size, other content"),
                                            ("shuffle", "its sha256 differs: same size, other content"),
                                            ("append", "its size went from")])
def test_resume_refuses_a_data_file_that_changed(tmp_path, change, needle):
    csv = good_csv(tmp_path / "t.csv")
    run = finished_run(tmp_path / "run", ["data=csv", f"data.path={csv}", "data.target=label", "model.hidden=[4]",
                                          "trainer.max_epochs=1", "trainer.progress=false"])
    record = json.loads((run / "data_source.json").read_text())
    assert record["size"] == csv.stat().st_size and len(record["sha256"]) == 64
    check_resume(_resume_config(run, "trainer.max_epochs=2"), run)  # unchanged: goes on (nothing raised)
    lines = csv.read_text().splitlines()
    if change == "flip":
        body = [line.replace("cat", "xxx").replace("dog", "cat").replace("xxx", "dog") for line in lines[1:]]
    elif change == "shuffle":
        body = lines[:0:-1]
    else:
        body = [*lines[1:], lines[1]]
    csv.write_text("\n".join([lines[0], *body]) + "\n")
    before = _snapshot(run)
    with pytest.raises(ConfigError, match=rf"data.path={csv} changed since the run trained on it \({needle}"):
        check_resume(_resume_config(run, "trainer.max_epochs=2"), run)
    assert _snapshot(run) == before


def test_epoch_seconds_has_one_entry_per_epoch_after_resumes(tmp_path):
    train_from_config(compose_config([*TINY, "early_stopping=none"]), tmp_path)
    for epochs in (2, 3):
        train_from_config(compose_config([*TINY, "early_stopping=none", f"trainer.max_epochs={epochs}",
                                          f"resume={tmp_path}"]), tmp_path)
        history = read_metrics(tmp_path)["history"]
        lengths = {k: len(v) for k, v in history.items() if k != "grad_norm"}
        assert set(lengths.values()) == {epochs}, lengths


# ---------------------------------------------------------------------------
# One line for what used to be Hydra's usage, a traceback, or silent nonsense


@pytest.mark.parametrize("args, needle", [
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range; allowed: [1, inf)"),
    (["model.hidden=64,32"], "model.hidden is a list; write it in brackets: model.hidden=[64,32] (to sweep "
                             "over lists: -m 'model.hidden=[64,32],[64]')"),
    (["-m", "model.hidden=64,32"], "model.hidden=[64,32]"),
    (["optimizer.lr=0.1,0.2"], "add -m before the overrides"),
    (["optimizer=sgd", "-m", "seed=0,1"], "-m comes after the override 'optimizer=sgd'; put -m"),
    (["optimizer=sgd", "--cfg", "job", "seed=1"], "python train.py --cfg job optimizer=sgd"),
    (["data=csv", "data.path=x.csv", "data.drop=id,name"], "data.drop=[id,name]"),
    (["data.target=${oc.env:MLPKIT_SURELY_UNSET}"], "data.target: the environment variable MLPKIT_SURELY_UNSET "
                                                    "is not set"),
    (["data.path=x.csv"], "data.path is not a setting of data=digits; it takes no settings; for your own table "
                          "add data=csv"),
    (["-m", "seed=range(0,2),1e30"], "cannot read the sweep 'seed=range(0,2),1e30'"),
    (["-m", "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials is a setting of the Optuna sweeper"),
    (["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=-1"], "hydra.sweeper.n_trials=-1 is out of range"),
    (["-m", "hydra/launcher=nonexistent"], "hydra/launcher='nonexistent' is not known; choose one of: basic"),
])
def test_refused_in_one_line(args, needle):
    message = refusal(args)
    assert needle in message and "\n" not in message, message


@pytest.mark.parametrize("args", [["-m", "model.hidden=[64,32],[8]"], ["-m", "hydra/launcher=joblib"],
                                  ["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2"],
                                  ["optimizer=sgd", "activation=tanh"], ["trainer.max_epochs=1"],
                                  ["optimizer=sgd", "-m"]])
def test_still_accepted(args):
    assert refusal(args) == ""


@pytest.mark.parametrize("args", [["optimizer=sgd", "--cfg", "job"], ["--cfg", "job", "optimizer=sgd"],
                                  ["-m", "optimizer=sgd,adam"], ["optimizer=sgd", "--help"]])
def test_flags_before_or_after_all_overrides_are_fine(args):
    from mlpkit.app.cli import check_command_line

    check_command_line(args)


def test_a_resolver_value_names_the_run_directory_by_its_value(monkeypatch):
    monkeypatch.setenv("MLPKIT_TARGET", "y/z")
    cfg = compose_config(["data=csv", "data.path=x.csv", "data.target=${oc.env:MLPKIT_TARGET}"], with_hydra=True)
    name = run_name("12-00-00", cfg.hydra.job.override_dirname)
    assert "${" not in name and "data.target=y-z" in name, name


def test_chdir_reads_a_relative_data_path_from_where_the_run_started(tmp_path):
    good_csv(tmp_path / "t.csv")
    ok = train_in_process(["hydra.job.chdir=true", "data=csv", "data.path=t.csv", "data.target=label",
                           "model.hidden=[4]", "trainer.max_epochs=1", "trainer.progress=false"], tmp_path)
    assert ok.returncode == 0, ok.describe()
    (tmp_path / "one.csv").write_text("a,label\n" + "".join(f"{i},x\n" for i in range(30)))  # one class
    bad = train_in_process(["hydra.job.chdir=true", "data=csv", "data.path=one.csv", "data.target=label",
                            "trainer.max_epochs=1", "trainer.progress=false"], tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.describe()
    assert len(list((tmp_path / "outputs" / "runs").rglob("metrics.json"))) == 1  # the good run's only
    assert len([d for d in (tmp_path / "outputs" / "runs").glob("*/*")]) == 1, bad.describe()


def test_a_sweep_into_a_used_sweep_directory_is_refused_before_it_writes(tmp_path):
    used = tmp_path / "sweep"
    (used / "0_seed=0").mkdir(parents=True)
    (used / "0_seed=0" / "metrics.json").write_text("{}")
    before = _snapshot(used)
    run = train_in_process(["-m", *TINY, "seed=0,1", f"hydra.sweep.dir={used}"], tmp_path / "cwd")
    assert run.returncode == 2, run.describe()
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mlpkit: error: hydra.sweep.dir={used}: the directory is "
                                                   "not empty"), run.describe()
    assert _snapshot(used) == before and sorted(p.name for p in used.iterdir()) == ["0_seed=0"]
    same = train_in_process(["-m", *TINY, "seed=0,1", "hydra.sweep.subdir=job"], tmp_path / "same")
    lines = same.stderr.strip().splitlines()
    assert same.returncode == 2 and len(lines) == 1, same.describe()
    assert "hydra.sweep.subdir=job gives every job of the sweep the same directory" in lines[0]
    assert not (tmp_path / "same" / "outputs").exists(), same.describe()


def test_what_only_hydra_refuses_is_one_line_too(tmp_path):
    run = train_in_process([*TINY, "hydra.job.chdir=maybe"], tmp_path)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.describe()
    assert lines[0].startswith("mlpkit: error: ") and "hydra.job.chdir" in lines[0], run.describe()
    assert not (tmp_path / "outputs").exists()


def test_an_unset_variable_in_the_run_directory_names_the_key(tmp_path, capsys):
    cfg = compose_config([*TINY, "hydra.run.dir=${oc.env:MLPKIT_SURELY_UNSET}/run"], with_hydra=True)
    with pytest.raises(SystemExit) as exit_:
        check_run(cfg)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err == (
        "mlpkit: error: hydra.run.dir: the environment variable MLPKIT_SURELY_UNSET is not set (the value reads "
        "${oc.env:MLPKIT_SURELY_UNSET}); set it, or give a default: ${oc.env:MLPKIT_SURELY_UNSET,<default>}")


def test_resume_refuses_fewer_epochs_than_the_run_trained(tmp_path):
    run = finished_run(tmp_path / "run", [*TINY[:-2], "trainer.max_epochs=3", "trainer.progress=false",
                                          "early_stopping=none"])
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))  # stopped after epoch 3
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=2 is below the 3 epochs the run has trained; "
                                          r"allowed: trainer.max_epochs >= 3"):
        check_resume(_resume_config(run, "trainer.max_epochs=2"), run)
    check_resume(_resume_config(run, "trainer.max_epochs=3"), run)  # the test pass it missed: goes on


def test_resume_of_a_run_that_spent_its_max_steps_says_so_and_changes_nothing(tmp_path, capsys):
    run = finished_run(tmp_path / "run", [*TINY[:-2], "trainer.max_epochs=10", "trainer.max_steps=5",
                                          "trainer.progress=false", "early_stopping=none"])
    metrics = json.loads((run / "metrics.json").read_text())
    steps = metrics["steps_per_epoch"]
    budget = -(-5 // steps)  # the epoch in which step 5 falls is the last
    assert 1 < budget < 10 and metrics["epochs_run"] == budget and metrics["max_steps_epochs"] == budget
    assert len(metrics["history"]["val_loss"]) == budget and metrics["status"] == "completed"
    before = _snapshot(run)
    for more in ("trainer.max_epochs=10", "trainer.max_epochs=50"):  # more epochs: the budget still ends it
        with pytest.raises(SystemExit) as exit_:
            check_resume(_resume_config(run, more), run)
        assert exit_.value.code == 0
        assert (f"already finished (status completed after {budget} epochs); nothing to do, nothing changed "
                f"(trainer.max_steps=5 ends it after {budget} epochs)") in capsys.readouterr().out
    assert _snapshot(run) == before
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    check_resume(_resume_config(run), run)  # an interrupted one goes on (to its budget)


def test_a_log_file_on_a_full_disk_is_one_line_not_a_traceback_per_line(tmp_path, capsys):
    import logging

    from mlpkit.app.cli import quiet_file_logs

    handler = logging.FileHandler(tmp_path / "train.log")
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        quiet_file_logs()

        def full(text):
            raise OSError(errno.ENOSPC, "No space left on device")

        handler.stream.write = full
        for _ in range(3):
            logging.getLogger("mlpkit").warning("epoch done")
    finally:
        root.removeHandler(handler)
        handler.stream = None
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    assert err.count(f"mlpkit: warning: cannot write the log file {tmp_path / 'train.log'} (the disk is full)") == 1


def test_resume_of_a_sweeps_folder_names_its_runs(tmp_path):
    """resume= a sweep's folder (its jobs are the runs): one line naming them and the command for one."""
    for job in ("0_seed=1", "1_seed=2"):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    message = refusal([f"resume={tmp_path}"])
    assert message == (f"resume={tmp_path} holds 2 runs (0_seed=1, 1_seed=2), not one run: resume each of them, "
                       f"e.g. python train.py resume={tmp_path / '0_seed=1'}")
    assert refusal([f"resume={tmp_path / '0_seed=1' / '.hydra'}"]).endswith("not an mlpkit run directory (no "
                                                                           ".hydra/overrides.yaml)")
