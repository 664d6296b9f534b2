"""The MLP's shape and every registered normalisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlpkit import MLP, ConfigError
from mlpkit.models.mlp import NORMS

NORM_NAMES = sorted(NORMS)

# name -> (module type placed after each hidden Linear, the dimension its statistics run over)
EXPECTED_NORMS = {
    "none": (None, None),
    "batch": (nn.BatchNorm1d, 0),  # per unit, over the samples of the batch
    "layer": (nn.LayerNorm, 1),  # per sample, over the units
}


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_every_norm_builds_runs_and_backpropagates(norm):
    torch.manual_seed(0)
    model = MLP(5, [16, 16], 3, activation="tanh", norm=norm)
    x = torch.randn(32, 5) * 3 + 2
    out = model(x)
    assert out.shape == (32, 3) and torch.isfinite(out).all()
    out.pow(2).mean().backward()
    for lin in model.linears:
        assert lin.weight.grad is not None and lin.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 3), "eval mode must handle a single sample"


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_every_norm_normalises_the_right_axis(norm):
    if norm not in EXPECTED_NORMS:
        pytest.fail(f"new norm {norm!r}: add its expected module and axis to EXPECTED_NORMS")
    kind, axis = EXPECTED_NORMS[norm]
    torch.manual_seed(0)
    model = MLP(5, [16, 16], 3, activation="relu", norm=norm)
    norms = [m for m in model.modules() if kind is not None and isinstance(m, kind)]
    if kind is None:
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)) for m in model.modules())
        return
    assert len(norms) == 2, "one norm per hidden layer"
    seen = []
    hook = norms[0].register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
    model.train()
    model(torch.randn(64, 5) * 4 + 3)
    hook.remove()
    out = seen[0]
    torch.testing.assert_close(out.mean(axis), torch.zeros(out.shape[1 - axis]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.std(axis, correction=0), torch.ones(out.shape[1 - axis]), atol=1e-2, rtol=0)


@pytest.mark.parametrize("norm", NORM_NAMES)
def test_norm_with_maxout_is_applied_to_all_pieces(norm):
    model = MLP(3, [4], 1, activation="maxout", activation_params={"pieces": 3}, norm=norm)
    assert model(torch.randn(8, 3)).shape == (8, 1)


def test_hidden_widths_and_layer_order():
    model = MLP(7, [32, 16, 8], 4, activation="relu", dropout=0.2)
    shapes = [(m.in_features, m.out_features) for m in model.linears]
    assert shapes == [(7, 32), (32, 16), (16, 8), (8, 4)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 3
    assert len(model.activations) == 3


def test_no_hidden_layer_is_a_single_linear_model():
    model = MLP(6, [], 3)
    assert [type(m) for m in model.net] == [nn.Linear]
    assert model(torch.randn(2, 6)).shape == (2, 3)


@pytest.mark.parametrize("kwargs, needle", [
    ({"hidden": [0, 4]}, "model.hidden"),
    ({"hidden": [4], "dropout": 1.0}, "dropout"),
    ({"hidden": [4], "dropout": -0.1}, "dropout"),
    ({"hidden": [4], "norm": "group"}, "group"),
])
def test_bad_model_arguments_are_config_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        MLP(3, out_dim=1, **kwargs)
