"""Model families: what differs between an MLP trained by gradient descent and Rosenblatt's perceptron,
written once per family, in its entry (a `Family`), which the config checks, the run's builder and the
training loop ask instead of comparing names.

    FAMILIES["perceptron"].unused_groups   # ('optimizer', 'scheduler', ...): settings there are refused
    FAMILIES["perceptron"].step_rule(cfg)  # its rule, called by the Trainer instead of a gradient step

Each family's module defines `FAMILY = Family(...)` beside its model class (mlpkit.models.mlp: mlp,
mlpkit.models.perceptron: perceptron); the module is imported when its entry is first asked for. Adding a
family = its module, its configs/model/<name>.yaml, and its line in MODULES.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from mlpkit.registry import Registry

# family name -> the module whose FAMILY describes it
MODULES = {"mlp": "mlpkit.models.mlp", "perceptron": "mlpkit.models.perceptron", "tabm": "mlpkit.models.tabm"}


@dataclass(frozen=True)
class Family:
    """One model family. `cfg` is the composed config, `data` the loaded Dataset."""

    name: str
    make: Callable[..., Any]  # builder(**model_kwargs, seed=...) -> nn.Module (predict.py: without seed)
    model_kwargs: Callable[[Any, Any], Dict[str, Any]]  # (cfg, data) -> the builder's arguments (model.json)
    head: Callable[[Any, Any], str]  # (cfg, device) -> the log's model line
    what: str  # what it is, for messages: "a single layer of step units"
    settings: Tuple[str, ...] = ()  # the model.* keys it takes, besides name and hidden
    ranges: Mapping[str, dict] = field(default_factory=dict)  # their ranges (mlpkit.app.config.RANGES' form)
    hidden_layers: bool = True  # takes model.hidden
    unused_groups: Tuple[str, ...] = ()  # config groups it ignores: a setting given there is refused
    step_rule: Optional[Callable[[Any], Any]] = None  # cfg -> its StepRule; None: the Trainer's gradient descent
    # built-in callback name -> the settings this family gives it (None: the family runs without it)
    callbacks: Mapping[str, Optional[dict]] = field(default_factory=dict)
    stops_early: bool = True  # early_stopping's patience applies (else its monitor only picks the best epoch)
    resumes: bool = True  # resume=<run_dir> can continue its runs
    classifies_only: bool = False  # refuses a regression target


class Families(Registry[Family]):
    """name -> Family, each imported from its module (MODULES) when first asked for."""

    def __getitem__(self, name: str) -> Family:
        entry = super().__getitem__(name)  # an unknown name: the registries' one message
        if isinstance(entry, str):
            entry = self._options[name] = importlib.import_module(entry).FAMILY
        return entry

    def settings(self, name: str) -> tuple:
        return self[name].settings

    def builders(self) -> Registry[Callable[..., Any]]:
        """name -> the family's model builder, imported when called."""
        return Registry(self.group, {name: _Builder(self, name) for name in self})


class _Builder:
    def __init__(self, families: Families, name: str):
        self.families, self.name = families, name

    def __call__(self, **kwargs: Any) -> Any:
        return self.families[self.name].make(**kwargs)


FAMILIES = Families("model", dict(MODULES))
