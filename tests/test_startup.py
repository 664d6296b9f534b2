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


PLUGIN_PROBE = """
import json, sys
if sys.argv[1] == "lazy":
    from mlpkit.app.plugin_scan import install_lazy_plugin_scan
    install_lazy_plugin_scan()
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from mlpkit.app import cli, config
from mlpkit.app.plugin_scan import DEFERRED

config.CONFIG_DIR = sys.argv[2]
Plugins.instance()
out = {"imported_at_scan": sorted(m for m in sys.modules if m.split(".")[1:2] and m.split(".")[1] in DEFERRED)}
for group in ("hydra/launcher", "hydra/sweeper", "hydra/sweeper/sampler"):
    out[group] = cli.hydra_group_options(group)
out["launchers"] = sorted(c.__name__ for c in Plugins.instance().discover(Launcher))
out["sweepers"] = sorted(c.__name__ for c in Plugins.instance().discover(Sweeper))
config.register_schema()
cli.register_resolvers()
with initialize_config_dir(config_dir=sys.argv[2], version_base="1.3"):
    for overrides in (["hydra/launcher=ray_cluster"], ["hparams_search=optuna"], ["hydra/launcher=joblib"]):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        out[" ".join(overrides)] = [cfg.hydra.launcher._target_, cfg.hydra.sweeper._target_]
print(json.dumps(out))
"""


def test_the_sweep_plugins_are_scanned_only_when_asked_for_and_then_as_hydra_scans_them(tmp_path):
    """train.py's plugin scan imports no module of the launcher and sweeper packages, and afterwards their
    configs, listings and classes are what Hydra's own scan (a fresh process without the patch) gives."""
    import json

    from support import run_python

    script = tmp_path / "probe.py"
    script.write_text(PLUGIN_PROBE)
    got = {mode: run_python(script, [mode, str(CONFIGS)], tmp_path, timeout=120) for mode in ("lazy", "hydra")}
    for res in got.values():
        assert res.returncode == 0, res.describe()
    lazy, hydra = (json.loads(got[mode].stdout.strip().splitlines()[-1]) for mode in ("lazy", "hydra"))
    assert lazy.pop("imported_at_scan") == []
    assert hydra.pop("imported_at_scan")  # the reference did import them: the probe can tell
    assert "joblib" in hydra["hydra/launcher"] and "JoblibLauncher" in hydra["launchers"]
    assert lazy == hydra


def test_the_collector_held_for_start_up_is_released_once_with_start_up_frozen(monkeypatch):
    """mlpkit.startup: hold() turns the collector off (train.py, predict.py, a launcher's job) and release() turns
    it back on with what start-up left frozen, once, and only after hold() turned it off; a program that imports
    mlpkit, or turned the collector off itself, keeps it as it is."""
    import gc

    from mlpkit import startup

    was = gc.isenabled()
    monkeypatch.setattr(startup, "_STATE", [""])
    try:
        gc.enable()
        frozen = gc.get_freeze_count()
        startup.release()  # not held: nothing
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        gc.disable()
        startup.hold()  # off already: the program's own choice is kept
        startup.release()
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
        gc.enable()
        startup.hold()
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]  # start-up's objects, alive to the end
        startup.release()
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
        gc.disable()
        startup.release()  # once
        assert not gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()


def test_a_run_in_this_process_gives_the_collector_back(tmp_path, monkeypatch):
    """train.py holds the collector off first thing; a run refused before its first epoch never turns it back on
    (its process ends), which train_in_process puts right, as it does for a run that trained."""
    import gc

    from conftest import train_in_process
    from mlpkit import startup

    monkeypatch.setattr(startup, "_STATE", [""])  # as in a fresh process: this run holds it
    refused = train_in_process(["optimizer=adamm"], tmp_path / "refused")
    assert refused.returncode == 2 and gc.isenabled() and startup._STATE == ["released"], refused.describe()
    monkeypatch.setattr(startup, "_STATE", [""])
    done = train_in_process(["data=xor", "trainer.max_epochs=1", "trainer.progress=false"], tmp_path / "done")
    assert done.returncode == 0 and gc.isenabled() and startup._STATE == ["released"], done.describe()


def test_a_sweep_job_in_a_launchers_process_holds_the_collector_once(monkeypatch):
    """hold(): in a process of a launcher the first job's start-up runs with the collector off until release();
    the process's next jobs (and train.py's own process, held already at its start) hold nothing."""
    import gc

    from mlpkit import startup

    was = gc.isenabled()
    monkeypatch.setattr(startup, "_STATE", [""])
    try:
        gc.enable()
        startup.hold()
        assert not gc.isenabled()
        startup.release()
        assert gc.isenabled()
        startup.hold()  # the process's next job: its imports are done
        assert gc.isenabled()
        monkeypatch.setattr(startup, "_STATE", [""])
        startup.hold()  # train.py's process: held at its start ...
        startup.hold()  # ... so its job holds nothing more
        startup.release()
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
