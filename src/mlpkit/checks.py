"""The checks of a value that the command line (mlpkit.app.config.validate) and the Python API (Trainer, MLP,
load_dataset) share, so both refuse it with the same one line. Hydra-free and torch-free."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from mlpkit.errors import ConfigError
from mlpkit.registry import check_choice, not_known


def check_number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, optional: bool = True) -> None:
    """A finite number within [low, high] (open where asked); None passes when `optional`."""
    if value is None:
        if optional:
            return
        raise ConfigError(f"{key} must be set")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number")
    lo = "(" if low_open or low is None else "["
    hi = ")" if high_open or high is None else "]"  # numbers are finite: inf is never allowed
    span = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{key}={value} is out of range; allowed: {span}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{key}={value} is out of range; allowed: {span}")


MAX_CLASSES = 1000
POSITIVE = dict(low=0, low_open=True)  # rates, standard deviations
FRACTION = dict(low=0, high=1, high_open=True)  # [0, 1)
REQUIRED = dict(optional=False)
# The range of each number a user sets, checked in this order within its group (null = left unset).
RANGES: Dict[str, Dict[str, dict]] = {
    "data": {"n_samples": dict(low=1), "noise": dict(low=0), "n_features": dict(low=1),
             "n_classes": dict(low=2, high=MAX_CLASSES),
             "val_fraction": dict(low=0, high=1, low_open=True, high_open=True, **REQUIRED),
             "test_fraction": dict(low=0, high=1, low_open=True, high_open=True, **REQUIRED),
             "onehot_max": dict(low=0)},
    "activation": {"negative_slope": dict(low=0, high=1), "alpha": POSITIVE, "beta": POSITIVE,
                   "init": dict(low=0, high=1)},
    "init": {"std": POSITIVE, "gain": POSITIVE},
    "optimizer": {"lr": dict(**POSITIVE, **REQUIRED), "momentum": FRACTION, "dampening": dict(low=0, high=1),
                  "weight_decay": dict(low=0, high=1), "eps": dict(low=0, high=1, low_open=True), "rho": FRACTION,
                  "alpha": FRACTION, "lr_decay": dict(low=0), "initial_accumulator_value": dict(low=0)},
    "scheduler": {"step_size": dict(low=1), "gamma": dict(low=0, high=1, low_open=True),
                  "factor": dict(low=0, high=1, low_open=True, high_open=True), "patience": dict(low=0),
                  "t_max": dict(low=1), "eta_min": dict(low=0), "min_lr": dict(low=0), "warmup_epochs": dict(low=0)},
    "embedding": {"dim": dict(low=1, high=1024), "frequencies": dict(low=1, high=1024), "sigma": POSITIVE,
                  "bins": dict(low=2, high=1024)},
    "early_stopping": {"patience": dict(low=0, **REQUIRED)},  # min_delta: its range depends on the monitor
    "pruning": {"warmup_epochs": dict(low=0), "min_completed": dict(low=1)},
    "regularization": {"l1": dict(low=0, **REQUIRED), "l2": dict(low=0, **REQUIRED),
                       "dropout": dict(**FRACTION, **REQUIRED), "input_noise": dict(low=0, **REQUIRED),
                       "label_smoothing": dict(**FRACTION, **REQUIRED)},
    "trainer": {"max_epochs": dict(low=1, **REQUIRED), "max_steps": dict(low=1), "batch_size": dict(low=0, **REQUIRED),
                "clip_grad_norm": POSITIVE, "clip_grad_value": POSITIVE, "log_every_n_steps": dict(low=1, **REQUIRED),
                "histogram_every_n_epochs": dict(low=0), "boundary_every_n_epochs": dict(low=0),
                "num_threads": dict(low=1, high=os.cpu_count() or 1), "refit_models": dict(low=1, high=64, **REQUIRED)},
}
CLASS_WEIGHTS = ("none", "balanced")


def check_range(group: str, key: str, value: Any) -> None:
    """`group.key=value` within its range in RANGES."""
    check_number(f"{group}.{key}", value, **RANGES[group][key])


def check_widths(hidden: Sequence[Any]) -> None:
    """Hidden layer widths: integers > 0."""
    for i, width in enumerate(hidden):
        if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width <= 0:
            raise ConfigError(f"model.hidden[{i}]={width!r}: layer widths must be integers > 0")


def check_class_weight(class_weight: Optional[str]) -> None:
    """none or balanced (None: none)."""
    if class_weight is not None:
        check_choice("trainer.class_weight", class_weight, CLASS_WEIGHTS)


def check_device_name(device: str) -> None:
    """Accept auto, cpu, cuda and cuda:N."""
    ok = device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    if not ok:
        raise ConfigError(not_known("trainer.device", device, ("auto", "cpu", "cuda", "cuda:N")))


def check_needs_classes(task: Any, data_name: str, *, class_weight: Optional[str] = "none", model: Optional[str] = None,
                        families: Optional[Mapping[str, Any]] = None, monitor: str = "val_loss",
                        label_smoothing: float = 0.0, clamp_output: bool = False) -> None:
    """What needs classes (balanced class weights, a family that only classifies, an accuracy monitor, label
    smoothing) refused for a regression `task` (a mlpkit.tasks.Task; None: not known yet), and what needs a
    regression target (clamping the outputs) refused for a classification one."""
    if task is not None and task.classification and clamp_output:
        raise ConfigError(f"model.clamp_output=true clips regression predictions, but data={data_name} is a "
                          f"{task} classification task; leave model.clamp_output=false")
    if task is None or task.classification:
        return
    if label_smoothing:
        raise ConfigError(f"regularization.label_smoothing={label_smoothing} smooths class labels, but "
                          f"data={data_name} has a regression target; leave it at 0")
    if class_weight == "balanced":
        raise ConfigError(f"trainer.class_weight=balanced weights classes, but data={data_name} has a regression "
                          "target; use trainer.class_weight=none")
    if model is not None and families is not None and families[model].classifies_only:
        regression = [n for n in families if not families[n].classifies_only]
        raise ConfigError(f"model={model} classifies, but data={data_name} is a regression task; "
                          f"use model={'/'.join(regression)}")
    if monitor == "val_accuracy":  # also under early_stopping=none: it picks the best epoch
        raise ConfigError(f"early_stopping.monitor=val_accuracy needs a classification data set, but "
                          f"data={data_name} is regression; use val_loss")
