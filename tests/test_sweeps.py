"""End-to-end tests of sweeps: `python train.py -m ...` as a user types it, in a fresh working directory.

Covered: a grid sweep and its run-directory names; the Optuna search (results file, seeded sampler);
the joblib and submitit_local launchers (with the torch thread count each job really used); a job
that diverges inside a grid sweep and inside an Optuna search; `scripts/compare.py`; the TensorBoard
server's HTTP API over a finished sweep; a bad value in one job of a sweep; `pruning=median` in a grid,
a joblib and an Optuna sweep; what a sweep prints (one model summary, no escape codes) and the
message when a sweep plugin is not installed.

A sweep is run by the test that reads it, or, when several tests read it (the grid, the seeded Optuna
search), by a module-scoped fixture, once, on the xdist worker of those tests. The grid, the first Optuna
search and the launchers' sweeps are real processes; the sweeps that check what their jobs recorded
(divergence, pruning, the seeded search's second run) go through train.py in this process
(`train_in_process`: the same Hydra multirun, without a process's seconds of imports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest
import yaml

from conftest import REPO, Run, compose_config, process_env, refusal, run_python, train, train_in_process

COMPARE_PY = REPO / "scripts" / "compare.py"

pytestmark = pytest.mark.slow

# Tiny runs: 150 moons (104 train rows = 2 steps per epoch), one hidden layer of 8, 2 epochs.
TINY = ["data=moons", "data.n_samples=150", "model.hidden=[8]", "trainer.max_epochs=2", "trainer.progress=false"]
# The same without a 2-D input (no decision-boundary figure to draw): for sweeps whose data does not matter.
FAST = ["data=classification", "data.n_samples=150", "model.hidden=[8]", "trainer.max_epochs=2",
        "trainer.progress=false"]
TINY_REGRESSION = ["data=regression", "data.n_samples=150", "model.hidden=[8]", "trainer.max_epochs=2",
                   "trainer.progress=false"]
# 5 epochs without early stopping; after 1 epoch of warm-up, the median rule judges every epoch.
PRUNE = ["pruning=median", "pruning.warmup_epochs=1", "trainer.max_epochs=5", "early_stopping=none"]
CORES = os.cpu_count() or 1


# ---------------------------------------------------------------------------
# Running sweeps


# A Hydra callback that records, at the end of every job and in the process that ran it, how many
# torch threads the job used. Written into the sweep's working directory and put on PYTHONPATH, so
# that joblib workers and submitit jobs can unpickle it.
PROBE_MODULE = "mlpkit_thread_probe"
PROBE_SOURCE = '''
import json
import os

from hydra.experimental.callback import Callback


class ThreadProbe(Callback):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_job_end(self, config, job_return, **kwargs):
        import torch

        os.makedirs(self.out_dir, exist_ok=True)
        path = os.path.join(self.out_dir, "%s.json" % config.hydra.job.num)
        with open(path, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "pid": os.getpid(),
                       "output_dir": str(config.hydra.runtime.output_dir)}, f)
'''


@dataclass
class Sweep:
    args: List[str]
    timeout: float = 240
    probe: bool = False  # record each job's torch threads (see ThreadProbe)
    in_process: bool = False  # through train.py in the test's process (train_in_process), not as a process


SWEEPS: Dict[str, Sweep] = {
    # 1, 6, 7: a 2x2 grid; per-step scalars at every step so that loss/train_step exists in 4 steps.
    "grid": Sweep(["-m", "optimizer=sgd,adam", "activation=relu,tanh", *TINY, "trainer.log_every_n_steps=1"]),
    # 2: the same seeded Optuna search twice.
    "optuna_a": Sweep(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *FAST, "seed=0"]),
    "optuna_b": Sweep(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", *FAST, "seed=0"],
                      in_process=True),
    # 3, 4: the parallel launchers.
    "joblib": Sweep(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer=sgd,adam", *FAST],
                    probe=True),
    "submitit": Sweep(["-m", "hydra/launcher=submitit_local", "optimizer=sgd,adam", *FAST], timeout=120,
                      probe=True),
    # 5: lr=5 diverges. With seed=0 the val loss becomes inf after epoch 2; with seed=5 the weights
    # blow up in epoch 2 as well, and logging their histogram must not crash the job. A diverged
    # job records status diverged and does not stop the sweep.
    "diverge_grid": Sweep(["-m", *TINY_REGRESSION, "optimizer=sgd", "optimizer.lr=0.01,5", "seed=0,5"],
                          in_process=True),
    # 5: an Optuna search over lr in {0.01, 5}. Seed 1 asks lr=5, 0.01, 5 (random start-up trials
    # of the seeded TPE sampler): the lr=0.01 trial completes and at least one lr=5 trial diverges
    # (its objective is not a number Optuna can rank). The search space is given
    # as a plain sweep override: the form `hydra.sweeper.params.optimizer.lr=choice(...)` is refused
    # by Hydra ("Sweeping over Hydra's configuration is not supported").
    "diverge_optuna": Sweep(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "optimizer.lr=choice(0.01,5)",
                             *TINY_REGRESSION, "optimizer=sgd", "seed=1"], in_process=True),
    # 9: pruning=median. lr=1e-5 barely moves, so job 2 trails the two finished jobs from epoch 2 on.
    "prune_grid": Sweep(["-m", "optimizer.lr=0.05,0.03,0.00001", *FAST, *PRUNE, "pruning.min_completed=2"],
                        in_process=True),
    # Two joblib workers: job 2 starts when job 0 or 1 has finished, so one finished job is there to judge it.
    # Jobs 0 and 1 are the same run: whichever ends first, the other ties with it and is not pruned.
    "prune_joblib": Sweep(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optimizer.lr=0.05,0.05,0.00001",
                           *FAST, *PRUNE, "pruning.min_completed=1"]),
    # Seed 1 asks lr=1e-5, 0.05, 1e-5 (as diverge_optuna): trial 2 is judged against two finished ones.
    "prune_optuna": Sweep(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "optimizer.lr=choice(0.05,0.00001)",
                           *TINY_REGRESSION, *PRUNE, "pruning.min_completed=2", "seed=1"], in_process=True),
}

def _run_sweep(base: Path, name: str) -> Run:
    spec = SWEEPS[name]
    cwd = base / name
    cwd.mkdir(parents=True, exist_ok=True)
    args, env = list(spec.args), {}
    if spec.probe:
        (cwd / "probe").mkdir(exist_ok=True)
        (cwd / "probe" / f"{PROBE_MODULE}.py").write_text(PROBE_SOURCE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd / "probe"), os.environ.get("PYTHONPATH")]))
        args += [f"+hydra.callbacks.thread_probe._target_={PROBE_MODULE}.ThreadProbe",
                 f"+hydra.callbacks.thread_probe.out_dir={cwd / 'threads'}"]
    if spec.in_process:
        return train_in_process(args, cwd)
    # a probed sweep checks the threads torch picks itself: no OMP_NUM_THREADS from the test
    return train(args, cwd, timeout=spec.timeout, env=env, one_thread=not spec.probe)


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Run:
    """The 2x2 grid sweep, read by four tests."""
    return _run_sweep(tmp_path_factory.mktemp("sweeps"), "grid")


@pytest.fixture(scope="module")
def optuna_a(tmp_path_factory) -> Run:
    """The seeded Optuna search, read by three tests."""
    return _run_sweep(tmp_path_factory.mktemp("sweeps"), "optuna_a")


# ---------------------------------------------------------------------------
# Reading what a sweep left behind


def sweep_dirs(cwd: Path) -> List[Path]:
    base = cwd / "outputs" / "multirun"
    return sorted(p for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []


def only_sweep_dir(res: Run) -> Path:
    dirs = sweep_dirs(res.cwd)
    assert len(dirs) == 1, f"expected one sweep dir under {res.cwd}/outputs/multirun, found {dirs}\n{res.describe()}"
    return dirs[0]


def job_dirs(sweep: Path) -> List[Path]:
    """The job directories of a sweep (not .submitit), by job number."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(jobs, key=lambda p: int(p.name.split("_", 1)[0]) if p.name.split("_", 1)[0].isdigit() else 10**9)


def overrides_of(job: Path) -> Dict[str, str]:
    items = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    return dict(o.split("=", 1) for o in items)


def overrides_list(job: Path) -> List[str]:
    return list(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or [])


def job_num(job: Path) -> int:
    hydra_cfg = yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())
    return int(hydra_cfg["hydra"]["job"]["num"])


def metrics(job: Path) -> dict:
    path = job / "metrics.json"
    assert path.is_file(), f"{path} is missing; {job} holds {sorted(p.name for p in job.iterdir())}"
    return json.loads(path.read_text())


def check_job_names(sweep: Path, jobs: List[Path]) -> None:
    """Job dirs sit directly in the sweep dir and are named `<job number>_<overrides>`."""
    for job in jobs:
        assert job.parent == sweep
        assert "/" not in job.name and len(job.name.encode()) <= 255, job.name
        num = job.name.partition("_")[0]
        assert num.isdigit() and int(num) == job_num(job), f"{job.name!r} does not start with its job number"
    assert sorted(job_num(j) for j in jobs) == list(range(len(jobs)))


def hparams_session_start(job: Path) -> Dict[str, Any]:
    """The hparams of the HParams session-start entry in the job's event files."""
    from google.protobuf.json_format import MessageToDict
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    for f in sorted(job.rglob("events.out.tfevents*")):
        for event in EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    return MessageToDict(data.session_start_info).get("hparams", {})
    raise AssertionError(f"no HParams session start info in the event files under {job}")


def probe_records(res: Run, n_jobs: int) -> Dict[int, dict]:
    out = res.cwd / "threads"
    records = {int(p.stem): json.loads(p.read_text()) for p in out.glob("*.json")} if out.is_dir() else {}
    assert sorted(records) == list(range(n_jobs)), f"thread probe records {sorted(records)}\n{res.describe()}"
    return records


def finished_sweep(res: Run, n_jobs: int):
    """The result, sweep dir and job dirs of a sweep that exited 0 with `n_jobs` well-named jobs."""
    assert res.returncode == 0, res.describe()
    sweep = only_sweep_dir(res)
    jobs = job_dirs(sweep)
    assert len(jobs) == n_jobs, f"{[j.name for j in jobs]}\n{res.describe()}"
    check_job_names(sweep, jobs)
    return res, sweep, jobs


# ---------------------------------------------------------------------------
# 1. Grid sweep


def test_grid_sweep_job_dirs(grid):
    res, sweep, jobs = finished_sweep(grid, 4)
    combos = set()
    for job in jobs:
        ov = overrides_of(job)
        opt, act = ov["optimizer"], ov["activation"]
        combos.add((opt, act))
        parts = job.name.split("_", 1)[1].split(",")
        assert f"optimizer={opt}" in parts and f"activation={act}" in parts, job.name
        m = metrics(job)
        assert m["status"] == "completed", (job.name, m.get("status"), m.get("message"))
        assert m["epochs_run"] == 2 and len(m["history"]["val_loss"]) == 2
    assert combos == {(o, a) for o in ("sgd", "adam") for a in ("relu", "tanh")}
    assert jobs[0].name.startswith("0_activation=relu,") and "optimizer=sgd" in jobs[0].name


# ---------------------------------------------------------------------------
# 2. Optuna search


def test_optuna_search_results(optuna_a):
    res, sweep, jobs = finished_sweep(optuna_a, 3)
    results_path = sweep / "optimization_results.yaml"
    assert results_path.is_file(), f"{sorted(p.name for p in sweep.iterdir())}"
    results = yaml.safe_load(results_path.read_text())
    assert isinstance(results.get("best_params"), dict) and results["best_params"], results
    assert "optimizer.lr" in results["best_params"], results
    losses = {job: metrics(job)["best_val_loss"] for job in jobs}
    for job in jobs:
        assert metrics(job)["status"] == "completed", job.name
    best_job = min(losses, key=losses.get)
    assert results["best_value"] == pytest.approx(losses[best_job], rel=1e-9, abs=1e-12), (results, losses)
    # best_params are the overrides of that job
    ov = overrides_of(best_job)
    for key, value in results["best_params"].items():
        assert key in ov, (key, ov)
        try:
            assert float(ov[key]) == pytest.approx(float(value), rel=1e-12)
        except (TypeError, ValueError):
            assert str(ov[key]).replace(" ", "") == str(value).replace(" ", ""), (key, ov[key], value)
    # the three trials asked different values
    assert len({overrides_of(j)["optimizer.lr"] for j in jobs}) == 3


def test_optuna_sampler_is_seeded(optuna_a, tmp_path):
    runs = [optuna_a, _run_sweep(tmp_path, "optuna_b")]
    for res in runs:
        assert res.returncode == 0, res.describe()
    asked = [[overrides_list(j) for j in job_dirs(only_sweep_dir(res))] for res in runs]
    assert len(asked[0]) == 3
    assert asked[0] == asked[1], "the same command with the same seed asked different params"
    # The sampler's seed is the run's `seed`.
    for seed in (0, 7):
        cfg = compose_config(["hparams_search=optuna", f"seed={seed}"], with_hydra=True)
        assert cfg.hydra.sweeper.sampler.seed == seed


# ---------------------------------------------------------------------------
# 3. joblib launcher


def _compose_launcher(overrides: Sequence[str]):
    return compose_config(overrides, with_hydra=True).hydra.launcher


def test_launcher_threads_from_composed_config(monkeypatch):
    from mlpkit.app import build
    launcher = _compose_launcher(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert "joblib" in launcher._target_
    assert build.launcher_threads(launcher) == max(1, CORES // 2)
    assert build.launcher_threads(_compose_launcher([])) is None  # basic launcher: torch's default
    assert build.launcher_threads(_compose_launcher(["hydra/launcher=submitit_local"])) == 1
    assert build.launcher_threads(_compose_launcher(["hydra/launcher=submitit_slurm",
                                                     "hydra.launcher.cpus_per_task=4"])) == 4
    # The same rule on a bigger machine: cores // jobs at once; joblib's -1 = one job per core.
    monkeypatch.setattr(build, "os", types.SimpleNamespace(cpu_count=lambda: 8))
    for n_jobs, threads in ((1, 8), (2, 4), (3, 2), (16, 1), (-1, 1), (-2, 1), (-5, 2)):
        cfg = _compose_launcher(["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"])
        assert build.launcher_threads(cfg) == threads, n_jobs


def test_joblib_launcher_sweep(tmp_path):
    res, sweep, jobs = finished_sweep(_run_sweep(tmp_path, "joblib"), 2)
    assert {overrides_of(j)["optimizer"] for j in jobs} == {"sgd", "adam"}
    for job in jobs:
        assert metrics(job)["status"] == "completed", job.name
    for num, rec in probe_records(res, 2).items():
        assert rec["pid"] != res.pid, "the job ran in the main process, not in a joblib worker"
        assert rec["threads"] == max(1, CORES // 2), (num, rec)
        assert Path(rec["output_dir"]).resolve() in {j.resolve() for j in jobs}


# ---------------------------------------------------------------------------
# 4. submitit_local launcher


def test_submitit_local_launcher_sweep(tmp_path):
    res, sweep, jobs = finished_sweep(_run_sweep(tmp_path, "submitit"), 2)
    for job in jobs:
        assert metrics(job)["status"] == "completed", job.name
    submitit = sweep / ".submitit"
    assert submitit.is_dir() and list(submitit.rglob("*_log.out")), "no submitit logs in the sweep dir"
    for num, rec in probe_records(res, 2).items():
        assert rec["pid"] != res.pid, "the job ran in the main process, not as a submitit job"
        assert rec["threads"] == 1, (num, rec)  # cpus_per_task unset: one core per job


# ---------------------------------------------------------------------------
# 5. Diverging jobs


def test_diverging_job_does_not_stop_grid_sweep(tmp_path):
    res = _run_sweep(tmp_path, "diverge_grid")
    sweep = only_sweep_dir(res)
    jobs = {(overrides_of(j)["optimizer.lr"], overrides_of(j)["seed"]): j for j in job_dirs(sweep)}
    problems = []
    for lr in ("0.01", "5"):
        for seed in ("0", "5"):
            job = jobs.get((lr, seed))
            want = "diverged" if lr == "5" else "completed"
            if job is None or not (job / "metrics.json").is_file():
                problems.append(f"lr={lr} seed={seed}: no metrics.json (job {'missing' if job is None else job.name})")
                continue
            m = metrics(job)
            if m["status"] != want:
                problems.append(f"lr={lr} seed={seed}: status {m['status']!r}, expected {want!r}")
            try:
                hp = hparams_session_start(job)
            except AssertionError as err:
                problems.append(f"lr={lr} seed={seed}: {err}")
                continue
            if hp.get("status") != want:
                problems.append(f"lr={lr} seed={seed}: HParams status {hp.get('status')!r}, expected {want!r}")
    if res.returncode != 0:
        problems.append(f"the sweep exited {res.returncode}")
    assert not problems, "\n".join(problems) + "\n" + res.describe()


def test_diverging_trial_does_not_crash_optuna_search(tmp_path):
    res = _run_sweep(tmp_path, "diverge_optuna")
    sweep = only_sweep_dir(res)
    jobs = job_dirs(sweep)
    assert res.returncode == 0, res.describe()
    assert len(jobs) == 3, f"{[j.name for j in jobs]}\n{res.describe()}"
    statuses = {job: metrics(job)["status"] for job in jobs}
    lrs = {job: overrides_of(job)["optimizer.lr"] for job in jobs}
    # The seeded sampler asks lr=5, 0.01, 5 (see SWEEPS["diverge_optuna"]); at least one trial
    # diverges and at least one completes, so the search has a best trial.
    assert sorted(lrs.values()) == ["0.01", "5", "5"], {j.name: lr for j, lr in lrs.items()}
    assert "diverged" in statuses.values() and "completed" in statuses.values(), statuses
    for job, lr in lrs.items():
        if lr == "0.01":
            assert statuses[job] == "completed", job.name
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    finished = {job: metrics(job)["best_val_loss"] for job in jobs if statuses[job] != "diverged"}
    best_job = min(finished, key=finished.get)
    assert results["best_value"] == pytest.approx(finished[best_job], rel=1e-9), (results, finished)
    assert float(results["best_params"]["optimizer.lr"]) == float(lrs[best_job]), results


# ---------------------------------------------------------------------------
# 6. scripts/compare.py


def compare(args: Sequence[str], cwd: Path) -> Run:
    return run_python(COMPARE_PY, args, cwd, timeout=120)


def parse_table(stdout: str) -> List[Dict[str, str]]:
    """The text table compare.py prints: columns from the dashes line under the header."""
    lines = stdout.splitlines()
    dash = next(i for i, line in enumerate(lines) if re.fullmatch(r"-+(  +-+)+", line.strip()))
    starts = [m.start() for m in re.finditer(r"-+", lines[dash])]

    def cells(line: str) -> List[str]:
        return [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]

    header = cells(lines[dash - 1])
    rows = []
    for line in lines[dash + 1:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, cells(line))))
    return rows


def test_compare_script(grid, tmp_path):
    res = grid
    assert res.returncode == 0, res.describe()
    source = only_sweep_dir(res)
    date, time_ = source.parent.name, source.name
    # Two sweeps in this working directory: an old copy and the real one (newest).
    newest = tmp_path / "outputs" / "multirun" / date / time_
    older = tmp_path / "outputs" / "multirun" / "2000-01-01" / "00-00-00"
    shutil.copytree(source, newest)
    shutil.copytree(source, older)

    out = compare([str(newest)], tmp_path)
    assert out.returncode == 0, out.describe()
    rows = parse_table(out.stdout)
    assert len(rows) == 4, out.stdout
    assert {"run", "what differs", "status", "best val loss"} <= set(rows[0]), rows[0]
    jobs = {str(job_num(j)): j for j in job_dirs(newest)}
    assert sorted(r["run"] for r in rows) == sorted(jobs), rows
    losses = [float(r["best val loss"]) for r in rows]
    assert losses == sorted(losses), f"not sorted by best val loss:\n{out.stdout}"
    expected_order = sorted(jobs, key=lambda n: metrics(jobs[n])["best_val_loss"])
    assert [r["run"] for r in rows] == expected_order, out.stdout
    for r in rows:
        job = jobs[r["run"]]
        ov = overrides_of(job)
        assert r["what differs"].split() == [f"activation={ov['activation']}", f"optimizer={ov['optimizer']}"], r
        assert float(r["best val loss"]) == pytest.approx(metrics(job)["best_val_loss"], abs=6e-5), r
        assert r["status"] == "completed"

    md = (newest / "comparison.md").read_text()
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + 4, md
    assert re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", table_lines[1]), table_lines[1]
    assert [line.split("|")[1].strip() for line in table_lines[2:]] == expected_order, md
    png = (newest / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)

    # No argument: the newest sweep under ./outputs/multirun.
    for f in ("comparison.md", "comparison.png"):
        (newest / f).unlink()
    out = compare([], tmp_path)
    assert out.returncode == 0, out.describe()
    assert f"{date}/{time_}" in out.stdout.splitlines()[0], out.stdout
    assert (newest / "comparison.md").is_file() and (newest / "comparison.png").is_file()
    assert not (older / "comparison.md").exists(), "compare.py without an argument did not pick the newest sweep"

    # Nothing to compare: a clear message, no traceback.
    empty = tmp_path / "empty"
    empty.mkdir()
    out = compare([], empty)
    assert out.returncode != 0, out.describe()
    assert "no sweeps" in out.stderr and "Traceback" not in out.stderr, out.stderr
    out = compare([str(empty / "nope")], empty)
    assert out.returncode != 0 and "not a directory" in out.stderr and "Traceback" not in out.stderr, out.describe()


# ---------------------------------------------------------------------------
# 7. The TensorBoard server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def http_json(url: str, body: Optional[dict] = None, timeout: float = 10) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    with _OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def poll(fetch: Callable[[], Any], ready: Callable[[Any], bool], deadline: float, proc: subprocess.Popen) -> Any:
    """fetch() until ready(answer) or the deadline; returns the last answer (None if never answered)."""
    answer = None
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"tensorboard exited with {proc.returncode}")
        try:
            answer = fetch()
            if ready(answer):
                return answer
        except OSError:
            pass
        if time.monotonic() > deadline:
            return answer
        time.sleep(0.3)


SESSION_GROUPS_REQUEST = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS",
                                                                   "STATUS_FAILURE", "STATUS_RUNNING"],
                          "colParams": [], "startIndex": 0, "sliceSize": 100}
EPOCH_TAGS = ("loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr", "grads/layer_0")
SCALAR_TAGS = EPOCH_TAGS + ("loss/train_step",)


def test_tensorboard_server_api(grid, tmp_path):
    res = grid
    assert res.returncode == 0, res.describe()
    logdir = res.cwd / "outputs"
    jobs = {j.relative_to(logdir).as_posix(): j for j in job_dirs(only_sweep_dir(res))}
    assert len(jobs) == 4

    script = Path(sys.executable).with_name("tensorboard")
    commands = [[sys.executable, "-m", "tensorboard.main"]] + ([[str(script)]] if script.exists() else [])
    answers: Dict[str, Any] = {}
    for i, command in enumerate(commands):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / f"tensorboard{i}.log").open("w")
        proc = subprocess.Popen([*command, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=process_env(one_thread=False))
        try:
            deadline = time.monotonic() + 30
            try:
                answers["runs"] = poll(lambda: http_json(f"{base}/data/runs"),
                                       lambda a: a is not None and len(a) >= 4, deadline, proc)
            except RuntimeError:
                if i + 1 < len(commands):  # `python -m tensorboard.main` did not start: try the script
                    continue
                raise
            assert answers["runs"] is not None, "tensorboard did not answer within 30 s"
            assert sorted(answers["runs"]) == sorted(jobs), answers["runs"]

            answers["tags"] = poll(lambda: http_json(f"{base}/data/plugin/scalars/tags"),
                                   lambda a: all(set(SCALAR_TAGS) <= set(a.get(r, {})) for r in jobs), deadline, proc)
            for run in jobs:
                missing = set(SCALAR_TAGS) - set(answers["tags"].get(run, {}))
                assert not missing, f"run {run} lacks scalar tags {sorted(missing)}"
            # per epoch: step = epoch; per step: step = global step (2 epochs of 2 steps)
            run0 = sorted(jobs)[0]
            for tag, steps in (("loss/val", [1, 2]), ("loss/train_step", [1, 2, 3, 4])):
                q = urllib.parse.urlencode({"run": run0, "tag": tag})
                points = http_json(f"{base}/data/plugin/scalars/scalars?{q}")
                answers[f"scalars {tag}"] = points
                assert [p[1] for p in points] == steps, (tag, points)

            answers["experiment"] = poll(
                lambda: http_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""}),
                lambda a: any(h["name"] == "optimizer.name" for h in a.get("hparamInfos", [])), deadline, proc)
            infos = {h["name"]: h for h in answers["experiment"]["hparamInfos"]}
            for name in ("optimizer.name", "activation.name"):
                assert name in infos and infos[name].get("differs") is True, infos.get(name)
                assert sorted(infos[name]["domainDiscrete"]) == sorted(
                    {"optimizer.name": ["adam", "sgd"], "activation.name": ["relu", "tanh"]}[name])
            assert infos["data.name"].get("differs") is False, infos["data.name"]
            metric_tags = {m["name"]["tag"] for m in answers["experiment"]["metricInfos"]}
            assert "hparam/best_val_loss" in metric_tags, sorted(metric_tags)

            answers["session_groups"] = poll(
                lambda: http_json(f"{base}/data/plugin/hparams/session_groups", SESSION_GROUPS_REQUEST),
                lambda a: a.get("totalSize") == 4, deadline, proc)
            groups = answers["session_groups"]
            assert groups["totalSize"] == 4, groups
            assert sorted(g["name"] for g in groups["sessionGroups"]) == sorted(jobs)
            for g in groups["sessionGroups"]:
                job = jobs[g["name"]]
                values = {mv["name"]["tag"]: mv.get("value") for mv in g["metricValues"]}
                assert values.get("hparam/best_val_loss") == pytest.approx(metrics(job)["best_val_loss"],
                                                                           rel=1e-6), (g["name"], values)
                ov = overrides_of(job)
                assert g["hparams"]["optimizer.name"] == ov["optimizer"]
                assert g["hparams"]["activation.name"] == ov["activation"]
                assert g["hparams"]["status"] == "completed"
            break
        finally:
            (tmp_path / "tensorboard_answers.json").write_text(json.dumps(answers, indent=1, default=str))
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# ---------------------------------------------------------------------------
# 8. A bad value in one job


def test_bad_value_in_one_job_fails_before_any_job(tmp_path):
    """In-process (test_errors runs the same sweep as a process): every job is checked before the first runs."""
    message = refusal(["-m", "optimizer.lr=0.1,-1", *FAST])
    assert re.search(r"optimizer\.lr=-1(\.0)?\b", message), message


# ---------------------------------------------------------------------------
# 9. Pruning hopeless jobs (pruning=median)


def check_pruned(jobs: List[Path], hopeless: float) -> None:
    """The job with optimizer.lr=`hopeless` stopped early as pruned (metrics.json and HParams); the others
    ran all 5 epochs."""
    for job in jobs:
        m = metrics(job)
        want = "pruned" if float(overrides_of(job)["optimizer.lr"]) == hopeless else "completed"
        assert m["status"] == want, (job.name, m["status"], m.get("message"))
        assert hparams_session_start(job).get("status") == want, job.name
        if want == "pruned":
            assert 2 <= m["epochs_run"] < 5 and len(m["history"]["val_loss"]) == m["epochs_run"], m
            assert m["message"].startswith(f"pruned after epoch {m['epochs_run']}: best val loss"), m["message"]
        else:
            assert m["epochs_run"] == 5, (job.name, m["epochs_run"])


def test_hopeless_job_is_pruned_in_grid_sweep(tmp_path):
    res, sweep, jobs = finished_sweep(_run_sweep(tmp_path, "prune_grid"), 3)
    check_pruned(jobs, 1e-5)
    assert metrics(jobs[2])["epochs_run"] == 2  # judged first after epoch 2, against jobs 0 and 1
    assert "pruned: 2 epochs" in res.stdout, res.describe()
    assert all("pruning=" not in j.name for j in jobs), "the group choice is the same for every job: not in names"


def test_hopeless_job_is_pruned_with_joblib_launcher(tmp_path):
    res, sweep, jobs = finished_sweep(_run_sweep(tmp_path, "prune_joblib"), 3)
    check_pruned(jobs, 1e-5)


def test_pruned_trial_does_not_stop_optuna_search(tmp_path):
    res, sweep, jobs = finished_sweep(_run_sweep(tmp_path, "prune_optuna"), 3)
    lrs = [overrides_of(j)["optimizer.lr"] for j in jobs]
    assert lrs == ["1e-05", "0.05", "1e-05"], lrs
    statuses = [metrics(j)["status"] for j in jobs]
    assert statuses == ["completed", "completed", "pruned"], statuses
    assert hparams_session_start(jobs[2]).get("status") == "pruned"
    # The pruned trial gave Optuna its best val loss so far; the best trial is the best metrics.json.
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = min(metrics(j)["best_val_loss"] for j in jobs)
    assert results["best_value"] == pytest.approx(best, rel=1e-9), results
    assert float(results["best_params"]["optimizer.lr"]) == 0.05, results


# ---------------------------------------------------------------------------
# 10. What a sweep prints


def test_sweep_prints_model_summary_once(grid):
    res, sweep, jobs = finished_sweep(grid, 4)
    assert res.stdout.count("output shape") == 1, res.stdout  # the layer table, once (job 0)
    one_liners = [line for line in res.stdout.splitlines() if line.startswith("model  mlp") and "parameters" in line]
    assert len(one_liners) == 3 and all("2 -> 8 -> 1" in line for line in one_liners), res.stdout


def test_optuna_log_has_no_escape_codes_when_piped(optuna_a):
    res = optuna_a
    assert res.returncode == 0, res.describe()
    assert "A new study created" in res.output, res.describe()  # Optuna's own (colorlog) log line
    assert "\x1b" not in res.output, repr(res.output[:2000])


MISSING_PLUGINS = [("hparams_search=optuna", "hydra-optuna-sweeper"), ("hydra/launcher=joblib", "hydra-joblib-launcher"),
                   ("hydra/launcher=submitit_slurm", "hydra-submitit-launcher"),
                   ("hydra/launcher=ray_cluster", "hydra-ray-launcher")]


def _missing_plugin_message(override: str, plugin: str) -> str:
    extra = "ray" if "ray" in plugin else "sweeps"
    return (f"mlpkit: error: {override} needs the {plugin} plugin, which is not installed; "
            f'install it with: pip install "mlpkit[{extra}]"')


@pytest.mark.parametrize("override, plugin", MISSING_PLUGINS)
def test_missing_sweep_plugin_names_the_extra(monkeypatch, override, plugin):
    import importlib.util

    from mlpkit.app.cli import check_sweep_plugins
    from mlpkit.errors import ConfigError

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.") else find_spec(name, *a))
    with pytest.raises(ConfigError) as err:
        check_sweep_plugins(["train.py", "-m", override, *FAST])
    assert f"mlpkit: error: {err.value}" == _missing_plugin_message(override, plugin)


def test_missing_sweep_plugin_stops_the_process_in_one_line(tmp_path):
    # An empty regular package `hydra_plugins` ahead on the path hides the installed plugins,
    # as on a machine where `pip install mlpkit` ran without the `sweeps` extra.
    override, plugin = MISSING_PLUGINS[0]
    hide = tmp_path / "hide" / "hydra_plugins"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("")
    res = train(["-m", override, *FAST], tmp_path / "work", timeout=60, env={"PYTHONPATH": str(hide.parent)})
    assert res.returncode == 2, res.describe()
    assert res.stderr.strip() == _missing_plugin_message(override, plugin), res.describe()
    assert not (tmp_path / "work" / "outputs").exists()


def test_a_grid_sweep_composes_each_job_config_once(tmp_path, monkeypatch):
    """mlpkit's check of every job, the sweeper's check and the launch share one composition per job
    (cli.install_sweep_config_cache): 1 + 3 compositions for 3 jobs, not 1 + 9; each job still gets its own
    config, equal to a fresh composition of its overrides."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    composed: List[List[str]] = []
    original = ConfigLoaderImpl.load_configuration

    def counted(self, *args, **kwargs):
        composed.append(list(kwargs.get("overrides", [])))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counted)
    sweep = tmp_path / "sweep"
    run = train_in_process(["-m", *TINY, "activation=relu,tanh,sigmoid", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert run.returncode == 0, run.describe()
    assert len(composed) == 4, composed
    for job, activation in enumerate(("relu", "tanh", "sigmoid")):
        (run_dir,) = sweep.glob(f"{job}_activation={activation},*")  # its own directory, named by its overrides
        model = json.loads((run_dir / "model.json").read_text())["kwargs"]
        fresh = compose_config([*TINY, f"activation={activation}"])
        assert model["activation"] == activation == fresh.activation.name and model["hidden"] == [8]
