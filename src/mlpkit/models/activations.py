"""Activation functions by name: the registry, and the two torch lacks (step, maxout)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import nn

from mlpkit.errors import ConfigError
from mlpkit.registry import Registry
from mlpkit.schema import option_default, option_defaults


class Step(nn.Module):
    """Heaviside step, 1 where x > 0 else 0. Its derivative is 0 almost everywhere,
    so backprop sends no signal through it: layers below a step unit never learn."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # `0 * x` keeps the graph connected, so the gradient arrives as an honest 0, not None.
        return (x > 0).to(x.dtype) + 0 * x


class Maxout(nn.Module):
    """Maxout over `pieces` linear pieces: (N, units * pieces) -> (N, units).

    The preceding Linear layer is built `pieces` times wider; each unit outputs the
    max of its k affine pieces (Goodfellow et al., 2013)."""

    def __init__(self, pieces: int = option_default("activation", "maxout", "pieces")):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, width = x.shape
        return x.view(n, width // self.pieces, self.pieces).amax(dim=-1)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


@dataclass(frozen=True)
class ActivationSpec:
    """How to build one activation, which settings it takes, and what it is like."""

    build: Callable[..., nn.Module]
    params: Dict[str, object] = field(default_factory=dict)  # setting -> default (the schema's)
    family: Optional[str] = None  # "rectifier" (dead units) | "saturating" (saturated units) | None
    gain_name: str = "linear"  # torch.nn.init.calculate_gain name, for He/Xavier
    differentiable: bool = True

    def width_factor(self, params: dict) -> int:
        """How many times wider the Linear layer before this activation must be (maxout: k)."""
        return int(params.get("pieces", self.params.get("pieces", 1)))


def _own(name: str) -> Dict[str, object]:
    return option_defaults("activation", name)


_SPECS: Dict[str, ActivationSpec] = {
    "step": ActivationSpec(Step, family="saturating", differentiable=False),
    "sigmoid": ActivationSpec(nn.Sigmoid, family="saturating", gain_name="sigmoid"),
    "tanh": ActivationSpec(nn.Tanh, family="saturating", gain_name="tanh"),
    "relu": ActivationSpec(nn.ReLU, family="rectifier", gain_name="relu"),
    "leaky_relu": ActivationSpec(nn.LeakyReLU, _own("leaky_relu"), "rectifier", "leaky_relu"),
    "prelu": ActivationSpec(lambda init: nn.PReLU(init=init), _own("prelu"), "rectifier", "leaky_relu"),
    "elu": ActivationSpec(nn.ELU, _own("elu"), "rectifier", "relu"),
    "softplus": ActivationSpec(nn.Softplus, _own("softplus"), None, "relu"),
    "maxout": ActivationSpec(Maxout, _own("maxout"), None, "linear"),
    "gelu": ActivationSpec(nn.GELU, family="rectifier", gain_name="relu"),
    "silu": ActivationSpec(nn.SiLU, family="rectifier", gain_name="relu"),
    "identity": ActivationSpec(nn.Identity),
    "mish": ActivationSpec(nn.Mish, family="rectifier", gain_name="relu"),  # x tanh(softplus(x)): RealMLP's
    "selu": ActivationSpec(nn.SELU, gain_name="selu"),  # self-normalising with lecun_normal init
}


ACTIVATIONS: Registry[ActivationSpec] = Registry("activation", _SPECS,
                                                 {name: tuple(spec.params) for name, spec in _SPECS.items()})


def get_activation(name: str) -> ActivationSpec:
    """The spec of a registered activation, or a ConfigError listing the names."""
    return ACTIVATIONS[name]


def check_activation_params(name: str, given: dict) -> None:
    """ConfigError for a setting `activation=<name>` does not take, or a maxout `pieces` below 2."""
    ACTIVATIONS.check_settings(name, given)
    if "pieces" in given and (not isinstance(given["pieces"], int) or given["pieces"] < 2):
        raise ConfigError(f"activation.pieces={given['pieces']!r} must be an integer >= 2")


def make_activation(name: str, **params) -> nn.Module:
    """A fresh activation module, e.g. make_activation("leaky_relu", negative_slope=0.1)."""
    spec = get_activation(name)
    check_activation_params(name, params)
    return spec.build(**{**spec.params, **params})
