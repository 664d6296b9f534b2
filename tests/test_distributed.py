"""One run on several processes (trainer.strategy=ddp): real torchrun jobs of gloo processes on this
machine, every address 127.0.0.1, and a 2-task job on the local SLURM cluster.

The reference is the one-process run with the same global batch: a 2-rank job must give the same losses
epoch by epoch (to 1e-6 on float32) and the same test numbers, leave one run directory holding what the
one-process run leaves, and stop as one: a killed rank ends the job with a line naming it (a hang would
be killed by the harness's time limit and fail the test), SIGTERM to torchrun leaves an interrupted,
resumable run, and the run resumes on another number of processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Sequence

import pytest

from conftest import (PYTHON, TRAIN_PY, Run, finish, job_dirs, only_run_dir, process_env, read_metrics, refusal,
                      run_dirs, scaled, train, train_in_process)

pytestmark = pytest.mark.slow

TOLERANCE = 1e-6  # float32 losses: the sums of two shards differ from one sum in the last bits only

# binary, 279 train rows: batches of 32 leave a last batch of 23 (12 + 11 rows on 2 ranks)
MANUAL = ["data=moons", "data.n_samples=400", "model.hidden=[16]", "trainer.batch_size=32", "trainer.max_epochs=3",
          "trainer.progress=false"]
# multiclass with class weights on the autograd path: each rank's share weighed by class weight, not rows
AUTOGRAD = ["data=wine", "model.hidden=[16]", "trainer.batch_size=25", "trainer.max_epochs=3",
            "trainer.progress=false", "trainer.manual_backprop=false", "trainer.class_weight=balanced"]
# long enough to be stopped while it trains (about 0.5 s an epoch here)
LONG = ["data=classification", "data.n_samples=2000", "model.hidden=[32]", "trainer.batch_size=16",
        "trainer.max_epochs=300", "trainer.progress=false", "early_stopping=none", "trainer.strategy=ddp"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(n: int, args: Sequence[str], log_dir: Path) -> List[str]:
    """torchrun's agent keeps its own logs in --log-dir (a fresh torchelastic_* folder under /tmp, never
    removed, without it): here a folder beside the test's working directory, which pytest removes."""
    return [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", str(n), "--master-addr", "127.0.0.1",
            "--master-port", str(free_port()), "--log-dir", str(log_dir), str(TRAIN_PY), *args]


def start_torchrun(n: int, args: Sequence[str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    log_dir = cwd.with_name(cwd.name + ".torchrun-logs")
    return subprocess.Popen(torchrun_command(n, args, log_dir), cwd=cwd, env=process_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)


def torchrun(n: int, args: Sequence[str], cwd: Path, timeout: float = 240) -> Run:
    start = time.perf_counter()
    return finish(start_torchrun(n, args, cwd), args, cwd, start, timeout, program=f"torchrun -n {n} train.py")


def same_history(one: dict, many: dict, keys: Sequence[str] = ("train_loss", "val_loss"),
                 accuracies: bool = True) -> float:
    """The largest difference of the per-epoch numbers; asserts the accuracies are equal."""
    assert len(one["history"]["val_loss"]) == len(many["history"]["val_loss"])
    for key in ("train_accuracy", "val_accuracy") if accuracies else ():
        assert one["history"].get(key) == many["history"].get(key), key
    return max(abs(a - b) for key in keys for a, b in zip(one["history"][key], many["history"][key]))


def files_of(run_dir: Path) -> List[str]:
    """What a run directory holds, the event files' host/pid names left out."""
    return sorted("events" if p.name.startswith("events.out") else str(p.relative_to(run_dir))
                  for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.parametrize("args", [MANUAL, AUTOGRAD], ids=["manual_backprop", "autograd_class_weights"])
def test_two_ranks_train_as_one_process(args, tmp_path):
    """2 gloo ranks with a global batch of 2b == one process with batch 2b, epoch by epoch."""
    one = train_in_process(args, tmp_path / "one")
    assert one.returncode == 0, one.describe()
    two = torchrun(2, [*args, "trainer.strategy=ddp"], tmp_path / "two")
    assert two.returncode == 0, two.describe()
    assert "global batch" in two.stdout and "rank 0 writes the run" in two.stdout, two.describe()

    ref, run = only_run_dir(tmp_path / "one"), only_run_dir(tmp_path / "two")  # one directory for the job
    m1, m2 = read_metrics(ref), read_metrics(run)
    diff = same_history(m1, m2)
    print(f"\nper-epoch losses, 1 rank: {m1['history']['train_loss']} / {m1['history']['val_loss']}"
          f"\n                  2 ranks: {m2['history']['train_loss']} / {m2['history']['val_loss']}"
          f"\nmax abs difference: {diff:.3g}")
    assert diff <= TOLERANCE
    assert m2["status"] == m1["status"] == "completed"
    assert m2["test"]["confusion_matrix"] == m1["test"]["confusion_matrix"]
    for key, value in m1["test"].items():
        if isinstance(value, float):
            assert m2["test"][key] == pytest.approx(value, abs=TOLERANCE), key
    # rank 1 wrote nothing: the same files as one process (one event file, one log, one .hydra/)
    assert files_of(run) == files_of(ref)


def rank_pids(torchrun_pid: int) -> dict:
    """RANK -> pid of torchrun's worker processes (read from their environment)."""
    ranks = {}
    for child in Path(f"/proc/{torchrun_pid}/task/{torchrun_pid}/children").read_text().split():
        try:
            env = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = int(child)
    return ranks


def wait_for_epoch(proc: subprocess.Popen, run_dir: Path, limit: float = 180) -> None:
    """Until the run's log shows its first epoch (the job then trains)."""
    deadline = time.perf_counter() + scaled(limit)
    log = run_dir / "train.log"
    while not (log.is_file() and "epoch    1/" in log.read_text()):
        assert proc.poll() is None, f"the job ended before its first epoch: {proc.communicate()}"
        assert time.perf_counter() < deadline, "no first epoch in time"
        time.sleep(0.2)


def stopped_job(signal_to: str, tmp_path: Path) -> Run:
    """A 2-rank LONG job, stopped in its first epochs: `torchrun` gets SIGTERM, or `rank<N>` SIGKILL."""
    run_dir = tmp_path / "run"
    args = [*LONG, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = start_torchrun(2, args, tmp_path)
    wait_for_epoch(proc, run_dir)
    if signal_to == "torchrun":
        os.kill(proc.pid, signal.SIGTERM)
    else:
        os.kill(rank_pids(proc.pid)[int(signal_to[4:])], signal.SIGKILL)
    return finish(proc, args, tmp_path, start, timeout=120, program="torchrun -n 2 train.py")


@pytest.mark.parametrize("killed", [1, 0])
def test_killed_rank_ends_the_job_and_the_run_resumes_in_one_process(killed, tmp_path):
    """kill -9 of a rank: the other stops with one line naming it (rank 0 also records `interrupted`;
    without rank 0 the run keeps its last.pt), and the run resumes in one process (ddp without a launcher)."""
    job = stopped_job(f"rank{killed}", tmp_path)
    assert job.returncode != 0 and "[test] killed" not in job.stderr, job.describe()  # ended, no hang
    run_dir = tmp_path / "run"
    lines = [line for line in job.output.splitlines() if "of the job ended" in line]
    assert len(lines) == 1 and f"rank {killed} (pid" in lines[0] and "resume=<run_dir>" in lines[0], job.describe()
    if killed:
        m = read_metrics(run_dir)
        assert m["status"] == "interrupted" and m["message"] in lines[0]
        done = m["epochs_run"]
    else:
        assert lines[0].startswith("mlpkit: rank 1: ") and not (run_dir / "metrics.json").exists()
        from mlpkit.training.checkpoint import load_checkpoint

        done = int(load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"])
    resumed = train_in_process([f"resume={run_dir}", f"trainer.max_epochs={done + 1}"], tmp_path)
    assert resumed.returncode == 0, resumed.describe()
    assert "without torchrun or srun: training in one process" in resumed.stdout
    assert read_metrics(run_dir)["status"] == "completed"
    assert read_metrics(run_dir)["epochs_run"] == done + 1


def test_sigterm_to_torchrun_leaves_a_run_that_resumes_on_three_ranks(tmp_path):
    """SIGTERM to torchrun: every rank stops, status interrupted; torchrun with 3 ranks resumes it, and
    its epochs equal those of one uninterrupted process."""
    job = stopped_job("torchrun", tmp_path)
    assert job.returncode != 0 and "[test] killed" not in job.stderr, job.describe()
    run_dir = tmp_path / "run"
    m = read_metrics(run_dir)
    assert m["status"] == "interrupted" and "SIGTERM" in m["message"], m["message"]
    epochs = m["epochs_run"] + 1
    resumed = torchrun(3, [f"resume={run_dir}", f"trainer.max_epochs={epochs}"], tmp_path)
    assert resumed.returncode == 0, resumed.describe()
    assert "3 processes" in resumed.stdout and "6 + 5 + 5 by rank" in resumed.stdout, resumed.describe()
    assert len(list(run_dir.glob("events.out.tfevents*"))) == 2  # the first job's and the resumed one's
    one = train_in_process([a for a in LONG if not a.startswith(("trainer.max_epochs", "trainer.strategy"))]
                           + [f"trainer.max_epochs={epochs}"], tmp_path / "one")
    assert one.returncode == 0, one.describe()
    assert same_history(read_metrics(only_run_dir(tmp_path / "one")), read_metrics(run_dir)) <= TOLERANCE


def test_refusals(tmp_path):
    """A launcher with strategy=auto, an unknown strategy, batch norm on CPU: one line, no run directory."""
    job = torchrun(2, [*MANUAL, "trainer.max_epochs=1"], tmp_path)
    errors = [line for line in job.stderr.splitlines() if line.startswith("mlpkit: error:")]
    assert job.returncode != 0 and len(errors) == 1, job.describe()
    assert "rank 0 of 2 processes started by torchrun" in errors[0] and "trainer.strategy=ddp" in errors[0]
    bn = torchrun(2, [*MANUAL, "trainer.max_epochs=1", "trainer.strategy=ddp", "norm=batch"], tmp_path)
    errors = [line for line in bn.stderr.splitlines() if line.startswith("mlpkit: error:")]
    assert bn.returncode != 0 and len(errors) == 1 and "norm=batch under trainer.strategy=ddp needs CUDA" in errors[0], \
        bn.describe()
    assert run_dirs(tmp_path) == []
    assert refusal(["trainer.strategy=dpp"]).startswith("trainer.strategy='dpp' is not known; choose one of: auto, ddp")
    assert "learns by a rule of its own" in refusal(["model=perceptron", "trainer.strategy=ddp"])


def test_two_ranks_stream_a_parquet_file(tmp_path, cli):
    """data.stream=true on 2 ranks: each reads its own row groups, both take the steps both can fill (the
    checkpoint's step count is the sum over the epochs of what the pass's counts give), one run directory
    with what a one-process streamed run leaves; the run resumes on 3 ranks (their own steps counted the
    same way); val and test numbers over every val and test row (those predict.py measures on the kept
    model), and predict.py applies the run."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conftest import messy_table
    from mlpkit.data.stream import load_stream
    from mlpkit.data.table import read_table
    from mlpkit.training.checkpoint import load_checkpoint

    df, _ = read_table(str(messy_table(tmp_path / "t.csv", n=600, seed=1, task="binary")))
    table = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), table, row_group_size=64)  # 10 row groups
    args = ["data=csv", f"data.path={table}", "data.target=churn", "data.stream=true", "model.hidden=[8]",
            "trainer.max_epochs=3", "trainer.batch_size=32", "seed=7", "trainer.progress=false"]
    one = train_in_process(args, tmp_path / "one")
    assert one.returncode == 0, one.describe()
    two = torchrun(2, [*args, "trainer.strategy=ddp"], tmp_path / "two")
    assert two.returncode == 0, two.describe()
    assert "16 + 16 by rank; data.stream=true: each process fitted the same preprocessing" in two.stdout, \
        two.describe()
    run, ref = only_run_dir(tmp_path / "two"), only_run_dir(tmp_path / "one")
    assert files_of(run) == files_of(ref)
    m1, m2 = read_metrics(ref), read_metrics(run)
    assert m2["status"] == "completed" and m2["test"].keys() == m1["test"].keys()
    assert m2["history"].keys() == m1["history"].keys()

    data = load_stream(str(table), "churn", "auto", [], [], 7, 0.15, 0.15, True)
    steps = [data.X_train.steps(epoch, [16, 16]) for epoch in range(3)]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["global_step"] == sum(steps)
    assert min(steps) < len(data.X_train) // 32  # rows are left over (10 row groups do not split evenly)

    # resumed on 3 processes: each reads one in 3 of the pieces, and takes the steps all 3 can fill
    more = torchrun(3, [f"resume={run}", "trainer.max_epochs=5"], tmp_path / "three")
    assert more.returncode == 0, more.describe()
    assert "32 rows per step = 11 + 11 + 10 by rank" in more.stdout and "at epoch 3" in more.stdout, more.describe()
    m2 = read_metrics(run)  # predict.py below applies the resumed run's kept model
    assert m2["status"] == "completed" and len(m2["history"]["val_loss"]) == 5
    steps += [data.X_train.steps(epoch, [11, 11, 10]) for epoch in (3, 4)]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["global_step"] == sum(steps)

    rows = np.load(run / "splits.npz")
    for split in ("val", "test"):
        out = cli(run, table, "-o", tmp_path / f"{split}.csv", "--split", split)
        assert out.returncode == 0, out.stderr
        said = dict(part.rsplit(" ", 1) for part in (out.stdout + out.stderr).split(f"the {split} split: ")[1]
                    .splitlines()[0].split(", "))
        if split == "test":  # the job's test numbers are those of every test row
            for key, value in said.items():
                assert m2["test"][key] == pytest.approx(float(value), abs=1e-4), key
        else:  # the kept (best) epoch's val loss is the mean loss over every val row
            p = pd.read_csv(tmp_path / "val.csv")
            y = df["churn"].to_numpy()[rows["val"]]
            loss = -np.log(np.where(y == "yes", p["proba_yes"], p["proba_no"])).mean()
            assert m2["best_val_loss"] == pytest.approx(loss, abs=1e-6)
            assert m2["history"]["val_accuracy"][m2["best_epoch"] - 1] == pytest.approx(float(said["accuracy"]),
                                                                                       abs=1e-4)


# ---------------------------------------------------------------------------
# CUDA (scripts/device_check.sh runs these where GPUs are): nccl, one GPU per rank


def gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.skipif(gpus() < 2, reason="nccl ranks need a CUDA device each: 2+ GPUs")
def test_nccl_ranks_train_as_one_gpu(tmp_path):
    """2 nccl ranks on 2 GPUs == one GPU (cuBLAS sums in another order: 1e-5), and norm=batch runs as
    SyncBatchNorm."""
    args = [*MANUAL, "trainer.device=cuda"]
    one = train_in_process(args, tmp_path / "one")
    two = torchrun(2, [*args, "trainer.strategy=ddp"], tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, one.describe() + two.describe()
    assert "(torchrun, cpu:gloo,cuda:nccl)" in two.stdout
    assert same_history(read_metrics(only_run_dir(tmp_path / "one")), read_metrics(only_run_dir(tmp_path / "two")),
                        accuracies=False) <= 1e-5
    bn = torchrun(2, [*args, "trainer.strategy=ddp", "norm=batch"], tmp_path / "bn")
    assert bn.returncode == 0, bn.describe()


# ---------------------------------------------------------------------------
# SLURM: the tasks of one job step are the ranks

from test_cluster import sacct, sh, slurm  # noqa: E402,F401  (the module's one-node cluster fixture)


def test_slurm_two_tasks_train_one_run(slurm, tmp_path):
    """`srun -n 2 python train.py trainer.strategy=ddp` (inside sbatch): ranks from SLURM's variables,
    one run directory, the same numbers as one process."""
    port = free_port()
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n"
                      f"srun --kill-on-bad-exit=1 -n 2 {PYTHON} {TRAIN_PY} {' '.join(MANUAL)} trainer.strategy=ddp\n")
    env = {**slurm, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
    # polled here, not with sbatch --wait: that sleeps 2, 8, then 32 s between its looks (MinJobAge=60)
    out = sh(["sbatch", "--parsable", "-n", "2", "-c", "1", "-o", str(tmp_path / "job.out"),
              "-D", str(tmp_path), str(script)], env=env)
    job_id = out.stdout.strip().split(";")[0]
    state = sacct(slurm, [job_id], limit=300)
    log = (tmp_path / "job.out").read_text()
    print(f"\nsbatch job {job_id} ({state}):\n{log[-1500:]}")
    assert state == {job_id: "COMPLETED"}, log[-3000:]
    assert "ddp: 2 processes (slurm, gloo)" in log
    run = only_run_dir(tmp_path)
    one = train_in_process(MANUAL, tmp_path / "one")
    assert one.returncode == 0, one.describe()
    m = read_metrics(run)
    assert m["slurm_job_id"] == job_id
    assert same_history(read_metrics(only_run_dir(tmp_path / "one")), m) <= TOLERANCE
    assert files_of(run) == files_of(only_run_dir(tmp_path / "one"))


def test_submitit_tasks_per_node_train_one_run(slurm, tmp_path):
    """A sweep job of 2 SLURM tasks (hydra.launcher.tasks_per_node=2) trains one run as 2 ranks."""
    env = {**slurm, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    sweep = train(["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10",
                   "hydra.launcher.tasks_per_node=2", *MANUAL, "trainer.strategy=ddp"], tmp_path, env=env, timeout=300)
    assert sweep.returncode == 0, sweep.describe()
    [job] = [j for j in job_dirs(tmp_path) if not j.name.startswith(".")]  # (.submitit/ holds the task logs)
    logs = "".join(p.read_text() for p in job.parent.glob(".submitit/*/*_log.out"))
    assert "ddp: 2 processes (slurm, gloo)" in logs, logs[-3000:]
    one = train_in_process(MANUAL, tmp_path / "one")
    assert one.returncode == 0, one.describe()
    assert same_history(read_metrics(only_run_dir(tmp_path / "one")), read_metrics(job)) <= TOLERANCE
    assert len(list(job.glob("events.out.tfevents*"))) == 1
