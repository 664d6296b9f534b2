"""The config schema: every key a user can set, its type, and the checks on its value.

Hydra composes `configs/train.yaml` on top of `TrainConfig` (registered below as
`mlpkit_schema`), so a value of the wrong type (`optimizer.lr=abc`) or an unknown
key fails while the config is composed, before any job of a sweep starts.
`validate()` adds the checks a type cannot express (ranges, names in the
registries) and runs both at the start of every job and, through
`ValidateSweep`, once for every job of a grid sweep before the first one runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.experimental.callback import Callback

from mlpkit.errors import ConfigError, exit_with


@dataclass
class DataConfig:
    name: str = "digits"
    n_samples: Optional[int] = None  # generated sets; null = the set's own default
    noise: Optional[float] = None  # generated sets; std of the noise
    n_features: Optional[int] = None  # classification, regression, blobs
    n_classes: Optional[int] = None  # classification, blobs, spiral
    path: Optional[str] = None  # csv: a .csv, .tsv or .parquet file
    target: Optional[str] = None  # csv: name of the target column (default: the last)
    drop: List[str] = field(default_factory=list)  # csv: columns to leave out
    categorical: List[str] = field(default_factory=list)  # csv: numeric-coded columns to treat as categories
    task: str = "auto"  # auto | binary | multiclass | regression
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    standardize: bool = True  # features (and regression targets) with train-split statistics


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | perceptron
    hidden: List[int] = field(default_factory=lambda: [256, 128])  # [] = no hidden layer
    lr: Optional[float] = None  # perceptron: step size of the learning rule (mlp: use optimizer.lr)


@dataclass
class ActivationConfig:
    # Parameters are null unless the chosen function takes them.
    name: str = "relu"
    negative_slope: Optional[float] = None  # leaky_relu
    alpha: Optional[float] = None  # elu
    beta: Optional[float] = None  # softplus
    init: Optional[float] = None  # prelu: initial slope
    pieces: Optional[int] = None  # maxout: linear pieces per unit


@dataclass
class InitConfig:
    name: str = "default"
    std: Optional[float] = None  # normal
    gain: Optional[float] = None  # xavier_*, orthogonal


@dataclass
class NormConfig:
    name: str = "none"  # none | batch | layer


@dataclass
class OptimizerConfig:
    # Null keys are left to torch's defaults; set keys must belong to the optimiser.
    name: str = "adam"
    lr: float = 1e-3
    momentum: Optional[float] = None
    dampening: Optional[float] = None
    betas: Optional[List[float]] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    alpha: Optional[float] = None  # rmsprop smoothing
    rho: Optional[float] = None  # adadelta
    centered: Optional[bool] = None  # rmsprop
    amsgrad: Optional[bool] = None  # adam, adamw
    lr_decay: Optional[float] = None  # adagrad
    initial_accumulator_value: Optional[float] = None  # adagrad


@dataclass
class SchedulerConfig:
    name: str = "none"  # none | step | cosine | plateau
    step_size: Optional[int] = None  # step: epochs between decays
    gamma: Optional[float] = None  # step: decay factor
    t_max: Optional[int] = None  # cosine: period in epochs (null = trainer.max_epochs)
    eta_min: Optional[float] = None  # cosine: final lr
    factor: Optional[float] = None  # plateau: decay factor
    patience: Optional[int] = None  # plateau: epochs without improvement of val loss
    min_lr: Optional[float] = None  # plateau


@dataclass
class EarlyStoppingConfig:
    name: str = "val_loss"  # val_loss | none
    monitor: str = "val_loss"  # val_loss | val_accuracy | train_loss
    mode: str = "min"  # min | max
    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass
class PruningConfig:
    # Stops hopeless jobs of a sweep (-m); null keys: pruning=none takes no settings.
    name: str = "none"  # none | median
    warmup_epochs: Optional[int] = None  # median: epochs a job is never stopped in
    min_completed: Optional[int] = None  # median: finished jobs of the sweep needed before it acts


@dataclass
class RegularizationConfig:
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    input_noise: float = 0.0


@dataclass
class TrainerConfig:
    max_epochs: int = 60
    batch_size: int = 64  # 0 = full batch, 1 = stochastic
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    clip_grad_norm: Optional[float] = None
    clip_grad_value: Optional[float] = None
    log_every_n_steps: int = 50
    histogram_every_n_epochs: Optional[int] = None  # null = about 10 times per run; 0 = never
    boundary_every_n_epochs: Optional[int] = None  # 2-D inputs; null = about 10 times; 0 = only at the end
    deterministic: bool = False
    num_threads: Optional[int] = None  # torch CPU threads; null = torch's default
    progress: bool = True  # progress bar on a terminal
    manual_backprop: bool = True  # chain-rule backward for plain MLPs (relu/tanh/sigmoid/identity); else autograd
    class_weight: str = "none"  # none | balanced: weight the loss by inverse class frequency of the train split


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    init: InitConfig = field(default_factory=InitConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    resume: Optional[str] = None  # a run directory to continue in place


def register_schema() -> None:
    """Store `TrainConfig` in Hydra's ConfigStore as `mlpkit_schema`."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="mlpkit_schema", node=TrainConfig)


# ---------------------------------------------------------------------------
# Checks a type cannot express


def _choice(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not known; choose one of: {', '.join(sorted(allowed))}")


def _number(key: str, value: Any, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, optional: bool = True) -> None:
    if value is None:
        if optional:
            return
        raise ConfigError(f"{key} must be set")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigError(f"{key}={value!r} must be a number")
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    span = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if low is not None and (value < low or (low_open and value == low)):
        raise ConfigError(f"{key}={value} is out of range; allowed: {span}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ConfigError(f"{key}={value} is out of range; allowed: {span}")


def validate(cfg: Any) -> None:
    """Raise ConfigError naming the first bad value of a composed config."""
    from mlpkit.activations import ACTIVATIONS
    from mlpkit.data import DATASETS
    from mlpkit.initializers import INITIALIZERS
    from mlpkit.model import MODELS, NORMS
    from mlpkit.optim import OPTIMIZERS, SCHEDULERS
    from mlpkit.pruning import PRUNERS, check_pruning_params

    d = cfg.data
    _choice("data", d.name, DATASETS)
    _choice("data.task", d.task, ("auto", "binary", "multiclass", "regression"))
    _number("data.n_samples", d.n_samples, low=1)
    _number("data.noise", d.noise, low=0)
    _number("data.n_features", d.n_features, low=1)
    _number("data.n_classes", d.n_classes, low=2)
    _number("data.val_fraction", d.val_fraction, low=0, high=1, low_open=True, high_open=True, optional=False)
    _number("data.test_fraction", d.test_fraction, low=0, high=1, low_open=True, high_open=True, optional=False)
    if d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {d.val_fraction + d.test_fraction:g} "
            "leaves nothing to train on; their sum must be < 1")
    if d.name == "csv":
        from mlpkit.data.table import check_file

        if not d.path:
            raise ConfigError("data=csv needs data.path=<file> (a .csv, .tsv or .parquet table) and "
                              "data.target=<column> (default: the last column)")
        check_file(d.path)
    else:
        for key in ("drop", "categorical"):
            if list(getattr(d, key, None) or []):
                raise ConfigError(f"data.{key} is a setting of data=csv (columns of your own table); "
                                  f"data={d.name} has no columns to name")

    _choice("model", cfg.model.name, MODELS)
    if cfg.model.name == "perceptron":
        if list(cfg.model.hidden):
            raise ConfigError(f"model.hidden={list(cfg.model.hidden)}: model=perceptron is a single layer of step "
                              "units and has no hidden layers; use model=mlp for hidden layers")
        _number("model.lr", cfg.model.lr, low=0, low_open=True)
        if cfg.resume:
            raise ConfigError("resume is not supported for model=perceptron (its runs are short: start again)")
    elif cfg.model.lr is not None:
        raise ConfigError("model.lr is a setting of model=perceptron; for model=mlp set optimizer.lr")
    for i, width in enumerate(cfg.model.hidden):
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise ConfigError(f"model.hidden[{i}]={width!r}: layer widths must be integers > 0")

    a = cfg.activation
    _choice("activation", a.name, ACTIVATIONS)
    ACTIVATIONS[a.name].check_params(_set_params(a))
    _choice("init", cfg.init.name, INITIALIZERS)
    _number("init.std", cfg.init.std, low=0, low_open=True)
    _number("init.gain", cfg.init.gain, low=0, low_open=True)
    _choice("norm", cfg.norm.name, NORMS)

    o = cfg.optimizer
    _choice("optimizer", o.name, OPTIMIZERS)
    _number("optimizer.lr", o.lr, low=0, low_open=True, optional=False)
    _number("optimizer.momentum", o.momentum, low=0)
    _number("optimizer.weight_decay", o.weight_decay, low=0)
    _number("optimizer.eps", o.eps, low=0, low_open=True)
    _number("optimizer.rho", o.rho, low=0, high=1)
    _number("optimizer.alpha", o.alpha, low=0, high=1)
    if o.betas is not None:
        if len(o.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optimizer.betas={list(o.betas)} must be two numbers in [0, 1), e.g. [0.9,0.999]")
    OPTIMIZERS[o.name].check_params(_set_params(o, skip=("name", "lr")))

    s = cfg.scheduler
    _choice("scheduler", s.name, SCHEDULERS)
    SCHEDULERS[s.name].check_params(_set_params(s))
    _number("scheduler.step_size", s.step_size, low=1)
    _number("scheduler.gamma", s.gamma, low=0, low_open=True)
    _number("scheduler.factor", s.factor, low=0, high=1, low_open=True, high_open=True)
    _number("scheduler.patience", s.patience, low=0)
    _number("scheduler.t_max", s.t_max, low=1)

    e = cfg.early_stopping
    _choice("early_stopping", e.name, ("val_loss", "none"))
    _choice("early_stopping.monitor", e.monitor, ("val_loss", "val_accuracy", "train_loss"))
    _choice("early_stopping.mode", e.mode, ("min", "max"))
    _number("early_stopping.patience", e.patience, low=0)
    _number("early_stopping.min_delta", e.min_delta, low=0)

    p = cfg.pruning
    _choice("pruning", p.name, PRUNERS)
    check_pruning_params(p.name, _set_params(p))
    _number("pruning.warmup_epochs", p.warmup_epochs, low=0)
    _number("pruning.min_completed", p.min_completed, low=1)

    r = cfg.regularization
    _number("regularization.l1", r.l1, low=0, optional=False)
    _number("regularization.l2", r.l2, low=0, optional=False)
    _number("regularization.dropout", r.dropout, low=0, high=1, high_open=True, optional=False)
    _number("regularization.input_noise", r.input_noise, low=0, optional=False)

    t = cfg.trainer
    _number("trainer.max_epochs", t.max_epochs, low=0, optional=False)
    _number("trainer.batch_size", t.batch_size, low=0, optional=False)
    _number("trainer.clip_grad_norm", t.clip_grad_norm, low=0, low_open=True)
    _number("trainer.clip_grad_value", t.clip_grad_value, low=0, low_open=True)
    _number("trainer.log_every_n_steps", t.log_every_n_steps, low=1, optional=False)
    _number("trainer.histogram_every_n_epochs", t.histogram_every_n_epochs, low=0)
    _number("trainer.boundary_every_n_epochs", t.boundary_every_n_epochs, low=0)
    _number("trainer.num_threads", t.num_threads, low=1)
    _choice("trainer.class_weight", t.class_weight, ("none", "balanced"))
    check_device_name(t.device)
    _number("seed", cfg.seed, low=0, high=2**32 - 1, optional=False)


def check_device_name(device: str) -> None:
    """Accept auto, cpu, cuda and cuda:N."""
    ok = device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    if not ok:
        raise ConfigError(f"trainer.device={device!r} is not known; choose one of: auto, cpu, cuda, cuda:N")


def _set_params(node: Any, skip: tuple = ("name",)) -> dict:
    """The non-null keys of a group node, less `skip`: the settings a user gave it."""
    from omegaconf import DictConfig, OmegaConf

    items = OmegaConf.to_container(node) if isinstance(node, DictConfig) else vars(node)
    return {k: v for k, v in items.items() if v is not None and k not in skip}


class ValidateSweep(Callback):
    """Hydra callback: compose and validate every job of a grid sweep before the first runs."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf, open_dict

        loader = GlobalHydra.instance().config_loader()
        overrides = list(config.hydra.overrides.task)
        try:
            parsed = OverridesParser.create().parse_overrides(overrides)
            batches = BasicSweeper.split_arguments(parsed, None)
        except Exception:  # interval()/range sweeps of other sweepers: check the base config only
            batches = [[[o for o in overrides if "," not in o and "(" not in o]]]
        for job in batches[0] if batches else []:
            job_cfg = loader.load_sweep_config(master_config=config, sweep_overrides=list(job))
            with open_dict(job_cfg):
                del job_cfg["hydra"]
            try:
                validate(job_cfg)
                from mlpkit.trainer import resolve_device

                resolve_device(job_cfg.trainer.device)  # e.g. cuda on a machine without one
            except ConfigError as err:
                exit_with(ConfigError(f"{err} (in sweep job: {' '.join(job) or 'defaults'})"))
