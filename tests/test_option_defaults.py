"""Each default has one home, the schema (mlpkit.schema, OPTION_DEFAULTS for an option's own): the YAML
files only choose, `--cfg job` still shows every value, and the Python API starts from the same values."""

from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from mlpkit.models.activations import make_activation
from mlpkit.training.optim import make_optimizer, make_scheduler
from mlpkit.schema import OPTION_DEFAULTS, TrainConfig, option_default

from conftest import CONFIGS, compose_config

GROUPS = ("model", "activation", "init", "optimizer", "scheduler", "early_stopping", "pruning")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", OPTIONS)
def test_an_option_file_holds_its_name_only(group, option):
    data = yaml.safe_load((CONFIGS / group / f"{option}.yaml").read_text())
    assert set(data) <= {"name", "defaults"}, f"configs/{group}/{option}.yaml repeats a default: {sorted(data)}"
    assert data["name"] == option


@pytest.mark.parametrize("group,option", OPTIONS)
def test_the_composed_option_has_the_schema_defaults(group, option):
    node = OmegaConf.to_container(compose_config([f"{group}={option}"])[group])
    expected = {**OmegaConf.to_container(OmegaConf.structured(TrainConfig)[group]), "name": option,
                **OPTION_DEFAULTS.get(group, {}).get(option, {})}
    assert node == expected


def test_every_option_default_belongs_to_an_option_file():
    for group, options in OPTION_DEFAULTS.items():
        for option in options:
            assert (CONFIGS / group / f"{option}.yaml").is_file(), (group, option)


@pytest.mark.parametrize("name", sorted(OPTION_DEFAULTS["optimizer"]))
def test_make_optimizer_starts_from_the_options_defaults(name):
    opt = make_optimizer([torch.zeros(2, requires_grad=True)], name)
    group = opt.param_groups[0]
    assert group["lr"] == option_default("optimizer", name, "lr")
    for key, value in OPTION_DEFAULTS["optimizer"][name].items():
        assert group[key] == (tuple(value) if isinstance(value, list) else value), key


def test_python_api_defaults_are_the_schemas():
    from mlpkit import Trainer
    from mlpkit.models.perceptron import PerceptronRule
    from mlpkit.training.pruning import MedianPruner

    assert make_activation("leaky_relu").negative_slope == OPTION_DEFAULTS["activation"]["leaky_relu"]["negative_slope"]
    assert make_activation("maxout").pieces == OPTION_DEFAULTS["activation"]["maxout"]["pieces"]
    assert Trainer(optimizer="sgd", device="cpu").lr is None  # resolved by make_optimizer: sgd's own 0.05
    assert PerceptronRule().lr == OPTION_DEFAULTS["model"]["perceptron"]["lr"]
    pruner = MedianPruner("nowhere")
    assert {"warmup_epochs": pruner.warmup_epochs, "min_completed": pruner.min_completed} \
        == OPTION_DEFAULTS["pruning"]["median"]
    opt = make_optimizer([torch.zeros(2, requires_grad=True)], "sgd")
    step = make_scheduler(opt, "step")
    assert (step.step_size, step.gamma) == (10, 0.5)
