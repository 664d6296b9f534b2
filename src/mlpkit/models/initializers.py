"""Weight initialisers by name, all from torch.nn.init. Biases start at zero,
except under `default`, which keeps PyTorch's own Linear initialisation."""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

from mlpkit.registry import Registry
from mlpkit.schema import InitConfig, option_default

_NORMAL_STD = option_default("init", "normal", "std")
_SLOPE = option_default("activation", "leaky_relu", "negative_slope")  # He's slope where none is given

# name -> fn(weight, gain_name, slope, std, gain). weight is (out_features, in_features).
Init = Callable[[torch.Tensor, str, float, Optional[float], Optional[float]], None]


def _he(fn):
    # He/Kaiming: Var(w) = 2 / fan_in for ReLU; torch folds the slope of leaky units in.
    def init(w, gain_name, slope, std, gain):
        nl = gain_name if gain_name in ("relu", "leaky_relu") else "relu"
        fn(w, a=slope if nl == "leaky_relu" else 0.0, nonlinearity=nl)
    return init


INITIALIZERS: Registry[Optional[Init]] = Registry("init", {
    "default": None,  # nn.Linear's own: kaiming_uniform_(a=sqrt(5)), uniform bias
    # Glorot/Xavier: Var(w) = 2 / (fan_in + fan_out), times gain^2 (init.gain, default 1).
    "xavier_uniform": lambda w, g, s, std, gain: nn.init.xavier_uniform_(w, gain=1.0 if gain is None else gain),
    "xavier_normal": lambda w, g, s, std, gain: nn.init.xavier_normal_(w, gain=1.0 if gain is None else gain),
    "he_uniform": _he(nn.init.kaiming_uniform_),
    "he_normal": _he(nn.init.kaiming_normal_),
    # LeCun: Var(w) = 1 / fan_in (SELU's and the textbook's plain 1/sqrt(n) rule).
    "lecun_normal": lambda w, g, s, std, gain: nn.init.normal_(w, 0.0, 1.0 / math.sqrt(w.shape[1])),
    "orthogonal": lambda w, g, s, std, gain: nn.init.orthogonal_(w, gain=1.0 if gain is None else gain),
    "normal": lambda w, g, s, std, gain: nn.init.normal_(w, 0.0, _NORMAL_STD if std is None else std),
    "zeros": lambda w, g, s, std, gain: nn.init.zeros_(w),
}, settings={"normal": ("std",), "xavier_uniform": ("gain",), "xavier_normal": ("gain",), "orthogonal": ("gain",)})


def initialize(model: nn.Module, name: str = InitConfig.name, *, gain_name: str = "relu", slope: float = _SLOPE,
               std: Optional[float] = None, gain: Optional[float] = None) -> None:
    """Initialise every nn.Linear of `model` in place with the named scheme.

    Args:
        gain_name: the activation the layer feeds (relu, leaky_relu, tanh, ...), for He.
        slope: negative slope of leaky units, for He.
        std: standard deviation for `normal` (default: the schema's).
        gain: multiplier for xavier_* and orthogonal (default 1).
    """
    fn = INITIALIZERS[name]
    if fn is None:
        return
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                fn(module.weight, gain_name, slope, std, gain)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
