"""A check has one home (mlpkit.checks, or the entry that owns the fact): the Python API refuses a bad value
with the same one line as `python train.py`."""

from __future__ import annotations

import pytest

from mlpkit import MLP, ConfigError, Trainer, load_dataset
from mlpkit.app.config import validate

from conftest import compose_config


def _cli_message(overrides):
    with pytest.raises(ConfigError) as err:
        validate(compose_config(overrides))
    return str(err.value)


def _api_message(call):
    with pytest.raises(ConfigError) as err:
        call()
    return str(err.value)


@pytest.mark.parametrize("overrides,call", [
    (["regularization.dropout=1.5"], lambda: MLP(4, [8], 2, dropout=1.5)),
    (["model.hidden=[8,0]"], lambda: MLP(4, [8, 0], 2)),
    (["trainer.device=tpu"], lambda: Trainer(device="tpu")),
    (["trainer.class_weight=heavy"], lambda: Trainer(class_weight="heavy")),
    (["trainer.max_epochs=0"], lambda: Trainer(max_epochs=0)),
    (["regularization.l2=-1"], lambda: Trainer(l2=-1.0)),
    (["trainer.batch_size=-2"], lambda: Trainer(batch_size=-2)),
])
def test_python_api_and_command_line_give_the_same_line(overrides, call):
    assert _api_message(call) == _cli_message(overrides)


def test_regression_refusals_are_the_same_line():
    data = load_dataset("sine", n_samples=60, seed=0)
    cli = _cli_message(["data=sine", "trainer.class_weight=balanced"])
    api = _api_message(lambda: Trainer(class_weight="balanced", max_epochs=1, device="cpu")
                       .fit(MLP(data.in_dim, [4], data.out_dim), data))
    assert api == cli

    from mlpkit.models.perceptron import Perceptron, PerceptronRule

    cli = _cli_message(["data=sine", "model=perceptron"])
    api = _api_message(lambda: Trainer(step_rule=PerceptronRule(), max_epochs=1, device="cpu")
                       .fit(Perceptron(data.in_dim, data.out_dim), data))
    assert api == cli
