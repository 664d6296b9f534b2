"""Every registered activation builds, trains (forward + backward) and means what its name says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpkit import MLP, ConfigError, make_activation
from mlpkit.models.activations import ACTIVATIONS
from mlpkit.training.diagnostics import ActivationProbe

NAMES = sorted(ACTIVATIONS)

# torch.nn.functional references for the activations torch has, with a non-default setting
# where the function takes one (so that the setting is shown to be honoured).
REFERENCES = {
    "sigmoid": ({}, torch.sigmoid),
    "tanh": ({}, torch.tanh),
    "relu": ({}, F.relu),
    "leaky_relu": ({"negative_slope": 0.2}, lambda x: F.leaky_relu(x, negative_slope=0.2)),
    "prelu": ({"init": 0.3}, lambda x: F.prelu(x, torch.tensor([0.3]))),
    "elu": ({"alpha": 0.5}, lambda x: F.elu(x, alpha=0.5)),
    "softplus": ({"beta": 2.0}, lambda x: F.softplus(x, beta=2.0)),
    "gelu": ({}, F.gelu),
    "silu": ({}, F.silu),
    "identity": ({}, lambda x: x),
    "step": ({}, lambda x: (x > 0).to(x.dtype)),
    "mish": ({}, F.mish),
    "selu": ({}, F.selu),
}


@pytest.mark.parametrize("name", NAMES)
def test_every_activation_builds_runs_and_backpropagates(name):
    torch.manual_seed(0)
    model = MLP(5, [8, 8], 3, activation=name)
    x = torch.randn(16, 5)
    out = model(x)
    assert out.shape == (16, 3)
    assert torch.isfinite(out).all()
    out.pow(2).mean().backward()
    last = model.linears[-1]
    assert last.weight.grad is not None and torch.isfinite(last.weight.grad).all()
    assert last.weight.grad.abs().sum() > 0, "the output layer gets no gradient"
    for lin in model.linears:
        assert lin.weight.grad is not None, f"{name}: a linear layer is cut off from the graph"
        assert torch.isfinite(lin.weight.grad).all()
    if ACTIVATIONS[name].differentiable:
        assert model.linears[0].weight.grad.abs().sum() > 0, f"{name}: no gradient reaches the first layer"


@pytest.mark.parametrize("name", NAMES)
def test_every_activation_config_default_is_accepted(name):
    spec = ACTIVATIONS[name]
    module = make_activation(name, **spec.params)
    assert isinstance(module, torch.nn.Module)
    with pytest.raises(ConfigError, match="bogus"):
        make_activation(name, bogus=1.0)


@pytest.mark.parametrize("name", sorted(set(NAMES) & set(REFERENCES)))
def test_activation_matches_torch_reference(name):
    params, ref = REFERENCES[name]
    x = torch.linspace(-4, 4, 81).reshape(-1, 1).repeat(1, 3)
    got = make_activation(name, **params)(x)
    torch.testing.assert_close(got, ref(x))


def test_every_activation_has_a_reference_or_a_dedicated_test():
    dedicated = {"maxout"}  # compared with a manual computation below
    missing = set(NAMES) - set(REFERENCES) - dedicated
    assert not missing, f"add a reference for the new activation(s) {sorted(missing)}"


def test_leaky_relu_slope_reaches_the_model():
    model = MLP(3, [4], 1, activation="leaky_relu", activation_params={"negative_slope": 0.3})
    x = torch.randn(50, 3)
    pre = model.linears[0](x)
    torch.testing.assert_close(model.activations[0](pre), F.leaky_relu(pre, 0.3))


@pytest.mark.parametrize("pieces", [2, 3])
def test_maxout_takes_the_max_of_k_pieces(pieces):
    torch.manual_seed(0)
    model = MLP(4, [5, 6], 2, activation="maxout", activation_params={"pieces": pieces})
    first, second, last = model.linears
    assert first.out_features == 5 * pieces and second.in_features == 5
    assert second.out_features == 6 * pieces and last.in_features == 6
    x = torch.randn(7, 4)
    # manual: unit j of a maxout layer is max over its `pieces` consecutive affine outputs
    h1 = first(x).reshape(7, 5, pieces).max(dim=-1).values
    h2 = second(h1).reshape(7, 6, pieces).max(dim=-1).values
    torch.testing.assert_close(model(x), last(h2))


def test_maxout_module_directly():
    x = torch.tensor([[1.0, 5.0, -2.0, -3.0, 0.0, 0.5]])
    out = make_activation("maxout", pieces=2)(x)
    torch.testing.assert_close(out, torch.tensor([[5.0, -2.0, 0.5]]))
    out3 = make_activation("maxout", pieces=3)(x)
    torch.testing.assert_close(out3, torch.tensor([[5.0, 0.5]]))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 5), units=st.integers(1, 6), pieces=st.integers(2, 4), seed=st.integers(0, 10_000))
def test_maxout_is_the_max_over_consecutive_groups_of_k(rows, units, pieces, seed):
    x = torch.randn(rows, units * pieces, generator=torch.Generator().manual_seed(seed))
    out = make_activation("maxout", pieces=pieces)(x)
    assert out.shape == (rows, units)
    for j in range(units):
        torch.testing.assert_close(out[:, j], x[:, j * pieces:(j + 1) * pieces].max(dim=1).values)


@pytest.mark.parametrize("bad", [1, 0])
def test_maxout_needs_at_least_two_pieces(bad):
    with pytest.raises(ConfigError, match="pieces"):
        MLP(3, [4], 1, activation="maxout", activation_params={"pieces": bad})


def test_step_outputs_zero_or_one_and_blocks_gradient_below_it():
    torch.manual_seed(0)
    model = MLP(4, [8, 8], 2, activation="step")
    x = torch.randn(32, 4)
    h = model.net[:2](x)
    assert set(h.unique().tolist()) <= {0.0, 1.0}
    model(x).pow(2).sum().backward()
    first, second, last = model.linears
    for below in (first, second):
        assert below.weight.grad is not None, "the gradient should arrive as an honest 0, not None"
        assert torch.count_nonzero(below.weight.grad) == 0
        assert torch.count_nonzero(below.bias.grad) == 0
    assert last.weight.grad.abs().sum() > 0


def test_unknown_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="swish"):
        MLP(3, [4], 1, activation="swish")


# ---------------------------------------------------------------------------
# The diagnostics behind activations/dead_fraction and activations/saturated_fraction


def _one_unit_model(activation: str) -> MLP:
    model = MLP(1, [1], 1, activation=activation)
    with torch.no_grad():
        model.linears[0].weight.fill_(1.0)
        model.linears[0].bias.zero_()
    return model


def _probe(model: MLP, activation: str, x: torch.Tensor) -> dict:
    probe = ActivationProbe(model, activation)
    probe.active = True
    with torch.no_grad():
        model(x)
    values = probe.read()
    probe.remove()
    return values


def test_dead_fraction_counts_units_off_for_every_sample():
    model = MLP(2, [4], 1, activation="relu")
    with torch.no_grad():
        lin = model.linears[0]
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]]))
        lin.bias.copy_(torch.tensor([0.0, -10.0, -10.0, -1.0]))
    x = torch.tensor([[1.0, 1.0], [2.0, -2.0], [-1.0, 3.0]])
    # unit 0 is on for some rows; units 1, 2, 3 never are.
    values = _probe(model, "relu", x)
    assert values == {"activations/dead_fraction/layer_0": pytest.approx(0.75)}


def test_tanh_saturation_threshold():
    model = _one_unit_model("tanh")
    # tanh(3) = 0.995 (saturated), tanh(2) = 0.964 (not)
    x = torch.tensor([[3.0], [-3.0], [2.0], [0.0]])
    assert _probe(model, "tanh", x) == {"activations/saturated_fraction/layer_0": pytest.approx(0.5)}


def test_sigmoid_saturation_is_within_one_percent_of_an_asymptote():
    """diagnostics.SATURATION documents 'sigmoid: out < 0.01 or > 0.99'."""
    model = _one_unit_model("sigmoid")
    logit = lambda p: torch.log(torch.tensor(p) / (1 - torch.tensor(p)))  # noqa: E731
    # outputs 0.993 and 0.007 are within 1% of an asymptote; 0.5 and 0.9 are not
    x = torch.stack([logit(0.993), logit(0.007), logit(0.5), logit(0.9)]).reshape(-1, 1)
    assert _probe(model, "sigmoid", x) == {"activations/saturated_fraction/layer_0": pytest.approx(0.5)}


def test_step_outputs_are_all_saturated():
    """A step unit's outputs (0 or 1) always sit on an asymptote (ActivationProbe's docstring)."""
    model = _one_unit_model("step")
    x = torch.tensor([[-2.0], [-1.0], [1.0], [3.0]])
    assert _probe(model, "step", x) == {"activations/saturated_fraction/layer_0": pytest.approx(1.0)}
