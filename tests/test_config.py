"""Every option file of every config group composes with the schema and passes validate();
the groups offer what the contract names and what the registries implement."""

from __future__ import annotations

import re

import pytest

from mlpkit import ConfigError
from mlpkit.models.activations import ACTIVATIONS
from mlpkit.app.config import validate
from mlpkit.data import DATASETS
from mlpkit.models.initializers import INITIALIZERS
from mlpkit.models.mlp import MODELS, NORMS
from mlpkit.training.optim import OPTIMIZERS, SCHEDULERS

from conftest import CONTRACT_OPTIONS, GROUPS, compose_config, good_csv, group_options

GROUP_OPTIONS = [(g, o) for g in GROUPS for o in group_options(g)]
REGISTRIES = {"data": DATASETS, "model": MODELS, "activation": ACTIVATIONS, "init": INITIALIZERS,
              "norm": NORMS, "optimizer": OPTIMIZERS, "scheduler": SCHEDULERS,
              "early_stopping": ("val_loss", "none")}


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory):
    return str(good_csv(tmp_path_factory.mktemp("cfg") / "data.csv"))


def test_default_config_composes_and_validates():
    cfg = compose_config([])
    validate(cfg)
    assert cfg.data.name == "digits" and cfg.model.name == "mlp" and cfg.optimizer.name == "adam"
    assert cfg.trainer.device == "auto" and cfg.trainer.batch_size == 64


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_and_validates(group, option, csv_path):
    overrides = [f"{group}={option}"]
    if (group, option) == ("data", "csv"):
        overrides.append(f"data.path={csv_path}")
    cfg = compose_config(overrides)
    validate(cfg)
    assert cfg[group].name == option, "an option file's `name` must be its file name"


@pytest.mark.parametrize("group", GROUPS)
def test_group_offers_the_contract_options(group):
    missing = sorted(set(CONTRACT_OPTIONS[group]) - set(group_options(group)))
    assert not missing, f"configs/{group}/ lacks the contract's option(s) {missing}"


@pytest.mark.parametrize("group", GROUPS)
def test_group_options_match_the_registry(group):
    options, names = set(group_options(group)), set(REGISTRIES[group])
    assert options - names == set(), f"configs/{group}/ has options the code does not know"
    assert names - options == set(), f"registered {group} names without a configs/{group}/<name>.yaml"


# Bad values the CLI tests (test_errors.py) do not already cover, checked in-process (cheaper).
@pytest.mark.parametrize("override, needle", [
    ("optimizer.lr=0", "optimizer.lr"),
    ("trainer.batch_size=-2", "trainer.batch_size"),
    ("regularization.l1=-1", "regularization.l1"),
    ("regularization.input_noise=-1", "regularization.input_noise"),
    ("data.val_fraction=0.9", "data.val_fraction"),
    ("seed=-1", "seed"),
    ("init.std=0", "init.std"),
    ("scheduler.gamma=0.5", "scheduler.gamma"),  # scheduler=none takes no settings
    ("early_stopping.monitor=val_acc", "val_acc"),
    ("optimizer.momentum=0.9", "optimizer.momentum"),  # adam (the default) takes no momentum
])
def test_validate_names_the_bad_value(override, needle):
    cfg = compose_config([override])
    with pytest.raises(ConfigError, match=re.escape(needle)):
        validate(cfg)


@pytest.mark.parametrize("overrides", [
    "data.path=/home/me/data/file.csv,optimizer=adam",
    ",".join(f"model.hidden=[{','.join(['512'] * 40)}]" for _ in range(3)),
    "data.path=" + "/dir/ünïcödé" * 40,
])
def test_run_directory_names_are_one_short_component(overrides):
    from mlpkit.app.cli import run_name

    name = run_name("12-00-00", overrides)
    assert "/" not in name and "\x00" not in name
    assert len(name.encode()) <= 255
    name.encode().decode()  # whole characters, no cut multi-byte sequence
    assert name.startswith("12-00-00_")
    if len(overrides.encode()) > 255:
        # shortened with a hash: two long names that differ only at the end stay apart
        assert run_name("12-00-00", overrides + "x") != name
