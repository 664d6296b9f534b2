"""End-to-end `python train.py` runs: what a run leaves behind (contract: "What a run leaves behind"),
full-batch and stochastic steps, seeds, divergence, Ctrl-C and resume, devices.

Each run is made once, by the module-scoped fixture (or the test) that reads it. The runs go through
train.py in this process (`train_in_process`: the same Hydra main, checks and exit codes, without the
seconds of imports); the Ctrl-C run alone is a process of its own, as only a process can be interrupted."""

from __future__ import annotations

import json
import math
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import (DATE_RE, TIME_RE, Run, event_files_holding, job_dirs,
                      job_overrides, only_run_dir, popen_train, read_events, read_metrics, run_dirs, train,
                      train_in_process)

HAS_CUDA = torch.cuda.is_available()

# A: one classification run on 2-D data, 3 epochs of 3 steps (84 train rows, batches of 32)
SINGLE = ["data=moons", "data.n_samples=120", "model.hidden=[8,8]", "trainer.max_epochs=3",
          "trainer.batch_size=32", "trainer.log_every_n_steps=1", "trainer.progress=false"]
# B: full batch vs stochastic GD, and seeds, in one grid sweep (28 train rows)
STEPS = ["-m", "trainer.batch_size=0,1", "seed=0,0,1", "data=classification", "data.n_samples=40",
         "data.n_features=4", "model.hidden=[8]", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
         "trainer.progress=false"]
# D: a diverging job followed by a healthy one in the same sweep
DIVERGE = ["-m", "optimizer.lr=5,0.01", "data=regression", "data.n_samples=200", "model.hidden=[8]",
           "optimizer=sgd", "trainer.max_epochs=20", "trainer.progress=false"]
# F: long enough to be interrupted in epoch 2 or so; dropout, input noise and a schedule make the
# RNG and scheduler state matter on resume
RESUME = ["data=moons", "data.n_samples=400", "model.hidden=[16,16]", "trainer.batch_size=16",
          "trainer.max_epochs=20", "regularization.dropout=0.1", "regularization.input_noise=0.05",
          "scheduler=cosine", "early_stopping=none", "trainer.progress=false"]
RESUME_EPOCHS = 20


def interrupt(root: Path):
    """Start RESUME as a process and send it SIGINT once epoch 1 is logged."""
    d = root / "interrupted"
    proc = popen_train(RESUME, d)
    watchdog = threading.Timer(300, proc.kill)  # never hang the session on a stuck run
    watchdog.start()
    head = []
    try:
        for line in proc.stdout:
            head.append(line)
            if re.match(r"^epoch\s+1/", line):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        watchdog.cancel()
    first = Run(list(RESUME), d, proc.returncode, "".join(head) + out, err)
    dirs = run_dirs(d)
    if len(dirs) != 1 or not (dirs[0] / "metrics.json").is_file():
        return first, None, None
    return first, json.loads((dirs[0] / "metrics.json").read_text()), dirs[0]


def resume_run(first: Run, run_dir: Path) -> Run:
    """`python train.py resume=<run_dir>` as a user types it: the path relative to where they run, `=`, `,`
    and brackets included."""
    return train_in_process([f"resume={run_dir.relative_to(first.cwd)}"], first.cwd)


_JOBS = {
    "reference": lambda root: train_in_process(RESUME, root / "reference"),
    "single": lambda root: train_in_process(SINGLE, root / "single"),
    "steps": lambda root: train_in_process(STEPS, root / "steps"),
    "diverge": lambda root: train_in_process(DIVERGE, root / "diverge"),
}


def result(name: str, factory):
    """Make the run `name` in a fresh temporary directory (`factory`: pytest's tmp_path_factory)."""
    return _JOBS[name](factory.mktemp(name))


# ---------------------------------------------------------------------------
# A single run


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    run = result("single", tmp_path_factory)
    assert run.returncode == 0 and "Traceback" not in run.output, run.describe()
    return run, only_run_dir(run.cwd)


@pytest.mark.slow
def test_run_directory_name_and_contents(single):
    run, run_dir = single
    # outputs/runs/<date>/<time>_<overrides>
    assert run_dir.parent.parent == run.cwd / "outputs" / "runs"
    assert DATE_RE.match(run_dir.parent.name), run_dir
    stamp, _, overrides = run_dir.name.partition("_")
    assert TIME_RE.match(stamp), run_dir.name
    for override in SINGLE:
        if override.startswith("trainer.progress"):
            assert "trainer.progress" not in overrides, "trainer.progress does not change results: not in the name"
        else:
            assert override in overrides, (override, run_dir.name)
    assert "/" not in run_dir.name and len(run_dir.name.encode()) <= 255
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        assert (run_dir / ".hydra" / name).is_file()
    logs = list(run_dir.glob("*.log"))
    assert logs, "the run's log file is missing"
    assert any("epoch" in p.read_text() for p in logs)


@pytest.mark.slow
def test_metrics_json(single):
    run, run_dir = single
    m = read_metrics(run_dir)
    assert m["status"] == "completed"
    assert m["epochs_run"] == 3
    assert 1 <= m["best_epoch"] <= 3
    h = m["history"]
    assert len(h["train_loss"]) == len(h["val_loss"]) == 3
    assert all(math.isfinite(v) for v in h["train_loss"] + h["val_loss"])
    assert m["best_val_loss"] == pytest.approx(min(h["val_loss"]))
    assert m["best_val_loss"] == pytest.approx(h["val_loss"][m["best_epoch"] - 1])
    assert set(m["test"]) >= {"loss", "accuracy"} and 0 <= m["test"]["accuracy"] <= 1
    assert m["seconds"] > 0
    assert m["device"] == ("cuda" if HAS_CUDA else "cpu"), "trainer.device=auto"


@pytest.mark.slow
def test_checkpoints_load_with_weights_only(single):
    run, run_dir = single
    m = read_metrics(run_dir)
    for name in ("last.pt", "best.pt"):
        path = run_dir / "checkpoints" / name
        assert path.is_file(), path
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
        tensors = [v for v in state.get("model", {}).values() if isinstance(v, torch.Tensor)]
        assert tensors, f"{name} holds no model weights"
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert best["epoch"] == m["best_epoch"]
    assert last["epoch"] == 3


@pytest.mark.slow
def test_event_files_hold_the_contract_tags(single):
    run, run_dir = single
    m = read_metrics(run_dir)
    ev = read_events(run_dir)
    assert ev.files, "no TensorBoard event file"
    per_epoch = ["loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr",
                 "grads/layer_0", "grads/layer_1", "grads/layer_2",  # 3 linear layers: [8, 8] + output
                 "activations/dead_fraction/layer_0", "activations/dead_fraction/layer_1"]
    for tag in per_epoch:
        assert ev.steps(tag) == [1, 2, 3], f"{tag}: {ev.scalars.get(tag)}; tags: {sorted(ev.scalars)}"
    assert "grads/layer_3" not in ev.scalars
    assert not [t for t in ev.scalars if t.startswith("activations/saturated_fraction")]
    assert ev.values("loss/train") == pytest.approx(m["history"]["train_loss"], rel=1e-5)
    assert ev.values("loss/val") == pytest.approx(m["history"]["val_loss"], rel=1e-5)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    epochs = [e for f in ev.files for e in EventFileLoader(str(f)).Load()  # an epoch's scalars: one event
              if any(v.tag == "loss/val" for v in e.summary.value)]
    assert [e.step for e in epochs] == [1, 2, 3]
    assert all(set(per_epoch) <= {v.tag for v in e.summary.value} for e in epochs)
    assert all(v > 0 for v in ev.values("grads/layer_0"))
    # per step: 3 epochs x 3 steps, logged every step
    assert ev.steps("loss/train_step") == list(range(1, 10))
    assert "images/decision_boundary" in ev.images
    assert ev.histograms, "no weight/gradient histograms"
    assert any("weight" in t for t in ev.histograms) and any("grad" in t for t in ev.histograms)


@pytest.mark.slow
def test_hparams_entry_in_the_runs_own_event_file(single):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, run_dir = single
    ev = read_events(run_dir)
    tags = ev.plugin_tags.get("hparams", {})
    # the session start and end only: TensorBoard builds the experiment from all runs of a sweep
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(tags), tags
    assert "_hparams_/experiment" not in tags, tags
    # the same event file as the scalars: no extra folder (add_hparams' habit)
    assert event_files_holding(run_dir, ["loss/train", "_hparams_/session_start_info"]), \
        "HParams not in the scalars' event file"
    assert {f.parent for f in ev.files} == {run_dir}, ev.files
    info = plugin_data_pb2.HParamsPluginData.FromString(ev.plugin_content["hparams"]["_hparams_/session_start_info"])
    hp = info.session_start_info.hparams
    assert hp["optimizer.lr"].number_value == pytest.approx(0.001)
    assert hp["data.name"].string_value == "moons"
    metric_tags = [t for t in ev.scalars if t.startswith("hparam/")]
    assert metric_tags, "no metric values for the HParams dashboard"


# ---------------------------------------------------------------------------
# Steps per epoch and seeds (one sweep)


@pytest.fixture(scope="module")
def steps_jobs(tmp_path_factory):
    run = result("steps", tmp_path_factory)
    assert run.returncode == 0 and "Traceback" not in run.output, run.describe()
    jobs = job_dirs(run.cwd)
    assert len(jobs) == 6, jobs
    return {tuple(sorted(o for o in job_overrides(j) if o.startswith(("seed=", "trainer.batch_size=")))) + (i,): j
            for i, j in enumerate(jobs)}


def _jobs(steps_jobs, batch_size, seed):
    return [j for k, j in steps_jobs.items() if k[0] == f"seed={seed}" and k[1] == f"trainer.batch_size={batch_size}"]


@pytest.mark.slow
def test_full_batch_is_one_step_per_epoch(steps_jobs):
    job = _jobs(steps_jobs, 0, 0)[0]
    ev = read_events(job)
    assert ev.steps("loss/train_step") == [1, 2]
    assert read_metrics(job)["epochs_run"] == 2


@pytest.mark.slow
def test_batch_size_one_is_one_step_per_train_row(steps_jobs):
    job = _jobs(steps_jobs, 1, 0)[0]
    log = "\n".join(p.read_text() for p in job.glob("*.log"))
    rows = re.search(r"train/val/test = (\d+)/", log)
    assert rows, f"the log does not give the split sizes:\n{log}"
    n_train = int(rows.group(1))
    assert n_train == 28  # 40 rows less 15% val and 15% test
    ev = read_events(job)
    assert ev.steps("loss/train_step") == list(range(1, 2 * n_train + 1))


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [0, 1])
def test_same_seed_same_history_different_seed_different(steps_jobs, batch_size):
    a, b = [read_metrics(j)["history"] for j in _jobs(steps_jobs, batch_size, 0)]
    (c,) = [read_metrics(j)["history"] for j in _jobs(steps_jobs, batch_size, 1)]
    assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    assert a["train_loss"] != c["train_loss"]


@pytest.mark.slow
def test_sweep_job_directories_say_what_differs(steps_jobs):
    for key, job in steps_jobs.items():
        num, _, name = job.name.partition("_")
        assert num.isdigit()
        assert key[0] in name and key[1] in name
        assert "trainer.progress" not in name
        assert DATE_RE.match(job.parent.parent.name) and TIME_RE.match(job.parent.name)


# ---------------------------------------------------------------------------
# Divergence


@pytest.mark.slow
def test_divergence_is_recorded_and_does_not_stop_the_sweep(tmp_path_factory):
    run = result("diverge", tmp_path_factory)
    info = run.describe()
    assert run.returncode == 0, info
    assert "Traceback" not in run.output, info
    jobs = job_dirs(run.cwd)
    assert len(jobs) == 2, info
    diverged, healthy = (read_metrics(j) for j in jobs)
    assert "optimizer.lr=5" in job_overrides(jobs[0])
    assert diverged["status"] == "diverged", diverged.get("message")
    assert diverged["epochs_run"] < 20
    assert len(diverged["history"]["train_loss"]) == diverged["epochs_run"]
    assert diverged["message"]
    assert healthy["status"] in ("completed", "early_stopped")


# ---------------------------------------------------------------------------
# Ctrl-C and resume


@pytest.fixture(scope="module")
def resume(tmp_path_factory):
    with ThreadPoolExecutor(1) as pool:  # the interrupted process runs while the reference trains here
        interrupted_run = pool.submit(interrupt, tmp_path_factory.mktemp("resume"))
        reference = result("reference", tmp_path_factory)
        first, interrupted, run_dir = interrupted_run.result()
    resumed = resume_run(first, run_dir) if run_dir is not None else None
    return first, interrupted, resumed, run_dir, reference


@pytest.mark.slow
def test_sigint_saves_and_exits_130(resume):
    first, interrupted, _, run_dir, _ = resume
    assert first.returncode == 130, first.describe()
    assert "Traceback" not in first.output, first.describe()
    assert interrupted is not None, first.describe()
    assert interrupted["status"] == "interrupted"
    assert 1 <= interrupted["epochs_run"] < RESUME_EPOCHS
    assert len(interrupted["history"]["train_loss"]) == interrupted["epochs_run"]
    assert (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_resume_continues_in_place_to_the_uninterrupted_result(resume):
    first, interrupted, resumed, run_dir, reference = resume
    assert resumed is not None, first.describe()
    assert resumed.returncode == 0 and "Traceback" not in resumed.output, resumed.describe()
    assert run_dirs(first.cwd) == [run_dir], "resume must continue in the same directory"
    assert reference.returncode == 0, reference.describe()
    got, want = read_metrics(run_dir), read_metrics(only_run_dir(reference.cwd))
    assert got["status"] == want["status"] == "completed"
    assert got["epochs_run"] == want["epochs_run"] == RESUME_EPOCHS
    for key in ("train_loss", "val_loss", "lr", "train_accuracy", "val_accuracy"):
        assert got["history"][key] == want["history"][key], key  # bit-identical on CPU
    assert got["best_epoch"] == want["best_epoch"]
    assert got["test"] == want["test"]


@pytest.mark.slow
def test_resumed_event_files_hold_each_epoch_once(resume):
    _, _, resumed, run_dir, _ = resume
    assert resumed is not None and resumed.returncode == 0
    steps = read_events(run_dir).steps("loss/train")
    assert sorted(steps) == list(range(1, RESUME_EPOCHS + 1)), steps


# ---------------------------------------------------------------------------
# Devices


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_run(tmp_path):
    run = train(["data=moons", "data.n_samples=120", "model.hidden=[8]", "trainer.max_epochs=2",
                 "trainer.device=cuda", "trainer.progress=false"], tmp_path)
    assert run.returncode == 0, run.describe()
    m = read_metrics(only_run_dir(tmp_path))
    assert m["device"].startswith("cuda") and m["status"] == "completed"
