"""Sweeps on real engines: a SLURM cluster, a Ray cluster, and Optuna workers sharing one study.

Each engine is the real one, started by the test on this machine and reached at 127.0.0.1, and
stopped even when a test fails:

- SLURM: `scripts/slurm_local.sh up` (installs Debian's slurm and MariaDB packages when missing,
  starts the cluster's own munged, MariaDB, slurmdbd, slurmctld and slurmd by hand) and `down`.
- Ray: `ray start --head` bound to 127.0.0.1 with a small object store, and `ray stop`.
- Optuna: two `python train.py -m hparams_search=optuna` processes at once on one study, in a
  SQLite file and in a throwaway PostgreSQL cluster (initdb/pg_ctl as the postgres user).

The SLURM cluster is a module-scoped fixture (its two tests share one xdist worker); Ray, PostgreSQL and
SQLite are each one test, on a worker of its own, overlapping the rest of the suite. Every wait grows
with the machine's load (conftest.scaled): a busy machine is slow, not broken.

Services that need root and apt-get (SLURM, PostgreSQL) are skipped, with the reason, on a machine
that has neither the packages nor the means to install them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest
import yaml

from conftest import TRAIN_PY, Run, finish, process_env, run_python, scaled, start_python

REPO = Path(__file__).resolve().parents[1]
COMPARE_PY = REPO / "scripts" / "compare.py"
SLURM_LOCAL = REPO / "scripts" / "slurm_local.sh"

pytestmark = pytest.mark.slow

# Tiny regression runs (150 rows, 2 steps per epoch, no figure to draw): with lr=5 SGD diverges
# within two epochs for seeds 0 and 5 (as in test_sweeps), with lr=0.01 it completes.
TINY = ["data=regression", "data.n_samples=150", "model.hidden=[8]", "trainer.max_epochs=2",
        "trainer.progress=false", "optimizer=sgd"]


def train(args: Sequence[str], cwd: Path, *, timeout: float = 180, env: Optional[Dict[str, str]] = None) -> Run:
    return run_python(TRAIN_PY, args, cwd, timeout=timeout, env=env)


def sh(cmd: Sequence[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 60,
       check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=scaled(timeout), stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(what: str, fn: Callable[[], object]) -> Callable[[], None]:
    """fn, printing how long it took (a finalizer's cost is part of what a test adds to CI)."""
    def run() -> None:
        start = time.perf_counter()
        fn()
        print(f"\n{what}: {time.perf_counter() - start:.1f} s")
    return run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_dirs(sweep: Path) -> List[Path]:
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]))


def only_sweep_dir(cwd: Path) -> Path:
    dirs = sorted(p for p in (cwd / "outputs" / "multirun").glob("*/*") if p.is_dir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def overrides_of(job: Path) -> Dict[str, str]:
    items = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(o.split("=", 1) for o in items)


def metrics(job: Path) -> dict:
    path = job / "metrics.json"
    assert path.is_file(), f"{path} is missing; {job} holds {sorted(p.name for p in job.iterdir())}"
    return json.loads(path.read_text())


def check_run_dir(job: Path) -> None:
    """What every run directory holds (shared/CONTRACT.md, 'What a run leaves behind')."""
    for rel in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "metrics.json",
                "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (job / rel).is_file(), f"{job.name} lacks {rel}: {sorted(p.name for p in job.rglob('*'))}"
    assert list(job.rglob("events.out.tfevents*")), f"{job.name} has no TensorBoard event file"


def tensorboard_runs(logdir: Path) -> Dict[str, List[float]]:
    """TensorBoard's own reader over logdir: run name -> loss/val values."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    return {run: [e.value for e in mux.Scalars(run, "loss/val")]
            for run, tags in mux.Runs().items() if "loss/val" in tags.get("scalars", [])}


# ---------------------------------------------------------------------------
# What this machine can run


def root_and_apt(*commands: str) -> Optional[str]:
    """None if the commands exist or can be installed here; else why not (the skip reason)."""
    if os.geteuid() != 0:
        return "needs root (to run the daemons as their own users, and to install packages)"
    missing = [c for c in commands if not shutil.which(c)]
    if missing and not shutil.which("apt-get"):
        return f"{', '.join(missing)} missing and no apt-get to install them"
    return None


# ---------------------------------------------------------------------------
# 1. SLURM


SLURM_DAEMONS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd")


@pytest.fixture(scope="module")
def slurm():
    """A one-node SLURM cluster with accounting and its own munged (scripts/slurm_local.sh up ... down):
    the environment that reaches it (SLURM_CONF)."""
    reason = root_and_apt(*SLURM_DAEMONS)
    if reason:
        pytest.skip(f"SLURM: {reason}")
    state = Path(tempfile.mkdtemp(prefix="mlpkit-slurm-"))  # short: munged's socket lives in it
    env = {"MLPKIT_SLURM_STATE": str(state)}
    try:
        start = time.perf_counter()
        sh(["bash", str(SLURM_LOCAL), "up"], env=env, timeout=300)  # apt-get included, on a fresh machine
        print(f"\nslurm_local.sh up: {time.perf_counter() - start:.1f} s")
        conf = sh(["bash", str(SLURM_LOCAL), "env"], env=env).stdout.strip()
        assert conf.startswith("export SLURM_CONF="), conf
        yield {"SLURM_CONF": conf.split("=", 1)[1]}
    finally:
        timed("slurm_local.sh down", lambda: (
            sh(["bash", str(SLURM_LOCAL), "down"], env=env, check=False, timeout=120),
            shutil.rmtree(state, ignore_errors=True)))()


def sacct(env: Dict[str, str], job_ids: Sequence[str], limit: float = 60) -> Dict[str, str]:
    """Raw job id -> state, as the accounting database records it, once it records every job as ended:
    slurmctld hands a job's end to slurmdbd after squeue no longer lists it, so sacct can say RUNNING a
    moment longer (waited for up to `limit` s, scaled by the load)."""
    deadline = time.perf_counter() + scaled(limit)
    while True:
        out = sh(["sacct", "-n", "-X", "-P", "-o", "JobIDRaw,State", "-j", ",".join(job_ids)], env=env).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if line)
        ended = len(states) == len(job_ids) and not set(states.values()) & {"PENDING", "RUNNING", "COMPLETING"}
        if ended or time.perf_counter() > deadline:
            return states
        time.sleep(0.5)


SLURM = ["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=10"]


def test_slurm_grid_sweep(slurm, tmp_path):
    """A 2x2 grid in which every job is a SLURM job; two diverge and the sweep goes on."""
    slurm_grid_sweep(slurm, tmp_path)


def test_slurm_killed_job_is_reported(slurm, tmp_path):
    """SIGKILL to one running job from the scheduler's side: the sweep reports it failed within a
    bounded time (submitit reads the state from sacct), and the other jobs finish."""
    slurm_killed_job_is_reported(slurm, tmp_path)


def slurm_grid_sweep(slurm: Dict[str, str], tmp_path: Path) -> None:
    """test_slurm_grid_sweep's run and checks, while the cluster is up."""
    args = [*SLURM, *TINY, "optimizer.lr=0.01,5", "seed=0,5", "trainer.log_every_n_steps=1"]
    res = train(args, tmp_path, env=slurm, timeout=240)
    print(f"\nSLURM 2x2 grid sweep: {res.seconds:.1f} s")
    assert res.returncode == 0, res.describe()
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert len(jobs) == 4, [j.name for j in jobs]
    job_ids = {}
    for job in jobs:
        check_run_dir(job)
        m = metrics(job)
        job_ids[job.name] = m["slurm_job_id"]
        assert m["slurm_job_id"], f"{job.name} did not run as a SLURM job"
        expected = "diverged" if overrides_of(job)["optimizer.lr"] == "5" else "completed"
        assert m["status"] == expected, (job.name, m["status"], m.get("message"))
    assert len(set(job_ids.values())) == 4, job_ids
    wait_idle(slurm)  # a job's result is written a moment before its SLURM job ends
    states = sacct(slurm, list(job_ids.values()))
    assert states == {i: "COMPLETED" for i in job_ids.values()}, states

    runs = tensorboard_runs(sweep)
    assert sorted(runs) == sorted(j.name for j in jobs), sorted(runs)
    for job in jobs:
        assert runs[job.name], job.name
        if metrics(job)["status"] == "completed":
            assert len(runs[job.name]) == metrics(job)["epochs_run"], job.name

    out = subprocess.run([sys.executable, str(COMPARE_PY), str(sweep)], capture_output=True, text=True,
                         timeout=120, env=process_env())
    assert out.returncode == 0, out.stderr
    assert f"{sweep}: 4 runs" in out.stdout, out.stdout
    rows = [line.split() for line in out.stdout.splitlines() if re.match(r"^[0-3] ", line)]
    assert sorted(r[0] for r in rows) == ["0", "1", "2", "3"], out.stdout
    assert sorted(r[3] for r in rows) == ["completed", "completed", "diverged", "diverged"], out.stdout


def squeue(env: Dict[str, str]) -> Dict[str, str]:
    """Jobs the scheduler still holds: '<array job>_<task>' -> state."""
    out = sh(["squeue", "-h", "-r", "-o", "%i|%T"], env=env).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def wait_idle(env: Dict[str, str], limit: float = 120) -> None:
    limit = scaled(limit)
    deadline = time.perf_counter() + limit
    while squeue(env) and time.perf_counter() < deadline:
        time.sleep(0.5)
    assert not squeue(env), f"jobs still queued after {limit:.0f} s: {squeue(env)}"


def slurm_killed_job_is_reported(slurm: Dict[str, str], tmp_path: Path) -> None:
    """test_slurm_killed_job_is_reported's run and checks, while the cluster is up."""
    # job 0: 2 epochs, job 1: one that would run for hours (killed), job 2: 3 epochs
    args = [*SLURM, *TINY, "optimizer.lr=0.01", "early_stopping=none", "trainer.max_epochs=2,1000000,3"]
    start = time.perf_counter()
    proc = start_python(TRAIN_PY, args, tmp_path, env=slurm)
    try:
        victim = None
        while time.perf_counter() - start < scaled(150) and proc.poll() is None:
            logs = list((tmp_path / "outputs").glob("multirun/*/*/1_*/events.out.tfevents*"))
            if logs:  # training has begun in job 1
                victim = next((i for i in squeue(slurm) if i.endswith("_1")), None)
                break
            time.sleep(0.5)
        assert victim, f"job 1 never started training\n{squeue(slurm)}"
        time.sleep(1)
        sh(["scancel", "--full", "--signal=KILL", victim], env=slurm)
        killed = time.perf_counter()
        res = finish(proc, args, tmp_path, start, timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reported = time.perf_counter() - killed
    print(f"\nSLURM job {victim} killed; the sweep reported it after {reported:.1f} s "
          f"(sweep {res.seconds:.1f} s)")
    assert res.returncode != 0, res.describe()
    assert "has not produced any output" in res.stderr and re.search(r"state: (CANCELLED|FAILED)", res.stderr), \
        res.describe()
    # submitit polls sacct at most a minute apart and then waits 15 s for a result file: < 80 s.
    assert reported < scaled(100), f"the killed job was reported after {reported:.0f} s"

    # The other jobs finish on the cluster; the killed one left no finished record, and the accounting
    # database says how it ended.
    wait_idle(slurm)
    state = next(iter(sacct(slurm, [victim]).values()), "")  # one row: the array task's, by its raw id
    assert state.startswith(("CANCELLED", "FAILED")), state
    jobs = job_dirs(only_sweep_dir(tmp_path))
    assert [j.name.split("_", 1)[0] for j in jobs] == ["0", "1", "2"]
    # Killing the batch script can make slurmstepd end the step with SIGTERM a moment before the SIGKILL
    # reaches the training process: then it stops as a Ctrl-C would, with an `interrupted` record.
    if (jobs[1] / "metrics.json").exists():
        assert metrics(jobs[1])["status"] == "interrupted", metrics(jobs[1])
    for job in (jobs[0], jobs[2]):
        check_run_dir(job)
        assert metrics(job)["status"] == "completed", job.name


# ---------------------------------------------------------------------------
# 2. Ray

# Small runs without a figure to draw: 2 epochs of 150 rows.
FAST = ["data=classification", "data.n_samples=150", "model.hidden=[8]", "trainer.max_epochs=2",
        "trainer.progress=false"]


# Ray replaces 127.0.0.1 by the machine's address (and its servers then listen on every interface) unless
# it is told that this is a one-machine cluster: then the node's address stays 127.0.0.1 and the GCS,
# raylet and agents listen there only. The driver (`python train.py`) needs it too.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_head(ray: Path, temp: Path) -> int:
    """`ray start --head` on 127.0.0.1: its port. Ray gives its raylet a fixed 30 s to register, which a
    loaded machine can miss: tried again (after `ray stop`) until scaled(240) s have passed."""
    deadline = time.perf_counter() + scaled(240)
    while True:
        port = free_port()
        up = sh([str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                 "--object-store-memory=80000000", "--include-dashboard=false", "--disable-usage-stats",
                 f"--temp-dir={temp}"], env=RAY_ENV, timeout=180, check=False)
        if up.returncode == 0:
            return port
        sh([str(ray), "stop", "--force"], env=RAY_ENV, check=False, timeout=60)
        assert time.perf_counter() < deadline, f"ray start --head failed:\n{up.stdout[-1000:]}\n{up.stderr[-2000:]}"
        print(f"\nray start --head failed (load {os.getloadavg()[0]:.1f}); again:\n{up.stderr[-500:]}")


def ray_sockets(temp: Path) -> List[str]:
    """`ss` lines of the TCP sockets held by the Ray processes of this cluster (those whose command line
    names its temp dir, and their descendants: the workers)."""
    parents, ours = {}, set()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if str(temp) in (proc / "cmdline").read_text(errors="replace"):
                    ours.add(int(proc.name))
        except OSError:
            pass
    for _ in range(5):  # workers are children of the raylet, their own children below them
        ours |= {pid for pid, parent in parents.items() if parent in ours}
    out = subprocess.run(["ss", "-Htanp"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if any(int(p) in ours for p in re.findall(r"pid=(\d+)", line))]


def _ray_sweep(root: Path):
    """A Ray head on 127.0.0.1 with a small object store, a 2-job sweep on it launched from
    `root/launch_here`, the cluster's sockets while it is up, and `ray stop`: (the sweep's Run, seconds
    the head took to start, the sockets)."""
    ray = Path(sys.executable).with_name("ray")
    temp = Path(tempfile.mkdtemp(prefix="mlpkit-ray-"))  # short: Ray's socket paths live under it
    try:
        start = time.perf_counter()
        port = ray_head(ray, temp)
        head = time.perf_counter() - start
        args = ["-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                "optimizer=sgd,adam", *FAST]
        res = train(args, root / "launch_here", timeout=180, env=RAY_ENV)
        return res, head, ray_sockets(temp)
    finally:
        timed("ray stop", lambda: (sh([str(ray), "stop", "--force"], env=RAY_ENV, check=False, timeout=60),
                                   shutil.rmtree(temp, ignore_errors=True)))()


def test_ray_cluster_sweep(tmp_path):
    """hydra/launcher=ray_cluster plus the address: both jobs run on the cluster and write their run
    directories under the sweep directory of the process that launched them; the cluster listens on
    127.0.0.1 only and talks to nothing else."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason='needs the ray extra: pip install "mlpkit[ray]"')
    res, head, sockets = _ray_sweep(tmp_path)
    print(f"\nray start --head: {head:.1f} s; Ray 2-job sweep: {res.seconds:.1f} s")
    cwd = res.cwd
    assert res.returncode == 0, res.describe()
    assert "Connected to Ray cluster" in res.stderr + res.stdout, res.describe()
    jobs = job_dirs(only_sweep_dir(cwd))
    assert [overrides_of(j)["optimizer"] for j in jobs] == ["sgd", "adam"], [j.name for j in jobs]
    for job in jobs:
        check_run_dir(job)
        assert metrics(job)["status"] == "completed", job.name
        assert metrics(job)["run_dir"] == str(job), metrics(job)["run_dir"]
    assert sockets, "found no socket of the Ray cluster"
    for line in sockets:  # state, queues, local address:port, peer address:port, process
        local, peer = line.split()[3:5]
        for address in (local, peer):
            host = address.rsplit(":", 1)[0]
            assert host in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]", "*", "0.0.0.0", "[::]") or \
                host.startswith("127."), f"a Ray socket off 127.0.0.1: {line}"
        if line.startswith("LISTEN"):
            assert local.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]"), f"Ray listens beyond 127.0.0.1: {line}"


# ---------------------------------------------------------------------------
# 3. Optuna: two sweeper processes on one study


def _postgres_reason() -> Optional[str]:
    """Why PostgreSQL cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None:
        return "needs psycopg2-binary (the test extra)"
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))  # Debian's layout, not on PATH
    return root_and_apt() if found else root_and_apt("PostgreSQL's initdb")


def _postgres_study(root: Path) -> None:
    """A throwaway PostgreSQL cluster (initdb in a temp dir, run as the postgres user, 127.0.0.1 on a
    free port), the two workers on one study in it, checked, and the server stopped by its PID."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        sh(["bash", str(REPO / "scripts" / "apt_install.sh"), "postgresql"], timeout=600)
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    bin_dir = found[-1].parent
    data = Path(tempfile.mkdtemp(prefix="mlpkit-pg-"))
    shutil.chown(data, "postgres", "postgres")
    port = free_port()

    def stop():
        pid_file = data / "db" / "postmaster.pid"  # there while the server runs
        if pid_file.is_file():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(data, ignore_errors=True)

    as_postgres = ["runuser", "-u", "postgres", "--"]
    try:
        start = time.perf_counter()
        sh([*as_postgres, str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", "postgres", "-A", "trust",
            "--no-sync"], timeout=120)
        sh([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "server.log"), "-w",
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {data}", "start"], timeout=60)
        sh([*as_postgres, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "optuna"])
        print(f"\nPostgreSQL up: {time.perf_counter() - start:.1f} s")
        storage = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna"
        root.mkdir(parents=True, exist_ok=True)
        check_shared_study(storage, two_workers(storage, root))
    finally:
        timed("PostgreSQL stop", stop)()


def two_workers(storage: str, base: Path, n_trials: int = 3) -> Dict[str, Path]:
    """Two `python train.py -m hparams_search=optuna` processes at once on one study in `storage`,
    with different sampler seeds; each worker's sweep directory.

    The study is created first (the README's `optuna create-study`, here its Python form, which
    saves the CLI's start-up): two processes that both find an empty storage both create its
    tables, and the second fails (UNIQUE constraint failed: alembic_version)."""
    import optuna

    started = time.perf_counter()
    optuna.create_study(study_name="shared", storage=storage, direction="minimize", load_if_exists=True)
    procs = {}
    for seed in (1, 2):
        args = ["-m", "hparams_search=optuna", f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}",
                "hydra.sweeper.study_name=shared", f"hydra.sweeper.sampler.seed={seed}", *FAST]
        procs[f"worker{seed}"] = (start_python(TRAIN_PY, args, base / f"worker{seed}"), args)
    results = {name: finish(proc, args, base / name, started, timeout=240) for name, (proc, args) in procs.items()}
    print(f"\ntwo Optuna workers on {storage.split(':')[0]}: {time.perf_counter() - started:.1f} s")
    for res in results.values():
        assert res.returncode == 0, res.describe()
    return {name: only_sweep_dir(res.cwd) for name, res in results.items()}


def check_shared_study(storage: str, sweeps: Dict[str, Path], n_trials: int = 3) -> None:
    """One study holds every worker's trials, each number once; its best is the best metrics.json."""
    import optuna

    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(2 * n_trials)), numbers
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    # Which worker ran a trial: the run directory whose overrides are that trial's parameters.
    owner = {}
    losses = []
    for name, sweep in sweeps.items():
        jobs = job_dirs(sweep)
        assert len(jobs) == n_trials, [j.name for j in jobs]
        for job in jobs:
            lr = float(overrides_of(job)["optimizer.lr"])
            match = [t.number for t in trials if t.params["optimizer.lr"] == pytest.approx(lr, rel=1e-12)]
            assert len(match) == 1, (job.name, match)
            owner[match[0]] = name
            losses.append(metrics(job)["best_val_loss"])
            trial = trials[numbers.index(match[0])]
            assert trial.value == pytest.approx(metrics(job)["best_val_loss"], rel=1e-9), job.name
    assert sorted(owner) == sorted(numbers) and set(owner.values()) == set(sweeps), owner
    assert study.best_value == pytest.approx(min(losses), rel=1e-9), (study.best_value, losses)


def test_optuna_two_workers_sqlite(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    check_shared_study(storage, two_workers(storage, tmp_path))


def test_optuna_two_workers_postgresql(tmp_path):
    reason = _postgres_reason()
    if reason:
        pytest.skip(f"PostgreSQL: {reason}")
    _postgres_study(tmp_path)
