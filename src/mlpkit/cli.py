"""From a composed Hydra config to a finished run: the body of `python train.py`."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

from mlpkit.config import MONITOR_MODE, validate
from mlpkit.errors import ConfigError, RunError, exit_with

log = logging.getLogger("mlpkit")

NAME_LIMIT = 200  # bytes of a run directory name; file systems allow 255


def run_name(prefix: str, overrides: str) -> str:
    """`<prefix>_<overrides>` made safe as one directory name: no `/`, at most NAME_LIMIT bytes."""
    name = f"{prefix}_{overrides}" if overrides else prefix
    name = name.replace("/", "|").replace("\\", "|").replace("|", "-")
    if len(name.encode()) > NAME_LIMIT:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        head = name.encode()[:NAME_LIMIT - 12].decode(errors="ignore")
        name = f"{head}~{digest}"
    return name


_RESERVED: dict = {}
CREATED: List[Path] = []  # run directories this process made: removed again if the run never starts


def unique_dir(parent: str, name: str) -> str:
    """`parent/name`, created now; `parent/name_2`, `_3`, ... when another run took it first.

    mkdir is atomic, so two runs started in the same second never share a directory. The
    answer is remembered, so every later resolution in this process gives the same path
    (jobs in other processes receive it in the config's resolver cache)."""
    key = (str(parent), str(name))
    if key not in _RESERVED:
        path, n = Path(parent) / name, 1
        while True:
            try:
                path.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                n += 1
                path = Path(parent) / f"{name}_{n}"
            except OSError as err:
                raise ConfigError(f"cannot create the run directory {path}: {err.strerror or err}; "
                                  "run from a writable directory or set hydra.run.dir") from None
        CREATED.append(path)
        _RESERVED[key] = str(path)
    return _RESERVED[key]


def register_resolvers() -> None:
    """The resolvers configs/train.yaml names its output directories with."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("mlpkit_name"):
        OmegaConf.register_new_resolver("mlpkit_name", lambda prefix, overrides="": run_name(str(prefix),
                                                                                          str(overrides or "")))
    if not OmegaConf.has_resolver("mlpkit_unique"):
        OmegaConf.register_new_resolver("mlpkit_unique", unique_dir, use_cache=True)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def check_command_line(args: List[str]) -> None:
    """ConfigError for an override Hydra's grammar cannot read (e.g. a non-ASCII option name), with the
    options of its group when it chooses one."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from mlpkit.config import check_overrides, config_groups

    parser = OverridesParser.create()
    overrides = [a for a in args if not a.startswith("-") and ("=" in a or a.startswith("~"))]
    for arg in overrides:
        try:
            parser.parse_overrides([arg])
        except HydraException as err:
            key, _, value = arg.partition("=")
            key = key.lstrip("+~")
            groups = config_groups()
            if key in groups:
                raise ConfigError(f"{key}={value!r} is not known; choose one of: {', '.join(groups[key])}") from None
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"cannot read the override {arg!r} ({reason}); values with spaces or other "
                              "characters need quotes, e.g. 'key=\"a b\"'") from None
    check_overrides(overrides)


def _plain(value: Any) -> bool:
    """A value that is data: numbers, text without interpolation, and lists or dicts of them."""
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and "${" not in value)


def saved_overrides(run_dir: Path) -> List[str]:
    """The mlpkit overrides of `<run_dir>/.hydra/overrides.yaml`: config group choices with a known
    option and schema keys with plain values. Anything else (hydra.*, `+`/`~` forms, callbacks,
    interpolations) is refused with a ConfigError naming the line: resuming runs none of it."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from mlpkit.config import config_groups, schema_keys

    saved = run_dir / ".hydra" / "overrides.yaml"
    where = f"resume={run_dir}: {saved.relative_to(run_dir)}"
    try:
        lines = yaml.safe_load(saved.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{where} is damaged ({type(err).__name__}); it must be a list of overrides") from None
    if lines is None:
        lines = []
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ConfigError(f"{where} is damaged: it must be a list of overrides (key=value lines)")
    groups, keys, parser = config_groups(), schema_keys(), OverridesParser.create()
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            [o] = parser.parse_overrides([line])
            ok = (not (o.is_add() or o.is_force_add() or o.is_delete() or o.is_sweep_override())
                  and o.package is None and _plain(o.value()))
        except (HydraException, ValueError):
            ok = False
        if ok and o.key_or_group == "resume":
            continue
        if ok and o.key_or_group in groups:
            ok = o.value() in groups[o.key_or_group]
        elif ok:
            ok = o.key_or_group in keys
        if not ok:
            raise ConfigError(f"{where} line {number} {line[:200]!r} is not an mlpkit override (a config group "
                              "option or a schema key with a plain value); refusing to resume from it")
        kept.append(line)
    return kept


def rewrite_resume_argv(argv: List[str]) -> List[str]:
    """`resume=<run_dir>` -> that run's own mlpkit overrides + `hydra.run.dir=<run_dir>`, quoted so that
    `=`, `,` and brackets in the directory name pass Hydra's override parser."""
    found = [a for a in argv[1:] if a.startswith(("resume=", "+resume=", "++resume="))]
    if not found:
        return argv
    run_dir = found[-1].split("=", 1)[1].strip()
    if len(run_dir) >= 2 and run_dir[0] == run_dir[-1] and run_dir[0] in "'\"":
        run_dir = run_dir[1:-1]
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"resume={run_dir}: no such run directory")
    if not (path / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError(f"resume={run_dir}: not an mlpkit run directory (no .hydra/overrides.yaml)")
    if not (path / "checkpoints" / "last.pt").is_file():
        raise ConfigError(f"resume={run_dir}: the run has no checkpoints/last.pt to continue from")
    rest = [a for a in argv[1:] if a not in found]
    if "-m" in rest or "--multirun" in rest:
        raise ConfigError("resume=<run_dir> continues one run; it cannot be combined with -m")
    return [argv[0], *saved_overrides(path), *rest, f"hydra.run.dir={_quote(str(path))}",
            f"resume={_quote(str(path))}"]


# What a resumed run may change; every other setting must stay as the run was trained.
RESUME_MAY_CHANGE = ("resume", "trainer.max_epochs", "trainer.progress", "trainer.device", "trainer.num_threads",
                     "trainer.deterministic", "trainer.log_every_n_steps", "trainer.histogram_every_n_epochs",
                     "trainer.boundary_every_n_epochs", "early_stopping.patience")
FINISHED = ("completed", "early_stopped", "diverged")


def _flat(node: Any, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def check_resume(cfg: Any, run_dir: Path) -> None:
    """Before Hydra writes into `run_dir`: every setting fits the saved run, last.pt is readable, and the
    run has not finished (then say so and exit 0: nothing is trained or changed)."""
    import json

    import yaml
    from omegaconf import OmegaConf

    from mlpkit.checkpoint import load_checkpoint

    try:
        old = _flat(yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {})
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"resume={run_dir}: .hydra/config.yaml is missing or damaged ({type(err).__name__})") from None
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    for flat in (old, new):  # mode=auto is the monitor's own mode (older runs wrote it out)
        if flat.get("early_stopping.mode") == "auto" and flat.get("early_stopping.monitor") in MONITOR_MODE:
            flat["early_stopping.mode"] = MONITOR_MODE[flat["early_stopping.monitor"]]
    for key, value in new.items():
        if key in old and key not in RESUME_MAY_CHANGE and old[key] != value:
            raise ConfigError(f"resume={run_dir}: {key}={value} does not fit the run, which was trained with "
                              f"{key}={old[key]}; a resumed run keeps its settings except "
                              f"{', '.join(RESUME_MAY_CHANGE[1:])}")
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = {}
    status = metrics.get("status")
    more = status == "completed" and int(state.get("epoch", 0)) < cfg.trainer.max_epochs
    if status in FINISHED and not more:
        print(f"mlpkit: resume={run_dir}: the run already finished (status {status} after "
              f"{metrics.get('epochs_run')} epochs); nothing to do, nothing changed"
              + (" (raise trainer.max_epochs to train it further)" if status == "completed" else ""), flush=True)
        raise SystemExit(0)


class RunDirGuard:
    """Leaves no trace of a run that never started: a run directory this process created is removed;
    a resumed one gets back its files as they were (Hydra rewrites .hydra/*.yaml and appends to the log)."""

    def __init__(self) -> None:
        self.began = False  # training began: from then on the directory is the run's
        self.saved: Optional[tuple] = None

    def remember(self, run_dir: Path) -> None:
        files = {p: p.read_bytes() if p.parent.name == ".hydra" else p.stat().st_size
                 for p in run_dir.rglob("*") if p.is_file()}
        self.saved = (run_dir, files)

    def discard(self, refused: bool = False) -> None:
        """Undo the run's traces; `refused`: a ConfigError, which is raised only before the first step
        (a resume that does not fit its checkpoint included), so even after `began`."""
        import shutil

        if self.began and not refused:
            return
        if self.saved is not None:
            run_dir, files = self.saved
            for p in [p for p in run_dir.rglob("*") if p.is_file() and p not in files]:
                p.unlink(missing_ok=True)
            for p, old in files.items():
                if isinstance(old, bytes):
                    p.write_bytes(old)
                elif p.is_file() and p.stat().st_size > old:
                    os.truncate(p, old)
            return
        _close_file_logs()
        for path in CREATED:
            if any(p.is_file() and not _start_up_file(p, path) for p in path.rglob("*")):
                continue  # e.g. a sweep directory whose earlier jobs ran: theirs to keep
            shutil.rmtree(path, ignore_errors=True)
            for parent in list(path.parents)[:3]:  # <date>/, runs/, outputs/ when nothing else is there
                try:
                    parent.rmdir()
                except OSError:
                    break
        CREATED.clear()


GUARD = RunDirGuard()


def _start_up_file(path: Path, run_dir: Path) -> bool:
    """What a run writes before training: Hydra's .hydra/ and multirun.yaml, its log, an empty event file."""
    parts = path.relative_to(run_dir).parts
    return ".hydra" in parts or path.suffix == ".log" or path.name in ("multirun.yaml",) \
        or path.name.startswith("events.out.tfevents")


def _close_file_logs() -> None:
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logging.getLogger().removeHandler(handler)


TRAINER: List[Any] = []  # the Trainer once training began: a signal then asks it to stop


def on_signal(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM for the whole program. Before training begins they end it at once (the run
    directory goes); once it began the trainer finishes its step, saves and stops; a second one aborts."""
    trainer = TRAINER[-1] if TRAINER else None
    if trainer is None or trainer.stop_signal is not None:
        raise KeyboardInterrupt
    trainer.stop_signal = signum
    log.info("%s received: finishing this step, then saving and stopping (press Ctrl-C again to abort "
             "without saving)", signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """on_signal for SIGINT and SIGTERM (SIGTERM would otherwise end the program without a word)."""
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, on_signal)


def check_run(config: Any) -> None:
    """Hydra's on_run_start (before the run directory exists): every check that needs no data. A bad
    value ends the program with one line; nothing is created."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        job = checked_job_config(config, list(config.hydra.overrides.task))
        if job.resume:
            GUARD.remember(Path(job.resume))
            check_resume(job, Path(job.resume))
        try:
            run_dir = config.hydra.run.dir  # our resolver creates it; an explicit one is created here
        except OmegaConfBaseException as err:  # the resolver's ConfigError, wrapped
            raise ConfigError(str(err).splitlines()[0].split("interpolation: ", 1)[-1]) from None
        try:
            if not Path(run_dir).exists():
                Path(run_dir).mkdir(parents=True)
                CREATED.append(Path(run_dir))
            if not Path(run_dir).is_dir():
                raise NotADirectoryError(20, "it is a file, not a directory")
            if not os.access(run_dir, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as err:
            raise ConfigError(f"hydra.run.dir={run_dir}: cannot create or write the run directory "
                              f"({err.strerror or err})") from None
    except ConfigError as err:
        GUARD.discard()
        exit_with(err)


def checked_job_config(config: Any, overrides: List[str]) -> Any:
    """The job's config (less hydra.*), resolved and validated; ConfigError names the first bad value."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from mlpkit.config import check_option_settings, check_overrides
    from mlpkit.trainer import resolve_device

    check_overrides(overrides)
    job = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]) if "hydra" in config else config
    try:
        OmegaConf.to_container(job, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "a value"
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
    validate(job)
    check_option_settings(job, overrides)
    resolve_device(job.trainer.device)
    return job


# Overrides that select a Hydra plugin of the `sweeps` extra -> the plugin's module in hydra_plugins.
SWEEP_PLUGINS = {
    "hparams_search=optuna": "hydra_optuna_sweeper",
    "hydra/sweeper=optuna": "hydra_optuna_sweeper",
    "hydra/launcher=joblib": "hydra_joblib_launcher",
    "hydra/launcher=submitit_local": "hydra_submitit_launcher",
    "hydra/launcher=submitit_slurm": "hydra_submitit_launcher",
}


def check_sweep_plugins(argv: List[str]) -> None:
    """ConfigError naming the extra to install when an override selects a sweep plugin that is
    missing (Hydra itself would only say "Could not find 'hydra/sweeper/optuna'")."""
    import importlib.util

    for arg in argv[1:]:
        module = SWEEP_PLUGINS.get(arg.lstrip("+").replace(" ", ""))
        if module and importlib.util.find_spec(f"hydra_plugins.{module}") is None:
            raise ConfigError(f"{arg} needs the {module.replace('_', '-')} plugin, which is not installed; "
                              'install it with: pip install "mlpkit[sweeps]"')


def _model_kwargs(cfg: Any, data: Any) -> dict:
    act = {k: v for k, v in dict(cfg.activation).items() if k != "name" and v is not None}
    return {"in_dim": data.in_dim, "hidden": list(cfg.model.hidden), "out_dim": data.out_dim,
            "activation": cfg.activation.name, "activation_params": act, "norm": cfg.norm.name,
            "dropout": float(cfg.regularization.dropout), "init": cfg.init.name, "init_std": cfg.init.std,
            "init_gain": cfg.init.gain}


def save_run_data(run_dir: Path, data: Any, model_name: str, model_kwargs: dict) -> None:
    """What predict.py needs besides the weights: the fitted preprocessing, the model's shape,
    and which source rows went to which split (splits.npz, 0-based data rows of the source)."""
    import numpy as np

    from mlpkit.checkpoint import atomic_write, write_json

    data.preprocessing.save(run_dir)
    write_json(run_dir / "model.json", {"format": "mlpkit-model-1", "model": model_name, "kwargs": model_kwargs})
    atomic_write(run_dir / "splits.npz", lambda fh: np.savez_compressed(fh, **data.rows))


def _kept_checkpoint(result: Any, early: Any, perceptron: bool) -> str:
    """The checkpoint whose weights the test metrics came from: best.pt when the best epoch was restored."""
    if perceptron or not result.best_epoch:
        return "last"
    if result.status == "diverged" or (early is not None and early.restore_best):
        return "best"
    return "last"


def launcher_threads(launcher: Any) -> Optional[int]:
    """torch threads per job so that parallel jobs do not oversubscribe the cores.

    joblib runs n_jobs jobs at once on this machine: cores // n_jobs each. submitit gives each
    job cpus_per_task cores (1 when unset). The basic launcher runs one job at a time: None."""
    target = str(launcher.get("_target_", "")) if launcher is not None else ""
    cores = os.cpu_count() or 1
    if "joblib" in target:
        n_jobs = launcher.get("n_jobs") or -1
        n_jobs = cores + 1 + n_jobs if n_jobs < 0 else n_jobs  # joblib: -1 = all cores
        return max(1, cores // max(1, n_jobs))
    if "submitit" in target:
        return int(launcher.get("cpus_per_task") or 1)
    return None


SMALL_STEP_FLOPS = 2e7  # below this (batch x parameters), one CPU thread is faster than several


def small_model_threads(n_parameters: int, batch_size: int) -> Optional[int]:
    """1 for steps too small to split across threads (thread wake-ups then cost more than the
    arithmetic: measured 4 ms vs 13 us per tiny op on a busy 2-core machine); None otherwise."""
    return 1 if n_parameters * batch_size < SMALL_STEP_FLOPS else None


def run(cfg: Any) -> float:
    """Train one run from a composed config inside Hydra; returns the best val loss (the sweep
    objective). A ConfigError ends the program with its message and exit status 2."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    try:
        job_num = hc.job.num if hc.mode == RunMode.MULTIRUN else None
        return train_from_config(cfg, Path(hc.runtime.output_dir), launcher=hc.launcher, job_num=job_num)
    except ConfigError as err:
        if hc.mode == RunMode.MULTIRUN:  # one job's data did not fit: record it, the sweep goes on
            log.error("mlpkit: error: %s", err)
            print(f"mlpkit: error: {err} (sweep job {hc.job.num}: {hc.job.override_dirname}; the sweep goes on)",
                  file=sys.stderr, flush=True)
            return float("inf")
        GUARD.discard(refused=True)
        exit_with(err)
    except KeyboardInterrupt:
        GUARD.discard()
        raise
    except RunError as err:
        exit_with(err, code=1)


def train_from_config(cfg: Any, run_dir: Path, launcher: Any = None, job_num: Optional[int] = None) -> float:
    """Everything `python train.py` does after Hydra composed `cfg`: validate, build, train into
    `run_dir`, write metrics.json. `job_num` is the job's number in a sweep (-m), None for a
    single run. Raises ConfigError for a bad value or data file."""
    import torch
    from omegaconf import OmegaConf

    from mlpkit.activations import ACTIVATIONS
    from mlpkit.checkpoint import write_json
    from mlpkit.data import load_dataset
    from mlpkit.metrics import SCALARS, format_metrics
    from mlpkit.model import MLP, format_summary, summarize
    from mlpkit.trainer import EarlyStopping, Trainer, resolve_device

    start = time.perf_counter()
    validate(cfg)
    t = cfg.trainer
    threads = t.num_threads or launcher_threads(launcher)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    device = resolve_device(t.device)
    run_dir = Path(run_dir)
    resume_from = None
    if cfg.resume:
        resume_from = run_dir / "checkpoints" / "last.pt"
        if not resume_from.is_file():
            raise ConfigError(f"resume={cfg.resume}: no checkpoints/last.pt there")

    torch.manual_seed(cfg.seed)
    d = cfg.data
    data = load_dataset(d.name, seed=cfg.seed, n_samples=d.n_samples, noise=d.noise, n_features=d.n_features,
                        n_classes=d.n_classes, path=d.path, target=d.target, task=d.task, drop=list(d.drop),
                        categorical=list(d.categorical), val_fraction=d.val_fraction,
                        test_fraction=d.test_fraction, standardize=d.standardize)
    if t.class_weight == "balanced" and data.task == "regression":
        raise ConfigError(f"trainer.class_weight=balanced weights classes, but data={d.name} has a regression "
                          "target; use trainer.class_weight=none")
    perceptron = cfg.model.name == "perceptron"
    if perceptron:
        from mlpkit.perceptron import Perceptron, fit_perceptron

        if data.task == "regression":
            raise ConfigError(f"model=perceptron classifies, but data={d.name} is a regression task; use model=mlp")
        model_kwargs = {"in_dim": data.in_dim, "out_dim": 1 if data.task == "binary" else len(data.classes)}
        model = Perceptron(**model_kwargs)
    else:
        model_kwargs = _model_kwargs(cfg, data)
        model = MLP(**model_kwargs, seed=None)  # drawn from the global RNG, seeded with cfg.seed above
    rows, total = summarize(model, data.in_dim)
    if not threads and device.type == "cpu":
        threads = small_model_threads(total, t.batch_size or len(data.X_train))
    if threads:
        torch.set_num_threads(int(threads))

    warnings: List[str] = list(data.warnings)
    flat_units = not perceptron and not ACTIVATIONS[cfg.activation.name].differentiable and bool(cfg.model.hidden)
    if flat_units:
        warnings.append("activation=step has zero derivative almost everywhere: backpropagation sends no "
                        "gradient through it, so the hidden layers keep their initial weights and only the "
                        "output layer learns. Use a differentiable activation (sigmoid, relu, ...) to train "
                        "hidden layers.")
    for note in data.notes:
        log.info("note: %s", note)
    log.info("data   %s", data.describe())
    if data.columns_table:
        log.info("columns\n%s", data.columns_table)
    if perceptron:
        head = "model  perceptron (step units, perceptron learning rule, no backpropagation)"
    else:
        head = (f"model  {cfg.model.name}, activation={cfg.activation.name}, norm={cfg.norm.name}, "
                f"init={cfg.init.name}, device={device}")
    head += f"; {data.in_dim} model inputs"
    if not job_num:  # a single run, or a sweep's first job: the layer table
        log.info("%s\n%s", head, format_summary(rows, total))
    else:  # the sweep's later jobs: one line
        widths = [model_kwargs["in_dim"], *model_kwargs.get("hidden", []), model_kwargs["out_dim"]]
        log.info("%s; %s, %s parameters", head, " -> ".join(map(str, widths)), f"{total:,}")
    for w in warnings:
        log.warning("warning: %s", w)

    from mlpkit.tblog import TensorBoardLogger, flatten

    es_cfg = cfg.early_stopping
    mode = MONITOR_MODE[es_cfg.monitor] if es_cfg.mode == "auto" else es_cfg.mode
    early = None if es_cfg.name == "none" else EarlyStopping(es_cfg.monitor, mode, es_cfg.patience,
                                                             es_cfg.min_delta, es_cfg.restore_best)
    if early is not None and es_cfg.monitor == "val_accuracy" and data.task == "regression":
        raise ConfigError("early_stopping.monitor=val_accuracy needs a classification data set; use val_loss")

    pruner = None
    if cfg.pruning.name == "median":
        if job_num is None:
            log.warning("warning: pruning=median compares a sweep job with the finished jobs of its sweep; "
                        "a single run has none, so it is not pruned (use -m for a sweep)")
        else:
            from mlpkit.pruning import MedianPruner

            settings = {k: v for k, v in dict(cfg.pruning).items() if k != "name" and v is not None}
            pruner = MedianPruner(run_dir.parent, run_dir=run_dir, **settings)  # the sweep dir holds its jobs

    opt_params = {k: v for k, v in dict(cfg.optimizer).items() if k not in ("name", "lr") and v is not None}
    sched_params = {k: v for k, v in dict(cfg.scheduler).items() if k != "name" and v is not None}
    purge = None
    if resume_from is not None:
        from mlpkit.checkpoint import load_checkpoint
        purge = int(load_checkpoint(resume_from)["global_step"]) + 1
    logger = TensorBoardLogger(run_dir, purge_step=purge)
    trainer = Trainer(
        optimizer=cfg.optimizer.name, lr=cfg.optimizer.lr, optimizer_params=opt_params,
        scheduler=cfg.scheduler.name, scheduler_params=sched_params, max_epochs=t.max_epochs,
        batch_size=t.batch_size, l1=cfg.regularization.l1, l2=cfg.regularization.l2,
        input_noise=cfg.regularization.input_noise, clip_grad_norm=t.clip_grad_norm,
        clip_grad_value=t.clip_grad_value, early_stopping=early, device=str(device), seed=cfg.seed,
        class_weight=t.class_weight,
        log_every_n_steps=t.log_every_n_steps, histogram_every_n_epochs=t.histogram_every_n_epochs,
        boundary_every_n_epochs=t.boundary_every_n_epochs, run_dir=run_dir, logger=logger,
        progress=bool(t.progress) and sys.stderr.isatty(), log=log.info, manual_backprop=t.manual_backprop,
        handle_signals=signal.getsignal(signal.SIGINT) is not on_signal, pruner=pruner)
    trainer.extra_state = {"model_kwargs": model_kwargs, "task": data.task, "classes": data.classes}
    save_run_data(run_dir, data, cfg.model.name, model_kwargs)
    TRAINER[:] = [trainer]
    GUARD.began = True  # from here on a signal is recorded as `interrupted` and the directory is the run's
    if perceptron:
        result = fit_perceptron(model, data, max_epochs=t.max_epochs, lr=cfg.model.lr or 1.0, seed=cfg.seed,
                                logger=logger, run_dir=run_dir)
    else:
        result = trainer.fit(model, data, resume_from=resume_from)
    result.warnings = warnings
    if flat_units and result.history.get("grad_norm"):
        zero = all(v == 0 for norms in result.history["grad_norm"] for v in norms[:-1])
        result.warnings.append("measured: the hidden layers' weight-gradient norm was "
                               + ("exactly 0 in every sampled step" if zero else "not always 0"))
        log.warning("warning: %s", result.warnings[-1])
    if trainer.stop_signal is not None and result.status != "interrupted":  # during the final save or test
        result.status = "interrupted"
        result.message = (f"interrupted by {signal.Signals(trainer.stop_signal).name} after epoch "
                          f"{result.epochs_run}; continue with resume=<run_dir>")

    hparams = flatten(OmegaConf.to_container(cfg, resolve=True))
    hparams = {k: v for k, v in hparams.items() if k != "resume" and v is not None}
    hparams["status"] = result.status
    metrics = {"best_val_loss": result.best_val_loss, "best_val_accuracy": result.best_val_accuracy,
               "final_val_loss": result.history["val_loss"][-1] if result.history["val_loss"] else None,
               "epochs_run": result.epochs_run}
    metrics.update({f"test_{k}": v for k, v in result.test.items() if k in SCALARS and v is not None})
    logger.hparams(hparams, {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)},
                   result.epochs_run, success=result.status in ("completed", "early_stopped", "pruned"))
    if result.test.get("confusion_matrix") is not None:
        from mlpkit.diagnostics import confusion_matrix_figure

        logger.figure("images/confusion_matrix", confusion_matrix_figure(
            result.test["confusion_matrix"], data.classes, title=f"{data.name}, test split"), result.epochs_run)
    logger.close()

    out = result.as_dict()
    out.update(seconds=time.perf_counter() - start, train_seconds=result.seconds,
               seconds_per_epoch=(result.seconds / result.epochs_run) if result.epochs_run else None,
               device=str(device), task=data.task, n_parameters=total, run_dir=str(run_dir),
               threads=torch.get_num_threads(), first_step_unix_time=trainer.first_step_time,
               kept=_kept_checkpoint(result, early, perceptron), classes=data.classes or None,
               slurm_job_id=os.environ.get("SLURM_JOB_ID"))  # which SLURM job ran it (None outside SLURM)
    try:
        write_json(run_dir / "metrics.json", out)
    except OSError as err:
        raise RunError(f"could not write {run_dir / 'metrics.json'}: {err.strerror or err}") from None

    if result.message:
        (log.warning if result.status in ("diverged", "interrupted") else log.info)("%s", result.message)
    test = format_metrics(result.test) or "not evaluated"
    log.info("%s: %d epochs in %.1f s; best epoch %d (val loss %.4f); test: %s\nrun directory: %s",
             result.status, result.epochs_run, out["seconds"], result.best_epoch, result.best_val_loss, test,
             run_dir)
    if result.status == "interrupted" or trainer.stop_signal is not None:
        raise SystemExit(130)
    if result.status == "diverged":
        return float("inf")  # the worst objective: a bad trial for Optuna, and the sweep goes on
    return float(result.best_val_loss)
