"""The config schema: every key a user can set, its type and its default, as dataclasses, and each
option's own defaults (OPTION_DEFAULTS).

Hydra composes `configs/train.yaml` on top of `TrainConfig` (mlpkit.app.config registers it and checks
what a type cannot say). This module imports no Hydra: the Python API (mlpkit.training.trainer.Trainer) takes
its defaults from here, so a default is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


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
    numeric: str = "standard"  # csv: how numeric columns are scaled: standard | robust | quantile
    onehot_max: Optional[int] = None  # csv: a category with more one-hot inputs is one code input; null = all one-hot
    stream: bool = False  # csv: read the file block by block, never whole (mlpkit.data.stream)


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | perceptron | tabm
    hidden: List[int] = field(default_factory=lambda: [256, 128])  # [] = no hidden layer
    lr: Optional[float] = None  # perceptron: step size of the learning rule (mlp: use optimizer.lr)
    category_dim: Optional[int] = None  # mlp, tabm: width of each embedded category's vectors (null = 16)
    clamp_output: Optional[bool] = None  # mlp, tabm: regression predictions clipped to the train targets' range
    # (null = false)
    k: Optional[int] = None  # tabm: ensemble members (BatchEnsemble)


BINNINGS = ("quantile", "tree")  # embedding.binning of piecewise_linear


@dataclass
class EmbeddingConfig:
    # Numeric feature embeddings (mlp, tabm); null keys: the option does not take them.
    name: str = "none"  # none | periodic | piecewise_linear
    dim: Optional[int] = None  # periodic, piecewise_linear: embedding width per feature
    frequencies: Optional[int] = None  # periodic: frequencies per feature
    sigma: Optional[float] = None  # periodic: std of the initial frequencies
    lite: Optional[bool] = None  # periodic, piecewise_linear: one linear layer shared by all features
    bins: Optional[int] = None  # piecewise_linear: bins per feature (at most; fewer where values repeat)
    binning: Optional[str] = None  # piecewise_linear: quantile (train-split quantiles) | tree (a decision tree's
    # splits of each input on the target, rtdl-num-embeddings' tree-based bins)


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
    lr: float = 1e-3  # adam's, adamw's and rmsprop's; the others' are in OPTION_DEFAULTS
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
    name: str = "none"  # none | step | cosine | cosine_warmup | plateau
    step_size: Optional[int] = None  # step: epochs between decays
    gamma: Optional[float] = None  # step: decay factor
    t_max: Optional[int] = None  # cosine, cosine_warmup: period in epochs (null = trainer.max_epochs)
    warmup_epochs: Optional[int] = None  # cosine_warmup: epochs of linear warm-up from 0 to optimizer.lr
    eta_min: Optional[float] = None  # cosine: final lr
    factor: Optional[float] = None  # plateau: decay factor
    patience: Optional[int] = None  # plateau: epochs without improvement of val loss
    min_lr: Optional[float] = None  # plateau


@dataclass
class EarlyStoppingConfig:
    name: str = "val_loss"  # val_loss | none
    monitor: str = "val_loss"  # val_loss | val_accuracy | train_loss
    mode: str = "auto"  # auto (min for losses, max for val_accuracy) | min | max
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
    label_smoothing: float = 0.0  # classification: targets (1 - e) one-hot + e / classes


@dataclass
class TrainerConfig:
    max_epochs: int = 60
    max_steps: Optional[int] = None  # a budget of optimizer steps: the run ends with the epoch that reaches it
    # (at max_epochs at the latest; the schedule and every per-epoch cadence follow the shorter run)
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
    strategy: str = "auto"  # auto (one process) | ddp (data parallel under torchrun or srun; batch_size is global)
    refit: bool = False  # after the run: a fresh model trained on the train + val rows for the kept model's count of
    # epochs (the best epoch's) becomes the kept model (checkpoints/refit.pt); the val rows chose the epochs, then train it
    refit_models: int = 1  # with refit=true: how many refit models (seeds seed, seed+1, ...) the kept model averages,
    # probabilities for classification, values for regression (a seed ensemble; each costs one more refit)


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
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


# Each option's own defaults, where they differ from its group's dataclass above (there, a null key is one
# the option does not take). mlpkit.app.config stores each as the Hydra config `mlpkit_option/<group>/<option>`,
# which configs/<group>/<option>.yaml extends (so `--cfg job` shows them); the Python API's builders
# (make_optimizer, make_scheduler, make_activation, initialize, MedianPruner, PerceptronRule) read them here.
OPTION_DEFAULTS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "model": {
        "perceptron": {"hidden": [], "lr": 1.0},
        "tabm": {"hidden": [256, 256, 256], "k": 32},
    },
    "embedding": {  # rtdl-num-embeddings' defaults (Gorishniy et al. 2022)
        "periodic": {"dim": 24, "frequencies": 48, "sigma": 0.01, "lite": False},
        "piecewise_linear": {"dim": 16, "bins": 48, "lite": False, "binning": "quantile"},
    },
    "activation": {
        "leaky_relu": {"negative_slope": 0.01},
        "prelu": {"init": 0.25},
        "elu": {"alpha": 1.0},
        "softplus": {"beta": 1.0},
        "maxout": {"pieces": 2},
    },
    "init": {
        "normal": {"std": 0.01},
    },
    "optimizer": {
        "sgd": {"lr": 0.05, "weight_decay": 0.0},
        "momentum": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "nesterov": {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.0},
        "adagrad": {"lr": 0.01, "weight_decay": 0.0},
        "rmsprop": {"alpha": 0.99, "weight_decay": 0.0},
        "adadelta": {"lr": 1.0, "rho": 0.9, "weight_decay": 0.0},
        "adam": {"betas": [0.9, 0.999], "weight_decay": 0.0},
        "adamw": {"betas": [0.9, 0.999], "weight_decay": 0.01},
    },
    "scheduler": {
        "step": {"step_size": 10, "gamma": 0.5},
        "cosine": {"eta_min": 0.0},
        "cosine_warmup": {"eta_min": 0.0, "warmup_epochs": 5},
        "plateau": {"factor": 0.5, "patience": 5, "min_lr": 0.0},
    },
    "early_stopping": {
        "none": {"patience": 0, "restore_best": False},
    },
    "pruning": {
        "median": {"warmup_epochs": 5, "min_completed": 3},
    },
}

_GROUPS = {"model": ModelConfig, "embedding": EmbeddingConfig, "activation": ActivationConfig, "init": InitConfig, "optimizer": OptimizerConfig,
           "scheduler": SchedulerConfig, "early_stopping": EarlyStoppingConfig, "pruning": PruningConfig}


def option_defaults(group: str, option: str) -> Dict[str, Any]:
    """The settings `group=option` starts from that its dataclass leaves null or sets otherwise."""
    return dict(OPTION_DEFAULTS.get(group, {}).get(option, {}))


def option_default(group: str, option: str, key: str) -> Any:
    """One setting's default for `group=option`: the option's own, else the group dataclass's."""
    own = OPTION_DEFAULTS.get(group, {}).get(option, {})
    return own[key] if key in own else getattr(_GROUPS[group], key)
