"""The config schema (its dataclasses are mlpkit.schema's: every key a user can set, its type, its
default) and the checks on its values.

Hydra composes `configs/train.yaml` on top of `TrainConfig` (registered below as
`mlpkit_schema`), so a value of the wrong type (`optimizer.lr=abc`) or an unknown
key fails while the config is composed, before any job of a sweep starts.
`validate()` adds the checks a type cannot express (ranges, names in the
registries) and runs both at the start of every job and, through
`mlpkit.app.cli.ValidateSweep`, once for every job of a grid sweep before the first one runs.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from mlpkit.checks import (RANGES, check_class_weight, check_device_name, check_needs_classes, check_number,
                           check_widths)
from mlpkit.errors import ConfigError
from mlpkit.registry import check_choice, not_known
from mlpkit.schema import BINNINGS, OPTION_DEFAULTS, TrainConfig
from mlpkit.tasks import TASKS, Task


def register_schema() -> None:
    """Store `TrainConfig` in Hydra's ConfigStore as `mlpkit_schema`, and each option's own defaults as
    `mlpkit_option/<group>/<option>` (its YAML file extends it)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="mlpkit_schema", node=TrainConfig)
    for group, options in OPTION_DEFAULTS.items():  # what configs/<group>/<option>.yaml extends
        for option, values in options.items():
            store.store(group=f"mlpkit_option/{group}", name=option, node=values)


CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs"  # train.py sets its own beside it


def config_groups() -> Dict[str, List[str]]:
    """Each config group (a folder of configs/) -> its option names."""
    folders = sorted(CONFIG_DIR.iterdir()) if CONFIG_DIR.is_dir() else []
    return {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in folders if g.is_dir() and g.name != "hydra"}


def schema_keys(node: type = TrainConfig, prefix: str = "") -> Dict[str, Any]:
    """Every dotted key of the schema -> its type (`trainer.max_epochs` -> int)."""
    import dataclasses
    import typing

    keys: Dict[str, Any] = {}
    for name, kind in typing.get_type_hints(node).items():
        if dataclasses.is_dataclass(kind):
            keys.update(schema_keys(kind, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = kind
    return keys


def nearest_key(key: str) -> str:
    """`; did you mean trainer.max_epochs?` for the closest schema key, or nothing."""
    import difflib

    close = difflib.get_close_matches(key, [*schema_keys(), *config_groups()], n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


# Groups whose settings a choice elsewhere makes void: (key, option) -> (group, what it still takes);
# a model family's come from its entry (mlpkit.models.families: unused_groups, settings)
VOID_SETTINGS = {
    ("early_stopping", "none"): (("early_stopping",), ("early_stopping.monitor", "early_stopping.mode")),
}


def check_option_settings(cfg: Any, overrides: List[str]) -> None:
    """A setting given on the command line that the chosen option does not use is an error
    (`early_stopping=none early_stopping.patience=5`, optimizer settings with `model=perceptron`,
    label smoothing for a regression target)."""
    check_task(cfg, data_task(cfg.data), override_keys(overrides))
    keys = [o.split("=", 1)[0].lstrip("+") for o in overrides if "=" in o and not o.startswith("~")]
    if "trainer.refit_models" in keys and cfg.trainer.refit_models > 1 and not cfg.trainer.refit:
        raise ConfigError(f"trainer.refit_models={cfg.trainer.refit_models} counts the refit models, but "
                          "trainer.refit=false trains none; add trainer.refit=true")
    family = registries()["model"][cfg.model.name]
    void = {**VOID_SETTINGS, ("model", family.name): (family.unused_groups,
                                                      tuple(f"model.{k}" for k in family.settings))}
    for group in family.unused_groups:  # `model=tabm norm=batch`: a choice the family would ignore
        default = getattr(getattr(TrainConfig(), group, None), "name", None)
        if group in keys and default is not None and cfg[group].name != default:
            raise ConfigError(f"{group}={cfg[group].name} does not apply to model={family.name} ({family.what}), "
                              f"which ignores the {group} group; drop {group}={cfg[group].name}")
    for (choice, option), (groups, takes) in void.items():
        if cfg[choice].name != option:
            continue
        for key in keys:
            if key.startswith(tuple(f"{g}." for g in groups)) and key not in takes:
                raise ConfigError(f"{key} is not a setting of {choice}={option}; it takes {', '.join(takes)}")


def _fits(kind: Any, value: Any) -> bool:
    """Whether an override's parsed value can be a `kind` (as OmegaConf would convert it)."""
    import typing

    args = typing.get_args(kind)
    if isinstance(value, str) and "${" in value:  # an interpolation: checked once resolved
        return True
    if typing.get_origin(kind) is typing.Union:  # Optional[X]
        return value is None or _fits(next(a for a in args if a is not type(None)), value)
    if typing.get_origin(kind) in (list, List):
        return isinstance(value, list) and all(_fits(args[0], v) for v in value)
    if isinstance(value, bool):
        return kind in (bool, str)
    if kind is float:
        return isinstance(value, (int, float))
    if kind is int:
        return isinstance(value, int)
    if kind is str:
        return isinstance(value, (str, int, float))
    return True


def _kind(kind: Any) -> str:
    import typing

    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) is typing.Union:
        return f"{_kind(args[0])} or null"
    if typing.get_origin(kind) in (list, List):
        return f"a list of {_kind(args[0]).replace('a number', 'numbers').replace('an integer', 'integers')}, e.g. [1,2]"
    return {float: "a number", int: "an integer", str: "text", bool: "true or false"}.get(kind, str(kind))


def check_overrides(overrides: List[str]) -> None:
    """ConfigError, in one line, for an override Hydra would refuse with a long message or let pass:
    an unknown key (with the nearest known one), `+key` for anything but hydra.*, `~` removal of
    mlpkit's keys or groups, an unknown option, a value of the wrong type, a switch not true/false."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    keys, groups = schema_keys(), config_groups()
    bools = {k for k, v in keys.items() if v in (bool, Optional[bool])}
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        if o.is_delete():
            raise ConfigError(f"~{key}: mlpkit's keys and groups cannot be removed; set a value instead "
                              f"(e.g. {key}=<value>)")
        added = o.is_add() or o.is_force_add()
        if added and key not in keys and key not in groups:
            raise ConfigError(f"+{key}: {key} is not a key of mlpkit's config{nearest_key(key)} "
                              "(only hydra.* keys may be added with +)")
        if o.is_add() and (key in keys or key in groups):
            raise ConfigError(f"+{key}: {key} is already in mlpkit's config; set it without +")
        if key in groups:
            values = o.value().list if isinstance(o.value(), ChoiceSweep) else [o.value()]
            for value in values if not o.is_sweep_override() or isinstance(o.value(), ChoiceSweep) else []:
                if value is None:  # Hydra takes no null for a group: a required one needs an option anyway
                    needed = any(k.startswith(f"{key}.") for k in keys)
                    raise ConfigError(f"{key}=null: choose one of: {', '.join(groups[key])}"
                                      + ("" if needed else f" (or leave {key} out for none)"))
                if value is not None and (not isinstance(value, str) or value not in groups[key]):
                    raise ConfigError(not_known(key, value, groups[key], f" (no configs/{key}/{value}.yaml)"))
        if key in bools and not o.is_sweep_override() and not isinstance(o.value(), bool):
            raise ConfigError(f"{key}={o.get_value_element_as_str()} must be true or false")
        if not added and key not in groups:
            if key not in keys:
                raise ConfigError(f"{key} is not a key of mlpkit's config{nearest_key(key)}")
            if not o.is_sweep_override() and not _fits(keys[key], o.value()):
                raise ConfigError(f"{key}={o.get_value_element_as_str()} must be {_kind(keys[key])}")


# ---------------------------------------------------------------------------
# Checks a type cannot express (those the Python API makes too: mlpkit.checks)


MONITOR_MODE = {"val_loss": "min", "train_loss": "min", "val_accuracy": "max"}
EARLY_STOPPING = ("val_loss", "none")


def _check_ranges(cfg: Any, group: str) -> None:
    for key, limits in RANGES[group].items():
        check_number(f"{group}.{key}", cfg[group][key], **limits)


def _unset(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and not isinstance(value, str) and len(value) == 0)


def data_task(d: Any) -> Optional[Task]:
    """The task as the config alone tells it (before any data is read), or None when only the data can."""
    from mlpkit.data.sources import DATASETS

    return DATASETS[d.name].known_task(d)


@functools.lru_cache(maxsize=None)
def registries() -> Dict[str, Any]:
    """Each config group that chooses a builder -> its Registry (imported on first use: torch comes with them)."""
    from mlpkit.models.activations import ACTIVATIONS
    from mlpkit.data.sources import DATASETS
    from mlpkit.models.families import FAMILIES
    from mlpkit.models.initializers import INITIALIZERS
    from mlpkit.models.mlp import NORMS
    from mlpkit.training.optim import OPTIMIZERS, SCHEDULERS
    from mlpkit.training.pruning import PRUNERS
    from mlpkit.models.embeddings import EMBEDDINGS
    from mlpkit.registry import Registry

    pruning = Registry("pruning", dict.fromkeys(PRUNERS), PRUNERS)
    return {"data": DATASETS, "model": FAMILIES, "embedding": EMBEDDINGS, "activation": ACTIVATIONS, "init": INITIALIZERS, "norm": NORMS,
            "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "pruning": pruning}


def _check_option(cfg: Any, group: str, skip: tuple = ("name",)) -> None:
    """The group's option is a known name, and it takes every setting given to it."""
    from mlpkit.models.activations import check_activation_params

    node = cfg[group]
    registry = registries()[group]
    registry[node.name]
    given = _set_params(node, skip)
    if group == "data":  # the split keys every set takes; an empty list or a default (task=auto) is no setting
        from mlpkit.data.sources import COMMON
        from mlpkit.schema import DataConfig

        given = {k: v for k, v in given.items() if k not in COMMON and not _unset(v)
                 and v != getattr(DataConfig, k, None)}
    if group == "activation":
        check_activation_params(node.name, given)
    elif group != "model":  # model=mlp's hidden is no setting of an option; model.lr is checked below
        registry.check_settings(node.name, given)


def _check_data(cfg: Any) -> None:
    d = cfg.data
    try:
        _check_option(cfg, "data")
    except ConfigError as err:  # data.path=... with a bundled or generated set: the user meant their table
        table = ("path", "target", "drop", "categorical", "numeric", "onehot_max")
        if d.name != "csv" and any(not _unset(d.get(k)) for k in table if k in d):
            raise ConfigError(f"{err}; for your own table add data=csv (data=csv data.path=<file> "
                              "data.target=<column>)") from None
        raise
    check_choice("data.task", d.task, ("auto", *TASKS))
    _check_ranges(cfg, "data")
    from mlpkit.data.preprocess import check_numeric

    check_numeric(d.numeric, d.standardize, d.onehot_max)
    if d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {d.val_fraction + d.test_fraction:g} "
            "leaves nothing to train on; their sum must be < 1")
    from mlpkit.data.sources import DATASETS

    DATASETS[d.name].check(d)
    if d.get("stream"):
        from mlpkit.data.stream import check_stream

        check_stream(cfg)


def _check_model(cfg: Any) -> None:
    """model.* against the family's entry (mlpkit.models.families): its hidden layers, settings, ranges, resume."""
    m = cfg.model
    _check_option(cfg, "model")
    families = registries()["model"]
    family = families[m.name]
    if list(m.hidden) and not family.hidden_layers:
        with_hidden = [n for n in families if families[n].hidden_layers]
        raise ConfigError(f"model.hidden={list(m.hidden)}: model={m.name} is {family.what} and has no hidden "
                          f"layers; use model={'/'.join(with_hidden)} for hidden layers")
    for key in _set_params(m, skip=("name", "hidden")):
        if key not in family.settings:
            owners = [n for n in families if key in families[n].settings]
            hint = f"; for model={m.name} set optimizer.{key}" if f"optimizer.{key}" in schema_keys() else ""
            raise ConfigError(f"model.{key} is a setting of model={'/'.join(owners)}{hint}")
    for key, limits in family.ranges.items():
        check_number(f"model.{key}", m[key], **limits)
    if cfg.resume and not family.resumes:
        raise ConfigError(f"resume is not supported for model={m.name} (its runs are short: start again)")
    check_widths(m.hidden)


def _check_optimizer(cfg: Any) -> None:
    o = cfg.optimizer
    _check_option(cfg, "optimizer")
    _check_ranges(cfg, "optimizer")
    if o.betas is not None:
        if len(o.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in o.betas):
            raise ConfigError(f"optimizer.betas={list(o.betas)} must be two numbers in [0, 1), e.g. [0.9,0.999]")
    if o.name == "nesterov":  # torch: Nesterov momentum needs a momentum > 0 and no dampening
        if o.momentum is not None and o.momentum <= 0:
            raise ConfigError(f"optimizer.momentum={o.momentum} is out of range for optimizer=nesterov; "
                              "allowed: (0, 1)")
        if o.dampening:
            raise ConfigError(f"optimizer.dampening={o.dampening}: optimizer=nesterov takes no dampening; "
                              "allowed: 0 (or use optimizer=momentum)")


def _check_scheduler(cfg: Any) -> None:
    s, lr = cfg.scheduler, cfg.optimizer.lr
    _check_option(cfg, "scheduler")
    _check_ranges(cfg, "scheduler")
    for key in ("eta_min", "min_lr"):
        if s[key] is not None and s[key] > lr:
            raise ConfigError(f"scheduler.{key}={s[key]} is above optimizer.lr={lr}; allowed: [0, optimizer.lr]")


def _check_early_stopping(cfg: Any) -> None:
    e = cfg.early_stopping
    check_choice("early_stopping", e.name, EARLY_STOPPING)
    check_choice("early_stopping.monitor", e.monitor, MONITOR_MODE)
    check_choice("early_stopping.mode", e.mode, ("auto", "min", "max"))
    if e.mode not in ("auto", MONITOR_MODE[e.monitor]):
        raise ConfigError(f"early_stopping.mode={e.mode} does not fit early_stopping.monitor={e.monitor}; "
                          f"allowed: mode={MONITOR_MODE[e.monitor]} ({e.monitor} improves "
                          f"{'down' if MONITOR_MODE[e.monitor] == 'min' else 'up'}wards)")
    _check_ranges(cfg, "early_stopping")
    check_number("early_stopping.min_delta", e.min_delta, low=0, high=1 if e.monitor == "val_accuracy" else None,
            optional=False)


def _check_trainer(cfg: Any) -> None:
    _check_ranges(cfg, "trainer")
    check_class_weight(cfg.trainer.class_weight)
    check_device_name(cfg.trainer.device)
    from mlpkit.training.strategy import STRATEGIES  # torch: imported here, where a run needs it anyway

    STRATEGIES[cfg.trainer.strategy]
    family = registries()["model"][cfg.model.name]
    if cfg.trainer.strategy == "ddp" and family.step_rule is not None:
        raise ConfigError(f"trainer.strategy=ddp averages gradients over processes, but model={cfg.model.name} "
                          f"({family.what}) learns by a rule of its own; use trainer.strategy=auto")
    check_number("seed", cfg.seed, low=0, high=2**32 - 1, optional=False)


def validate(cfg: Any) -> None:
    """Raise ConfigError naming the first bad value of a composed config: group by group, its option,
    the settings that option takes, their ranges, then what depends on another group."""
    for key in ("data", "model", "embedding", "activation", "init", "norm", "optimizer", "scheduler", "early_stopping",
                "regularization", "trainer", "seed"):
        if key not in cfg or cfg[key] is None:
            raise ConfigError(f"{key} is missing from the config; mlpkit needs it (do not remove it with ~{key})")
    _check_data(cfg)
    _check_model(cfg)
    for group in ("embedding", "activation", "init"):
        _check_option(cfg, group)
        _check_ranges(cfg, group)
    if cfg.embedding.get("binning") is not None:
        check_choice("embedding.binning", cfg.embedding.binning, BINNINGS)
    _check_option(cfg, "norm")
    _check_optimizer(cfg)
    _check_scheduler(cfg)
    _check_early_stopping(cfg)
    _check_option(cfg, "pruning")
    _check_ranges(cfg, "pruning")
    _check_ranges(cfg, "regularization")
    _check_trainer(cfg)
    check_task(cfg, data_task(cfg.data), set())
    check_memory(cfg)


def check_recipe(cfg: Any, recipe: Optional[str]) -> None:
    """A recipe made for tables (it sets data.numeric or data.onehot_max) refused, naming it, on a built-in data
    set (which would otherwise refuse the data.* key the recipe set, not saying where it came from)."""
    table_only = cfg.data.get("numeric", "standard") != "standard" or cfg.data.get("onehot_max") is not None
    if recipe not in (None, "none") and cfg.data.name != "csv" and table_only:
        raise ConfigError(f"recipe={recipe} is made for your own table (data=csv data.path=<file>): it sets "
                          f"data.numeric and data.onehot_max, which data={cfg.data.name} does not take; use recipe=none")


def check_task(cfg: Any, task: Optional[Task], given: Optional[set] = None) -> None:
    """What needs classes (class weights, the perceptron, an accuracy monitor, label smoothing) refused for a
    regression task, and clamped outputs for a classification one: `task` as the config tells it (validate)
    or as the loaded data do (a csv with task=auto). Label smoothing and clamping are refused where the
    command line sets them (`given`: its keys; None: the running Hydra job's); from a preset
    (recipe=tabular) they apply where the task takes them."""
    given = command_line_keys() if given is None else given
    smoothing = cfg.regularization.get("label_smoothing", 0.0)
    check_needs_classes(task, cfg.data.name, class_weight=getattr(cfg.trainer, "class_weight", "none"),
                        model=cfg.model.name, families=registries()["model"], monitor=cfg.early_stopping.monitor,
                        label_smoothing=smoothing if "regularization.label_smoothing" in given else 0.0,
                        clamp_output=bool(cfg.model.get("clamp_output")) and "model.clamp_output" in given)


def override_keys(overrides: List[str]) -> set:
    """The keys a list of overrides sets (`a.b=1` -> a.b)."""
    return {str(o).split("=", 1)[0].lstrip("+~") for o in overrides}


def command_line_keys() -> set:
    """The keys the running Hydra job's command line sets (none outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return override_keys(list(HydraConfig.get().overrides.task))
    except (ImportError, ValueError):
        return set()


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def available_memory(device: str) -> Optional[int]:
    """Bytes that can be allocated: the GPU's memory for cuda (its size: asking for the free memory would
    create a CUDA context in the process that only checks), MemAvailable (or RAM) for the CPU."""
    if device.startswith("cuda") or device == "auto":
        import torch

        if torch.cuda.is_available():
            index = int(device.split(":")[1]) if ":" in device else 0
            if index < torch.cuda.device_count():
                return int(torch.cuda.get_device_properties(index).total_memory)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(cfg: Any) -> None:
    """ConfigError, before anything is allocated, when the model or the data set cannot fit in memory.

    A lower-bound estimate in float32: the model's weights, gradients and two optimiser moments, one
    batch of activations, and the data set (generated sets are built in float64 first)."""
    d, a, t = cfg.data, cfg.activation, cfg.trainer
    from mlpkit.data.sources import DATASETS

    rows, columns = DATASETS[d.name].size(d)
    pieces = (a.pieces or 2) if a.name == "maxout" else 1
    widths = [columns, *[w * pieces for w in cfg.model.hidden], max(1, d.n_classes or 1)]
    params = sum((fan_in // (pieces if i else 1) + 1) * fan_out for i, (fan_in, fan_out) in
                 enumerate(zip(widths[:-1], widths[1:])))
    batch = min(rows, t.batch_size or rows, 65536)
    model_bytes = 4 * (4 * params + 3 * batch * sum(widths))
    data_bytes = 4 * 3 * rows * columns
    free = available_memory(t.device)
    if free is None or model_bytes + data_bytes <= free:
        return
    if model_bytes >= data_bytes:
        key = (f"model.hidden={list(cfg.model.hidden)}"
               + (f" with activation.pieces={pieces}" if pieces > 1 else ""))
        what = f"the model ({params:,} parameters)"
    else:
        key = f"data.n_samples={rows}" + (f" with data.n_features={columns}" if d.n_features else "")
        what = f"the data ({rows:,} x {columns:,} values)"
    raise ConfigError(f"{key}: {what} needs at least {_gigabytes(model_bytes + data_bytes)} of memory, and "
                      f"{_gigabytes(free)} is available here; use smaller values")


def _set_params(node: Any, skip: tuple = ("name",)) -> dict:
    """The non-null keys of a group node, less `skip`: the settings a user gave it."""
    from omegaconf import DictConfig, OmegaConf

    items = OmegaConf.to_container(node) if isinstance(node, DictConfig) else vars(node)
    return {k: v for k, v in items.items() if v is not None and k not in skip}
