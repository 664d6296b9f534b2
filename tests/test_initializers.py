"""Every registered initialiser produces the textbook weight statistics (loose tolerances)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlpkit import MLP, ConfigError, initialize
from mlpkit.models.initializers import INITIALIZERS

NAMES = sorted(INITIALIZERS)
FAN_IN, FAN_OUT = 400, 300  # wide enough for tight estimates; fan_out < fan_in for orthogonal rows


def _layer(name: str, **kwargs) -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(FAN_IN, FAN_OUT)
    initialize(nn.Sequential(layer), name, **kwargs)
    return layer


def _uniform(bound):
    def check(w):
        assert w.abs().max() <= bound * 1.0001
        assert w.abs().max() >= bound * 0.98, "the values do not fill the interval [-bound, bound]"
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
        assert abs(w.mean().item()) < 0.02 * bound
    return check


def _normal(std):
    def check(w):
        assert w.std().item() == pytest.approx(std, rel=0.03)
        assert abs(w.mean().item()) < 0.02 * std
        # a normal, not a uniform: some values beyond 2.5 std
        assert (w.abs() > 2.5 * std).float().mean().item() == pytest.approx(0.0124, abs=0.004)
    return check


def _orthogonal(w):
    eye = torch.eye(FAN_OUT)
    torch.testing.assert_close(w @ w.T, eye, atol=1e-4, rtol=0)


def _zeros(w):
    assert torch.count_nonzero(w) == 0


# name -> check of the weight matrix under the defaults (gain_name="relu", init.std=None, init.gain=None)
EXPECTED = {
    "default": _uniform(1 / math.sqrt(FAN_IN)),  # nn.Linear's kaiming_uniform_(a=sqrt(5))
    "xavier_uniform": _uniform(math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "xavier_normal": _normal(math.sqrt(2 / (FAN_IN + FAN_OUT))),
    "he_uniform": _uniform(math.sqrt(6 / FAN_IN)),
    "he_normal": _normal(math.sqrt(2 / FAN_IN)),
    "lecun_normal": _normal(1 / math.sqrt(FAN_IN)),
    "orthogonal": _orthogonal,
    "normal": _normal(0.01),
    "zeros": _zeros,
}


@pytest.mark.parametrize("name", NAMES)
def test_initializer_statistics(name):
    if name not in EXPECTED:
        pytest.fail(f"new initializer {name!r}: add its textbook statistic to EXPECTED in this file")
    layer = _layer(name)
    assert torch.isfinite(layer.weight).all()
    EXPECTED[name](layer.weight.detach())


@pytest.mark.parametrize("name", NAMES)
def test_initializer_biases(name):
    layer = _layer(name)
    if name == "default":  # keeps PyTorch's own uniform bias
        assert torch.count_nonzero(layer.bias) > 0
        assert layer.bias.abs().max() <= 1 / math.sqrt(FAN_IN) * 1.0001
    else:
        assert torch.count_nonzero(layer.bias) == 0


@pytest.mark.parametrize("name", NAMES)
def test_initializer_through_mlp_reaches_every_linear_layer(name):
    torch.manual_seed(0)
    model = MLP(FAN_IN, [FAN_OUT, FAN_OUT], 10, activation="relu", init=name)
    reference = _layer(name).weight
    for lin in model.linears[:1]:  # same shape as the reference layer: same distribution
        assert lin.weight.std().item() == pytest.approx(reference.std().item(), rel=0.05, abs=1e-9)
    for lin in model.linears:
        assert torch.isfinite(lin.weight).all()
        if name == "zeros":
            assert torch.count_nonzero(lin.weight) == 0


def test_normal_uses_init_std():
    _normal(0.2)(_layer("normal", std=0.2).weight.detach())
    model = MLP(FAN_IN, [FAN_OUT], 1, init="normal", init_std=0.05)
    assert model.linears[0].weight.std().item() == pytest.approx(0.05, rel=0.03)


@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "orthogonal"])
def test_gain_scales_the_weights(name):
    plain = _layer(name).weight.std().item()
    scaled = _layer(name, gain=2.0).weight.std().item()
    assert scaled == pytest.approx(2 * plain, rel=0.03)


def test_he_normal_folds_in_the_leaky_slope():
    slope = 0.2
    torch.manual_seed(0)
    model = MLP(FAN_IN, [FAN_OUT], 1, activation="leaky_relu", activation_params={"negative_slope": slope},
                init="he_normal")
    expected = math.sqrt(2 / ((1 + slope ** 2) * FAN_IN))
    assert model.linears[0].weight.std().item() == pytest.approx(expected, rel=0.03)


def test_unknown_initializer_is_a_config_error():
    with pytest.raises(ConfigError, match="glorot"):
        initialize(nn.Linear(3, 3), "glorot")
