"""What the tests share, imported from conftest (`from conftest import train, ...`): run `python train.py`
as a user would, as a process (`train`) or in the test's process (`train_in_process`, without the seconds
of imports a process pays), compose the config in-process, write tables, find what a run left behind, read
it back.

Every run has its own temporary working directory, so `outputs/` lands there and a test can say "no
metrics.json anywhere under it". A process's time limit grows with the machine's load (`scaled`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
TRAIN_PY = REPO / "train.py"
CONFIGS = REPO / "configs"
PYTHON = sys.executable

# The options the contract (shared/CONTRACT.md, "Config groups") says each group must have at least; its
# groups are those whose every option file is exercised, the options themselves come from configs/.
CONTRACT_OPTIONS = {
    "data": ["xor", "and", "or", "nand", "moons", "circles", "spiral", "blobs", "sine", "classification",
             "regression", "digits", "iris", "wine", "breast_cancer", "diabetes", "csv"],
    "model": ["mlp", "perceptron"],
    "activation": ["step", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "softplus", "maxout",
                   "gelu", "silu", "identity"],
    "init": ["default", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "lecun_normal",
             "orthogonal", "normal", "zeros"],
    "norm": ["none", "batch", "layer"],
    "optimizer": ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw"],
    "scheduler": ["none", "step", "cosine", "plateau"],
    "early_stopping": ["val_loss", "none"],
}
GROUPS = tuple(CONTRACT_OPTIONS)

# A tiny, fast run: one epoch on 120 rows of 4 features (not 2-D, so no decision-boundary figure
# and no matplotlib import: each `python train.py` costs seconds of imports already).
TINY = ["data=classification", "data.n_samples=120", "data.n_features=4", "model.hidden=[8]",
        "trainer.max_epochs=1", "trainer.progress=false"]

# Runs in this suite are small; one CPU thread per process avoids two processes fighting over
# two cores with spinning OpenMP threads (it changes speed only, never results).
SUBPROCESS_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def group_options(group: str) -> List[str]:
    """The option names of configs/<group>/*.yaml (mlpkit.app.config.config_groups)."""
    from mlpkit.app.config import config_groups

    return config_groups()[group]


def scaled(seconds: float) -> float:
    """A time limit measured on an idle machine, stretched by the load: seconds x max(1, load / cores)."""
    return seconds * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    lines = [",".join(header)] + [",".join(str(c) for c in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_csv(path: Path, n: int = 60) -> Path:
    """A small valid CSV: 3 numeric features and a text label with 3 classes (column `label`)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        cls = i % 3
        x = rng.normal(cls, 0.5, 3)
        rows.append([f"{v:.4f}" for v in x] + [["cat", "dog", "fox"][cls]])
    return write_csv(path, ["a", "b", "c", "label"], rows)


def messy_table(path: Path, n: int = 300, seed: int = 0, *, sep: str = ",", bom: bool = False,
                encoding: str = "utf-8", task: str = "multiclass") -> Path:
    """A table as real files come: an id column counting rows, a text column that is unique per row,
    categories with missing cells, numbers with NA and empty cells, numeric-coded zip codes, a
    True/False column, a constant column, quoted fields holding the delimiter and a newline, and a
    target ("species": 3 classes, "churn": yes/no with about 20% yes, or "price": a number) that the
    features predict. Written by hand, so every quirk is exactly where the tests expect it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    islands = ["Biscoe", "Dream", "Torgersen"]
    header = ["id", "name", "island", "sex", "bill length", "mass", "zip", "member", "const", "comment",
              {"multiclass": "species", "binary": "churn", "regression": "price"}[task]]
    lines = [sep.join(header)]
    for i in range(n):
        k = int(rng.integers(0, 3))
        island = islands[k] if rng.random() > 0.1 else ("" if rng.random() < 0.5 else "NA")
        sex = ["male", "female"][int(rng.integers(0, 2))] if rng.random() > 0.1 else "NA"
        bill = f"{35 + 6 * k + rng.normal():.2f}" if rng.random() > 0.08 else ["NA", "", "null"][i % 3]
        mass = f"{3000 + 500 * k + 200 * rng.normal():.1f}"
        zipc = [94110, 10001, 60601][(k + int(rng.random() < 0.3)) % 3]
        member = ["True", "False"][int(rng.random() < 0.5)]
        comment = f'"note {i}{sep} with the delimiter"' if i % 7 else f'"line one of {i}\nline two"'
        if task == "multiclass":
            target = ["Adelie", "Gentoo", "Chinstrap"][k]
        elif task == "binary":
            target = "yes" if (k == 2 and rng.random() < 0.6) or rng.random() < 0.03 else "no"
        else:
            target = f"{100 + 40 * k + 0.01 * float(mass) + rng.normal():.3f}"
        lines.append(sep.join([str(i + 1), f"bird-{i:04d}", island, sex, bill, mass, str(zipc), member, "x",
                               comment, target]))
    text = "\n".join(lines) + "\n"
    data = text.encode(encoding)
    if bom:
        data = b"\xef\xbb\xbf" + data
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------
# Running train.py


@dataclass
class Run:
    """A finished `python train.py` process."""

    args: List[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0
    pid: int = 0
    program: str = "train.py"

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        return (f"python {self.program} {' '.join(self.args)}\n(cwd {self.cwd}) exited {self.returncode} after "
                f"{self.seconds:.1f} s\n--- stdout (tail) ---\n{self.stdout[-3000:]}\n"
                f"--- stderr (tail) ---\n{self.stderr[-4000:]}")


def process_env(extra: Optional[Dict[str, str]] = None, *, one_thread: bool = True) -> Dict[str, str]:
    """The environment of a test's subprocess: no HYDRA_FULL_ERROR (the tests look for tracebacks), and
    one OpenMP thread unless a test checks the threads torch picks itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return {**env, "PYTHONUNBUFFERED": "1", **(SUBPROCESS_ENV if one_thread else {}), **(extra or {})}


def start_python(script: Path, args: Sequence[str], cwd: Path, *, env: Optional[Dict[str, str]] = None,
                 one_thread: bool = True) -> subprocess.Popen:
    """Start `python <script> *args` in `cwd`, in its own process group (killed whole on a timeout)."""
    Path(cwd).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([PYTHON, str(script), *args], cwd=cwd, env=process_env(env, one_thread=one_thread),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, args: Sequence[str], cwd: Path, start: float, timeout: float,
           program: str = "train.py") -> Run:
    """Wait for a started process; past `scaled(timeout)` (the largest the load has made it while the
    process ran) kill its whole group (joblib and submitit workers too), and the Run says so.
    `start`: time.perf_counter() when it was started."""
    limit = scaled(timeout)
    while True:
        try:
            out, err = proc.communicate(timeout=max(1.0, min(30.0, start + limit - time.perf_counter())))
            break
        except subprocess.TimeoutExpired:
            limit = max(limit, scaled(timeout))
            if time.perf_counter() - start < limit:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            err += f"\n[test] killed after {limit:.0f} s (a {timeout:.0f} s limit, stretched by the load)"
            proc.returncode = -9
            break
    return Run(list(args), Path(cwd), proc.returncode, out, err, time.perf_counter() - start, proc.pid, program)


def run_python(script: Path, args: Sequence[str], cwd: Path, *, timeout: float = 240,
               env: Optional[Dict[str, str]] = None, one_thread: bool = True) -> Run:
    """Run `python <script> *args` in `cwd` and wait (see start_python and finish)."""
    start = time.perf_counter()
    proc = start_python(script, args, cwd, env=env, one_thread=one_thread)
    return finish(proc, args, cwd, start, timeout, Path(script).name)


def train(args: Sequence[str], cwd: Path, *, timeout: float = 240, env: Optional[Dict[str, str]] = None,
          one_thread: bool = True) -> Run:
    """Run `python <repo>/train.py *args` in `cwd` and wait for it."""
    return run_python(TRAIN_PY, args, cwd, timeout=timeout, env=env, one_thread=one_thread)


# torch's own CPU thread count in a fresh process (what a process started without OMP_NUM_THREADS gets);
# conftest records it before it sets one thread for the session
TORCH_THREADS: List[int] = []


def train_in_process(args: Sequence[str], cwd: Path, *, env: Optional[Dict[str, str]] = None,
                     one_thread: bool = True) -> Run:
    """`python train.py *args` run in this process: train.py's own `_main` (its command-line checks, Hydra's
    main with mlpkit's callbacks, launcher and sweeper, its exit statuses: 0, 2 for a refusal, 130 when
    interrupted, 1 with the traceback in stderr for an uncaught error), in `cwd`, its stdout and stderr
    captured, as the process would run it. Seconds cheaper than the process (no imports to pay), for the
    tests that read what a run leaves behind; what needs a process of its own (signals, kills, threads
    or pids of launcher jobs, start-up) still uses `train`. Everything the run changes in this process
    (working directory, argv, environment, signal handlers, logging, Hydra's global state, mlpkit's
    run-directory bookkeeping, torch's threads, the garbage collector that train.py turns off for its start-up)
    is put back afterwards. `one_thread`: torch starts the run
    with one CPU thread, as `train` gives a process (OMP_NUM_THREADS=1); else with torch's own count."""
    import contextlib
    import gc
    import io
    import logging
    import runpy
    import traceback

    import torch
    from hydra.core.global_hydra import GlobalHydra

    from mlpkit import startup
    from mlpkit.app import cli, config

    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_env, saved_argv, saved_cwd = dict(os.environ), list(sys.argv), os.getcwd()
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    saved_loggers = {name: (lg.level, lg.disabled, lg.propagate, list(lg.handlers))
                     for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    saved_threads, saved_config_dir, saved_gc = torch.get_num_threads(), config.CONFIG_DIR, gc.isenabled()
    out, err = io.StringIO(), io.StringIO()
    start, code = time.perf_counter(), 0
    Path(cwd).mkdir(parents=True, exist_ok=True)

    # mlpkit's bookkeeping of a run (the directories it made, claimed and reserved, its trainer): the run's
    # own from empty, what this process held before given back afterwards
    state = (cli._RESERVED, cli.CREATED, cli.HELD, cli.TRAINER, cli.VALIDATED)
    saved_state = [type(x)(x) for x in state]
    saved_guard = (cli.GUARD.began, cli.GUARD.saved)

    def reset_run_state() -> None:
        for x in state:
            x.clear()
        cli.GUARD.began, cli.GUARD.saved = False, None
        GlobalHydra.instance().clear()

    reset_run_state()
    try:
        os.environ.clear()
        os.environ.update(process_env(env, one_thread=one_thread))
        torch.set_num_threads(1 if one_thread or not TORCH_THREADS else TORCH_THREADS[0])
        os.chdir(cwd)
        sys.argv = [str(TRAIN_PY), *[str(a) for a in args]]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(str(TRAIN_PY), run_name="__main__")  # as `python train.py` runs it
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if stop.code is not None and not isinstance(stop.code, int):
                    print(stop.code, file=sys.stderr)
            except BaseException:  # what the process would end with: exit 1 and the traceback
                traceback.print_exc()
                code = 1
    finally:
        for handler in list(root.handlers):
            if handler not in saved_root[0]:
                handler.close()
        root.handlers[:], root.level = saved_root
        for name, lg in logging.Logger.manager.loggerDict.items():
            if not isinstance(lg, logging.Logger):
                continue
            for handler in lg.handlers:
                if name not in saved_loggers or handler not in saved_loggers[name][3]:
                    handler.close()
            lg.level, lg.disabled, lg.propagate, lg.handlers[:] = saved_loggers.get(
                name, (logging.NOTSET, False, True, []))
        cli.release_dirs()  # what a process gives back when it exits
        reset_run_state()
        for x, saved in zip(state, saved_state):
            x.update(saved) if isinstance(x, dict) else x.extend(saved)
        cli.GUARD.began, cli.GUARD.saved = saved_guard
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        torch.set_num_threads(saved_threads)
        config.CONFIG_DIR = saved_config_dir
        startup.release()  # a run refused before its first epoch leaves the collector off (its process would end)
        gc.enable() if saved_gc else gc.disable()
    return Run([str(a) for a in args], Path(cwd), code, out.getvalue(), err.getvalue(),
               time.perf_counter() - start, os.getpid())


def train_many(jobs: Sequence[Tuple[Sequence[str], Path]], workers: int = 3) -> List[Run]:
    """Run several independent `train.py` commands at once (threads waiting on processes); results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: train(job[0], job[1]), jobs))


def train_mixed(jobs: Sequence[Tuple[Sequence[str], Path]], as_process: Iterable[int]) -> List[Run]:
    """Several independent `train.py` commands, results in order: the jobs whose index is in `as_process`
    as processes (`train`), started first and running meanwhile, the others one after another in this
    process (`train_in_process`)."""
    as_process = set(as_process)
    started = {i: (time.perf_counter(), start_python(TRAIN_PY, args, cwd)) for i, (args, cwd) in enumerate(jobs)
               if i in as_process}
    runs = {i: train_in_process(args, cwd) for i, (args, cwd) in enumerate(jobs) if i not in as_process}
    for i, (start, proc) in started.items():
        runs[i] = finish(proc, jobs[i][0], jobs[i][1], start, 240)
    return [runs[i] for i in range(len(jobs))]


def popen_train(args: Sequence[str], cwd: Path) -> subprocess.Popen:
    """Start `python train.py *args` without waiting (for signal tests)."""
    return start_python(TRAIN_PY, args, cwd)


# ---------------------------------------------------------------------------
# Finding what a run left behind

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^\d{2}-\d{2}-\d{2}$")


def metrics_files(root: Path) -> List[Path]:
    return sorted(Path(root).rglob("metrics.json"))


def run_dirs(root: Path) -> List[Path]:
    """Single-run directories: outputs/runs/<date>/<time>_<overrides>/."""
    base = Path(root) / "outputs" / "runs"
    if not base.is_dir():
        return []
    return sorted(d for day in base.iterdir() if day.is_dir() for d in day.iterdir() if d.is_dir())


def only_run_dir(root: Path) -> Path:
    dirs = run_dirs(root)
    assert len(dirs) == 1, f"expected exactly one run directory under {root}/outputs/runs, found {dirs}"
    return dirs[0]


def sweep_dirs(root: Path) -> List[Path]:
    """Sweep directories: outputs/multirun/<date>/<time>/."""
    base = Path(root) / "outputs" / "multirun"
    if not base.is_dir():
        return []
    return sorted(t for day in base.iterdir() if day.is_dir() for t in day.iterdir() if t.is_dir())


def job_dirs(root: Path) -> List[Path]:
    """Job directories of every sweep under root, ordered by job number."""
    jobs = [j for s in sweep_dirs(root) for j in s.iterdir() if j.is_dir()]
    return sorted(jobs, key=lambda j: (j.parent.name, int(j.name.split("_", 1)[0]) if j.name.split("_", 1)[0].isdigit()
                                       else 10**9))


def job_overrides(job_dir: Path) -> List[str]:
    """The task overrides Hydra recorded for a run or sweep job (.hydra/overrides.yaml)."""
    import yaml

    return list(yaml.safe_load((Path(job_dir) / ".hydra" / "overrides.yaml").read_text()) or [])


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    assert path.is_file(), f"{path} is missing; run dir holds {sorted(p.name for p in Path(run_dir).iterdir())}"
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------
# Reading TensorBoard event files back


@dataclass
class Events:
    """Everything the event files under one run directory hold, merged."""

    files: List[Path] = field(default_factory=list)
    scalars: Dict[str, List[Tuple[int, float]]] = field(default_factory=dict)  # tag -> [(step, value)]
    images: Dict[str, List[int]] = field(default_factory=dict)  # tag -> steps
    histograms: Dict[str, List[int]] = field(default_factory=dict)
    plugin_tags: Dict[str, Dict[str, Path]] = field(default_factory=dict)  # plugin -> tag -> file
    plugin_content: Dict[str, Dict[str, bytes]] = field(default_factory=dict)
    scalar_files: Dict[str, Path] = field(default_factory=dict)  # tag -> a file holding it

    def steps(self, tag: str) -> List[int]:
        return [s for s, _ in self.scalars.get(tag, [])]

    def values(self, tag: str) -> List[float]:
        return [v for _, v in self.scalars.get(tag, [])]


def read_events(run_dir: Path) -> Events:
    """Load every events.out.tfevents* file under run_dir (each directory as one TensorBoard run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ev = Events()
    ev.files = sorted(Path(run_dir).rglob("events.out.tfevents*"))
    for folder in sorted({f.parent for f in ev.files}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "histograms": 0,
                                                           "tensors": 0, "compressedHistograms": 0})
        acc.Reload()
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            ev.scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
            ev.scalar_files.setdefault(tag, folder)
        for tag in tags.get("images", []):
            ev.images.setdefault(tag, []).extend(e.step for e in acc.Images(tag))
        for tag in tags.get("histograms", []):
            ev.histograms.setdefault(tag, []).extend(e.step for e in acc.Histograms(tag))
        for plugin in ("hparams",):
            try:
                content = acc.PluginTagToContent(plugin)
            except KeyError:
                content = {}
            for tag, data in content.items():
                ev.plugin_tags.setdefault(plugin, {})[tag] = folder
                ev.plugin_content.setdefault(plugin, {})[tag] = data
    return ev


def event_files_holding(run_dir: Path, needle_tags: Sequence[str]) -> List[Path]:
    """The event files (not folders) under run_dir whose records include every tag in needle_tags."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    found = []
    for f in sorted(Path(run_dir).rglob("events.out.tfevents*")):
        seen = set()
        for event in EventFileLoader(str(f)).Load():
            if event.HasField("summary"):
                seen.update(v.tag for v in event.summary.value)
        if all(t in seen for t in needle_tags):
            found.append(f)
    return found


# ---------------------------------------------------------------------------
# Composing configs in-process (Hydra's compose API)


def compose_config(overrides: Sequence[str] = (), *, with_hydra: bool = False):
    """The config `python train.py *overrides` composes (Hydra's compose API), less the hydra node unless
    `with_hydra`. Hydra is initialised on the first call and stays so for the session."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mlpkit.app.cli import register_resolvers
    from mlpkit.app.config import register_schema

    if not GlobalHydra.instance().is_initialized():
        register_schema()
        register_resolvers()
        initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3")  # initialises Hydra on creation
    return compose(config_name="train", overrides=list(overrides), return_hydra_config=with_hydra)


def sweep_jobs(args: Sequence[str]) -> List[List[str]]:
    """The override lists of the jobs of `python train.py -m *args` (a grid: every combination)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = [a for a in args if a != "-m"]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)
    return [list(job) for batch in batches for job in batch]


def refusal(args: Sequence[str], run_dir: Optional[Path] = None) -> str:
    """The one-line message `python train.py *args` stops with ('' = accepted), found in-process by the
    functions train.py runs: the command-line checks, then those of every job's composed config (all of a
    sweep's jobs before the first runs), then, for a single run and with `run_dir`, the run itself, for
    what only the data show. A refusal from the run comes before training: no file may be left in it."""
    from mlpkit.app.cli import check_command_line, checked_job_config, rewrite_resume_argv, train_from_config
    from mlpkit.errors import ConfigError

    try:
        args = rewrite_resume_argv(["train.py", *args])[1:]
        check_command_line(args)
        jobs = sweep_jobs(args) if "-m" in args else [list(args)]
        configs = [checked_job_config(compose_config(job, with_hydra=True), job) for job in jobs]
        if run_dir is not None and len(configs) == 1 and "-m" not in args:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            train_from_config(configs[0], Path(run_dir))
    except ConfigError as err:
        if run_dir is not None:
            left = [p for p in Path(run_dir).rglob("*") if p.is_file()]
            assert not left, f"refused after it wrote {left}"
        return str(err)
    return ""


def finished_run(run_dir: Path, args: Sequence[str]) -> Path:
    """A finished run directory as `python train.py *args` leaves it (the run, .hydra/config.yaml and
    overrides.yaml: what resume reads), made in-process: seconds cheaper than the process."""
    import yaml
    from omegaconf import OmegaConf

    from mlpkit.app.cli import train_from_config

    cfg = compose_config(args)
    train_from_config(cfg, Path(run_dir))
    (Path(run_dir) / ".hydra").mkdir()
    OmegaConf.save(cfg, Path(run_dir) / ".hydra" / "config.yaml")
    (Path(run_dir) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(args)))
    return Path(run_dir)
