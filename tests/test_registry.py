"""Every registry (one per config group that chooses a builder) answers a name it does not know with the
one message, lists its options as configs/ does, and refuses a setting an option does not take."""

from __future__ import annotations

import pytest

from mlpkit import ConfigError
from mlpkit.app.config import registries
from mlpkit.registry import Registry, not_known

from conftest import group_options

REGISTRIES = registries()


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_unknown_name_is_one_line_naming_it_and_every_option(group):
    registry = REGISTRIES[group]
    with pytest.raises(ConfigError) as err:
        registry["no_such_option"]
    assert str(err.value) == (f"{group}='no_such_option' is not known; choose one of: "
                              f"{', '.join(sorted(registry))}")
    assert isinstance(err.value, KeyError)  # so `in` and .get() behave as on a dict
    assert "no_such_option" not in registry and registry.get("no_such_option") is None
    assert [] not in registry  # an unhashable value from a config is simply not a name


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_names_are_the_config_options(group):
    assert sorted(REGISTRIES[group].names()) == group_options(group)


@pytest.mark.parametrize("group", sorted(REGISTRIES))
def test_each_option_refuses_a_setting_it_does_not_take(group):
    registry = REGISTRIES[group]
    for name in registry:
        registry.check_settings(name, registry.settings(name))  # its own settings pass
        with pytest.raises(ConfigError, match=rf"^{group}\.bogus is not a setting of {group}={name}; it takes "):
            registry.check_settings(name, {"bogus": 1})


def test_nearest_name_is_suggested():
    assert not_known("optimizer", "adamx", ["adam", "adamw", "sgd"]).endswith("(did you mean adam?)")
    assert "did you mean" not in not_known("optimizer", "zzz", ["adam", "sgd"])


def test_settings_must_name_known_options():
    with pytest.raises(AssertionError):
        Registry("norm", {"none": None}, settings={"batch": ("eps",)})
