"""Start-up: what a plain `python train.py` does not do (deterministic checks, no timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlpkit.app import cli

from mlpkit.app import config
from conftest import CONFIGS


class _NoCompose:
    """A stand-in Hydra whose compose_config must not be reached."""

    composed = 0

    def compose_config(self, **kwargs):
        self.composed += 1
        return None


@pytest.fixture
def get_mode(monkeypatch):
    """Hydra.get_mode as train.py installs it, with Hydra's own get_mode recorded instead of composing."""
    import hydra._internal.hydra as hydra_impl

    calls = []

    def original(self, config_name, overrides):
        calls.append(list(overrides))
        return "hydra's answer"

    monkeypatch.setattr(hydra_impl.Hydra, "get_mode", original)
    monkeypatch.setattr(config, "CONFIG_DIR", CONFIGS)
    cli.install_single_compose()
    patched = hydra_impl.Hydra.get_mode

    def ask(argv):
        monkeypatch.setattr("sys.argv", ["train.py", *argv])
        overrides = [a for a in argv if not a.startswith("-")]
        return patched(_NoCompose(), "train", overrides)

    return ask, calls


@pytest.mark.parametrize("argv", [[], ["trainer.max_epochs=1", "hydra.run.dir=/tmp/x"],
                                  ["optimizer=sgd", "activation=tanh", "experiment=xor"],
                                  ["-m", "optimizer=sgd,adam"], ["hydra/launcher=joblib", "-m", "seed=0,1"]])
def test_a_run_composes_its_config_once(get_mode, argv):
    ask, calls = get_mode
    assert ask(argv) is None
    assert calls == []  # Hydra's extra compose, only to read hydra.mode, did not happen


@pytest.mark.parametrize("argv", [["hydra.mode=MULTIRUN"], ["+hydra.mode=RUN"], ["hydra={mode:MULTIRUN}"],
                                  ["hydra.searchpath=[file:///tmp]"], ["-cd", "/tmp", "seed=1"],
                                  ["--config-name", "other"]])
def test_whatever_may_set_the_mode_is_left_to_hydra(get_mode, argv):
    ask, calls = get_mode
    assert ask(argv) == "hydra's answer"
    assert len(calls) == 1


def test_a_config_that_sets_the_mode_is_left_to_hydra(get_mode, tmp_path, monkeypatch):
    ask, calls = get_mode
    (tmp_path / "experiment").mkdir()
    (tmp_path / "train.yaml").write_text("seed: 0\n")
    (tmp_path / "experiment" / "sweep.yaml").write_text("# @package _global_\nhydra:\n  mode: MULTIRUN\n")
    monkeypatch.setattr(config, "CONFIG_DIR", Path(tmp_path))
    assert ask([]) == "hydra's answer"


def test_no_config_of_mlpkit_sets_the_mode(monkeypatch):
    monkeypatch.setattr(config, "CONFIG_DIR", CONFIGS)
    assert cli.mode_is_unset(["train.py", "trainer.max_epochs=1"], ["trainer.max_epochs=1"])
