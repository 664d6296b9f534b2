"""From a validated config to the objects of a run: data, model, best epoch / early stopping, pruner,
trainer, and the record a finished run leaves (metrics.json, HParams, the last log line).
`mlpkit.app.cli.train_from_config` assembles these; each takes the composed config (or a node of it) and
returns what it built. What differs between model families is their entry's (mlpkit.models.families)."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from mlpkit.app.config import MONITOR_MODE, check_task
from mlpkit.errors import RunError
from mlpkit.status import RunStatus

log = logging.getLogger("mlpkit")

STEP_WARNING = ("activation=step has zero derivative almost everywhere: backpropagation sends no gradient "
                "through it, so the hidden layers keep their initial weights and only the output layer learns. "
                "Use a differentiable activation (sigmoid, relu, ...) to train hidden layers.")


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


def build_device(t: Any) -> Any:
    """The torch device of `trainer.device`, with torch's deterministic algorithms when asked for."""
    import torch

    from mlpkit.training.trainer import resolve_device

    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return resolve_device(t.device)


def build_data(cfg: Any) -> Any:
    """The data set of `cfg.data`, split and preprocessed; ConfigError for what only the data show
    (a regression target for a classifier, class weights or an accuracy monitor)."""
    import torch

    from mlpkit.data import load_dataset

    torch.manual_seed(cfg.seed)
    d = cfg.data
    if stream_table(cfg):
        from mlpkit.data.stream import load_stream

        data = load_stream(d.path, d.target, d.task, list(d.drop), list(d.categorical), cfg.seed, d.val_fraction,
                           d.test_fraction, d.standardize, d.numeric, d.onehot_max)
    else:
        data = load_dataset(d.name, seed=cfg.seed, n_samples=d.n_samples, noise=d.noise, n_features=d.n_features,
                            n_classes=d.n_classes, path=d.path, target=d.target, task=d.task, drop=list(d.drop),
                            categorical=list(d.categorical), val_fraction=d.val_fraction,
                            test_fraction=d.test_fraction, standardize=d.standardize, numeric=d.numeric,
                            onehot_max=d.onehot_max)
        if d.name == "csv":
            log.info("data   read into memory (data.stream=false)")
    check_task(cfg, data.task)
    return data


def stream_table(cfg: Any) -> bool:
    """Whether the run reads its table block by block: data.stream=true, or a file too large for memory
    (an estimate) in a run that streaming can train (mlpkit.data.stream.check_stream)."""
    d = cfg.data
    if d.get("stream"):
        return True
    if d.name != "csv" or not d.get("path"):
        return False
    from mlpkit.app.config import available_memory
    from mlpkit.data.stream import check_stream, too_large_for_memory
    from mlpkit.errors import ConfigError

    why = too_large_for_memory(str(d.path), available_memory("cpu"))
    if why is None:
        return False
    try:
        check_stream(cfg)
    except ConfigError as err:
        log.warning("warning: %s, but it cannot be streamed: %s", why, err)
        return False
    log.info("data   streamed (data.stream chosen automatically: %s)", why)
    return True


def family(cfg: Any) -> Any:
    """The model family of `cfg.model.name` (its Family entry)."""
    from mlpkit.models.families import FAMILIES

    return FAMILIES[cfg.model.name]


def model_kwargs(cfg: Any, data: Any) -> dict:
    """The keyword arguments of `MODELS[cfg.model.name]` (saved in model.json for predict.py)."""
    return family(cfg).model_kwargs(cfg, data)


def set_threads(t: Any, launcher: Any, device: Any, n_parameters: int, n_train: int) -> None:
    """torch's CPU threads: trainer.num_threads, else the launcher's share, else 1 for tiny steps."""
    import torch

    threads = t.num_threads or launcher_threads(launcher)
    if not threads and device.type == "cpu":
        threads = small_model_threads(n_parameters, t.batch_size or n_train)
    if threads:
        torch.set_num_threads(int(threads))


def flat_units(cfg: Any) -> bool:
    """Hidden layers behind an activation without a derivative (step): backprop cannot train them."""
    from mlpkit.models.activations import ACTIVATIONS

    return bool(cfg.model.hidden) and not ACTIVATIONS[cfg.activation.name].differentiable


def describe(cfg: Any, data: Any, kwargs: dict, rows: list, total: int, device: Any, job_num: Optional[int],
             warnings: List[str]) -> None:
    """The run's opening log lines: notes, data, columns, the model (a table, or one line in later sweep
    jobs), warnings."""
    from mlpkit.models.mlp import format_summary

    for note in data.notes:
        log.info("note: %s", note)
    log.info("data   %s", data.describe())
    if data.columns_table:
        log.info("columns\n%s", data.columns_table)
    head = f"model  {family(cfg).head(cfg, device)}; {data.in_dim} model inputs"
    if not job_num:  # a single run, or a sweep's first job: the layer table
        log.info("%s\n%s", head, format_summary(rows, total))
    else:  # the sweep's later jobs: one line
        widths = [kwargs["in_dim"], *kwargs.get("hidden", []), kwargs["out_dim"]]
        log.info("%s; %s, %s parameters", head, " -> ".join(map(str, widths)), f"{total:,}")
    for w in warnings:
        log.warning("warning: %s", w)


def build_best_epoch(cfg: Any) -> Any:
    """The run's BestEpoch from `cfg.early_stopping`: an EarlyStopping, or for early_stopping=none (and
    a model family that does not stop early) a BestEpoch whose monitor and mode still pick the best epoch."""
    from mlpkit.training.callbacks import BestEpoch, EarlyStopping

    e = cfg.early_stopping
    mode = MONITOR_MODE[e.monitor] if e.mode == "auto" else e.mode
    if e.name == "none" or not family(cfg).stops_early:
        return BestEpoch(e.monitor, mode, e.min_delta)
    return EarlyStopping(e.monitor, mode, e.patience, e.min_delta, e.restore_best)


def build_pruner(p: Any, run_dir: Path, job_num: Optional[int]) -> Any:
    """The MedianPruner of a sweep job under pruning=median, else None (a single run has no siblings)."""
    if p.name != "median":
        return None
    if job_num is None:
        log.warning("warning: pruning=median compares a sweep job with the finished jobs of its sweep; "
                    "a single run has none, so it is not pruned (use -m for a sweep)")
        return None
    from mlpkit.training.pruning import MedianPruner

    settings = {k: v for k, v in dict(p).items() if k != "name" and v is not None}
    return MedianPruner(run_dir.parent, run_dir=run_dir, **settings)  # the sweep dir holds its jobs


def build_strategy(cfg: Any) -> Any:
    """The Strategy of `trainer.strategy` (ddp: this process's place in its torchrun or SLURM job)."""
    from mlpkit.training.strategy import STRATEGIES

    return STRATEGIES[cfg.trainer.strategy]()


def build_trainer(cfg: Any, device: Any, run_dir: Path, logger: Any, best: Any, pruner: Any,
                  handle_signals: bool, strategy: Any = None, task: Any = None) -> Any:
    """The Trainer of `cfg.optimizer`, `cfg.scheduler`, `cfg.regularization` and `cfg.trainer`, with the
    model family's step rule, and the callbacks of `cfg.trainer` and `best` as the family has them.
    `task`: the data's; label smoothing applies to classification only (a preset's is left out otherwise)."""
    from mlpkit.training.callbacks import Progress, Pruning, adjust
    from mlpkit.training.tblog import TensorBoard
    from mlpkit.training.trainer import Trainer

    t, r, fam = cfg.trainer, cfg.regularization, family(cfg)
    opt_params = {k: v for k, v in dict(cfg.optimizer).items() if k not in ("name", "lr") and v is not None}
    sched_params = {k: v for k, v in dict(cfg.scheduler).items() if k != "name" and v is not None}
    callbacks = [best, Progress(bar=bool(t.progress) and sys.stderr.isatty()), Pruning(pruner),
                 TensorBoard(histogram_every=t.histogram_every_n_epochs, boundary_every=t.boundary_every_n_epochs)]
    trainer = Trainer(
        optimizer=cfg.optimizer.name, lr=cfg.optimizer.lr, optimizer_params=opt_params,
        scheduler=cfg.scheduler.name, scheduler_params=sched_params, max_epochs=t.max_epochs,
        max_steps=t.max_steps,
        batch_size=t.batch_size, l1=r.l1, l2=r.l2, input_noise=r.input_noise,
        label_smoothing=r.label_smoothing if task is None or task.classification else 0.0,
        clip_grad_norm=t.clip_grad_norm,
        clip_grad_value=t.clip_grad_value, device=str(device), seed=cfg.seed, class_weight=t.class_weight,
        log_every_n_steps=t.log_every_n_steps, manual_backprop=t.manual_backprop,
        step_rule=fam.step_rule(cfg) if fam.step_rule is not None else None, callbacks=callbacks,
        strategy=strategy, run_dir=run_dir, logger=logger, log=log.info, handle_signals=handle_signals)
    trainer.callbacks = adjust(trainer.callbacks, fam.callbacks)
    return trainer


def save_run_data(run_dir: Path, data: Any, model_name: str, model_kwargs: dict) -> None:
    """What predict.py needs besides the weights: the fitted preprocessing, the model's shape,
    and which source rows went to which split (splits.npz, 0-based data rows of the source)."""
    from mlpkit.files import atomic_write, write_json

    data.preprocessing.save(run_dir)
    write_json(run_dir / "model.json", {"format": "mlpkit-model-1", "model": model_name, "kwargs": model_kwargs})
    atomic_write(run_dir / "splits.npz", data.write_rows)


def note_flat_units(result: Any) -> None:
    """After a run behind step units: whether the hidden layers' gradient was really 0 (a warning)."""
    if result.history.get("grad_norm"):
        zero = all(v == 0 for norms in result.history["grad_norm"] for v in norms[:-1])
        result.warnings.append("measured: the hidden layers' weight-gradient norm was "
                               + ("exactly 0 in every sampled step" if zero else "not always 0"))
        log.warning("warning: %s", result.warnings[-1])


@dataclass
class Record:
    """What a finished run reports, gathered while it was built and trained."""

    cfg: Any
    data: Any
    device: Any
    run_dir: Path
    n_parameters: int
    start: float  # time.perf_counter() when the run began
    first_step_time: Optional[float] = None


def record_run(rec: Record, result: Any, logger: Any) -> dict:
    """HParams and the confusion matrix into TensorBoard, metrics.json, the run's last log lines;
    returns what metrics.json holds."""
    import torch
    from omegaconf import OmegaConf

    from mlpkit.files import write_json
    from mlpkit.metrics import SCALARS, format_metrics
    from mlpkit.training.tblog import flatten

    hparams = flatten(OmegaConf.to_container(rec.cfg, resolve=True))
    hparams = {k: v for k, v in hparams.items() if k != "resume" and v is not None}
    hparams["status"] = str(result.status)  # the plain string
    metrics = {"best_val_loss": result.best_val_loss, "best_val_accuracy": result.best_val_accuracy,
               "final_val_loss": result.history["val_loss"][-1] if result.history["val_loss"] else None,
               "epochs_run": result.epochs_run}
    metrics.update({f"test_{k}": v for k, v in result.test.items() if k in SCALARS and v is not None})
    logger.hparams(hparams, {k: v for k, v in metrics.items() if v is not None and math.isfinite(v)},
                   result.epochs_run, success=RunStatus(result.status).success)
    if result.test.get("confusion_matrix") is not None:
        from mlpkit.training.diagnostics import confusion_matrix_image

        logger.writer.add_image("images/confusion_matrix", confusion_matrix_image(
            result.test["confusion_matrix"], rec.data.classes, title=f"{rec.data.name}, test split"),
            result.epochs_run, dataformats="HWC")
    logger.close()
    if getattr(logger, "error", None) and logger.error not in (result.message or ""):
        result.warnings.append(f"{logger.error}: the TensorBoard curves of this run are incomplete")
        log.warning("warning: %s", result.warnings[-1])

    out = result.as_dict()
    out.update(seconds=time.perf_counter() - rec.start, train_seconds=result.seconds,
               seconds_per_epoch=(result.seconds / result.epochs_run) if result.epochs_run else None,
               device=str(rec.device), task=rec.data.task, n_parameters=rec.n_parameters, run_dir=str(rec.run_dir),
               threads=torch.get_num_threads(), first_step_unix_time=rec.first_step_time,
               classes=rec.data.classes or None,
               slurm_job_id=os.environ.get("SLURM_JOB_ID"))  # which SLURM job ran it (None outside SLURM)
    try:
        write_json(rec.run_dir / "metrics.json", out)
    except OSError as err:
        raise RunError(f"could not write {rec.run_dir / 'metrics.json'}: {err.strerror or err}") from None

    if result.message:
        (log.warning if RunStatus(result.status).aborted else log.info)("%s", result.message)
    test = format_metrics(result.test) or "not evaluated"
    log.info("%s: %d epochs in %.1f s; best epoch %d (val loss %.4f); test: %s\nrun directory: %s",
             result.status, result.epochs_run, out["seconds"], result.best_epoch, result.best_val_loss, test,
             rec.run_dir)
    return out
