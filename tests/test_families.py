"""Model families as registry entries (mlpkit.models.families), the perceptron's rule inside the Trainer's loop,
the loop's contract with its callbacks (names, the best epoch they share, the strategy), and the
defaults the Trainer shares with the config schema."""

from __future__ import annotations

import inspect
import json
import math

import pytest
import torch

from mlpkit import MLP, ConfigError, Trainer, load_dataset
from mlpkit.training.callbacks import BestEpoch, Callback, EarlyStopping, adjust, replace
from mlpkit.models.families import FAMILIES
from mlpkit.models.mlp import MODELS
from mlpkit.models.perceptron import Perceptron, PerceptronRule
from mlpkit.training.strategy import Strategy
from mlpkit.training.tblog import TensorBoard
from mlpkit.training.trainer import default_callbacks

from conftest import compose_config, group_options, read_metrics, refusal

SMALL = ["data=moons", "data.n_samples=80", "trainer.max_epochs=3", "trainer.progress=false"]


# ---------------------------------------------------------------------------
# Every family's entry


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_has_a_config_and_builds_its_model_from_its_entry(name):
    assert name in group_options("model")
    family = FAMILIES[name]
    cfg = compose_config([*SMALL, f"model={name}"])
    data = load_dataset("moons", n_samples=80, seed=0)
    kwargs = family.model_kwargs(cfg, data)
    json.dumps(kwargs)  # model.json holds them
    model = MODELS[name](**kwargs).eval()  # what predict.py rebuilds, as it uses it
    assert isinstance(model, family.make) and model(data.X_val).shape == (len(data.X_val), data.out_dim)
    assert family.head(cfg, "cpu") and family.what


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_a_setting_of_a_group_the_family_does_not_use_is_refused(name):
    family = FAMILIES[name]
    for group in family.unused_groups:
        key = {"optimizer": "optimizer.lr=0.1", "scheduler": "scheduler.gamma=0.5", "activation": "activation.alpha=1",
               "init": "init.std=0.1", "norm": "norm.name=batch", "regularization": "regularization.l2=0.1",
               "embedding": "embedding.dim=4"}[group]
        assert key.split("=")[0] in refusal([f"model={name}", key]), (name, key)
    value = {"lr": "0.5", "k": "4", "category_dim": "8", "clamp_output": "false"}  # one good value of each
    for setting in family.settings:
        assert refusal([f"model={name}", f"model.{setting}={value[setting]}"]) == ""
    others = {s for n in FAMILIES for s in FAMILIES[n].settings} - set(family.settings)
    for setting in others:
        assert f"model.{setting} is a setting of" in refusal([f"model={name}", f"model.{setting}={value[setting]}"])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_what_the_entry_says_about_regression_and_resume_is_what_config_checks(name, tmp_path):
    family = FAMILIES[name]
    message = refusal([f"model={name}", "data=sine"])
    assert bool(message) == family.classifies_only
    if family.classifies_only:
        assert f"model={name} classifies" in message


def test_the_perceptron_refuses_hidden_layers_and_resume():
    assert "has no hidden layers" in refusal(["model=perceptron", "model.hidden=[4]"])
    cfg = compose_config(["model=perceptron"])
    cfg.resume = "/somewhere"
    from mlpkit.app.config import validate

    with pytest.raises(ConfigError, match="resume is not supported for model=perceptron"):
        validate(cfg)


# ---------------------------------------------------------------------------
# The perceptron rule in the Trainer's loop


def _reference_rule(X, labels, out_dim, epochs, seed, lr=1.0):
    """The textbook rule, row by row in the order the loop draws (a generator seeded seed + 1)."""
    w, b = torch.zeros(out_dim, X.shape[1]), torch.zeros(out_dim)
    gen, updates = torch.Generator().manual_seed(seed + 1), []
    for _ in range(epochs):
        n = 0
        for i in torch.randperm(len(X), generator=gen).tolist():
            x, t = X[i], int(labels[i])
            if out_dim == 1:
                guess = int(float(w[0] @ x + b[0]) > 0)
                if guess != t:
                    w[0] += lr * (t - guess) * x
                    b[0] += lr * (t - guess)
                    n += 1
            else:
                guess = int((w @ x + b).argmax())
                if guess != t:
                    w[t] += lr * x
                    b[t] += lr
                    w[guess] -= lr * x
                    b[guess] -= lr
                    n += 1
        updates.append(n)
        if n == 0:
            break
    return w, b, updates


@pytest.mark.parametrize("name, n_samples", [("moons", 60), ("iris", None)])
def test_the_perceptron_rule_matches_the_textbook_rule_row_for_row(name, n_samples):
    data = load_dataset(name, n_samples=n_samples, seed=0)
    model = Perceptron(data.in_dim, data.task.out_dim(len(data.classes)))
    result = Trainer(step_rule=PerceptronRule(), max_epochs=5, seed=3, device="cpu").fit(model, data)
    w, b, updates = _reference_rule(data.X_train, data.y_train.reshape(-1).long(), model.out_dim, 5, seed=3)
    assert result.history["updates"] == updates
    torch.testing.assert_close(model.linear.weight.detach(), w, rtol=0, atol=0)
    torch.testing.assert_close(model.linear.bias.detach(), b, rtol=0, atol=0)


@pytest.mark.parametrize("name, separable", [("and", True), ("or", True), ("nand", True), ("xor", False)])
def test_the_perceptron_converges_exactly_on_linearly_separable_truth_tables(name, separable):
    data = load_dataset(name, seed=0)
    model = Perceptron(data.in_dim, 1)
    result = Trainer(step_rule=PerceptronRule(), max_epochs=50, device="cpu").fit(model, data)
    assert result.extra == {"converged": separable} and result.status == "completed"
    assert set(result.history) - {"epoch_seconds"} == {"train_loss", "val_loss", "train_accuracy", "val_accuracy",
                                                        "updates"}  # no lr: the rule's step size is fixed
    assert (result.history["updates"][-1] == 0) == separable
    assert result.message.startswith("converged" if separable else "did not converge")
    # the 0-1 loss: the share of rows the step units get wrong
    wrong = float((model.predict(data.X_test) != data.y_test.reshape(-1).long()).float().mean())
    assert result.test["loss"] == wrong and result.test["accuracy"] == 1 - wrong
    assert result.history["train_accuracy"] == [1 - v for v in result.history["train_loss"]]
    assert result.kept == "last"


def test_a_signal_stops_the_perceptron_after_its_row_saying_to_run_it_again():
    import signal

    class SignalAt(Callback):
        def on_step_end(self, trainer, state, loss):
            assert loss is None  # the rule has no per-step loss
            if state.step == 6:
                trainer.stop_signal = signal.SIGTERM

    data = load_dataset("xor", seed=0)
    result = Trainer(step_rule=PerceptronRule(), max_epochs=50, handle_signals=False,
                     callbacks=[SignalAt()]).fit(Perceptron(data.in_dim, 1), data)
    assert (result.status, result.epochs_run, result.test) == ("interrupted", 1, {})
    assert result.message == "interrupted in epoch 2; a perceptron run is short: run it again"


def test_the_perceptron_rule_refuses_a_regression_target():
    data = load_dataset("sine", n_samples=50, seed=0)
    with pytest.raises(ConfigError, match="classifies"):
        Trainer(step_rule=PerceptronRule(), max_epochs=1).fit(Perceptron(data.in_dim, 1), data)


# ---------------------------------------------------------------------------
# The loop's contract: callbacks by name, the best epoch, the strategy


def test_callbacks_replace_the_built_in_of_their_name_and_join_before_the_checkpoint():
    names = [cb.name for cb in default_callbacks()]
    assert len(set(names)) == len(names)

    class Mine(Callback):
        pass

    es, tb = EarlyStopping(patience=3), TensorBoard(histogram_every=0)
    trainer = Trainer(callbacks=[es, Mine(), tb])
    got = [cb.name or type(cb).__name__ for cb in trainer.callbacks]
    assert got == [*names[:names.index("checkpoint")], "Mine", *names[names.index("checkpoint"):]]
    assert trainer.callback("best_epoch") is es and trainer.callback("tensorboard") is tb
    fewer = replace(trainer.callbacks, "progress", None)
    assert trainer.callback("progress") is not None and "progress" not in [cb.name for cb in fewer]
    quiet = adjust(trainer.callbacks, {"tensorboard": {"boundary_every": 0}, "pruning": None})
    assert tb.boundary_every == 0 and "pruning" not in [cb.name for cb in quiet]
    with pytest.raises(KeyError, match="no callback named 'bogus'"):
        replace(trainer.callbacks, "bogus", None)


def test_the_best_epoch_is_the_best_epoch_callbacks_and_last_pt_keeps_its_record(tmp_path):
    data = load_dataset("moons", n_samples=120, noise=0.2, seed=0)
    trainer = Trainer(optimizer="adam", lr=1e-2, max_epochs=4, device="cpu", run_dir=tmp_path)
    result = trainer.fit(MLP(data.in_dim, [8], data.out_dim), data)
    best = trainer.best
    assert isinstance(best, BestEpoch) and result.best_epoch == best.epoch
    assert best.val_loss == min(result.history["val_loss"]) == result.best_val_loss
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["best"] == best.record() and last["best"]["epoch"] == best.epoch
    for k, v in best.weights.items():
        assert torch.equal(last["best_model"][k], v)


class Recording(Strategy):
    def __init__(self, writer=True):
        self.is_writer, self.reduced, self.barriers, self.set_up = writer, 0, 0, 0

    def setup(self, trainer):
        self.set_up += 1

    def reduce_gradients(self, parameters):
        assert all(p.grad is not None for p in parameters)
        self.reduced += 1

    def barrier(self):
        self.barriers += 1


@pytest.mark.parametrize("writer", [True, False])
def test_the_strategy_reduces_each_steps_gradients_and_only_its_writer_writes(tmp_path, writer):
    from mlpkit import TensorBoardLogger

    data = load_dataset("moons", n_samples=120, noise=0.2, seed=0)
    strategy = Recording(writer)
    logger = TensorBoardLogger(tmp_path / "tb")
    try:
        result = Trainer(optimizer="sgd", lr=0.1, max_epochs=2, batch_size=32, device="cpu", strategy=strategy,
                         run_dir=tmp_path, logger=logger).fit(MLP(data.in_dim, [4], data.out_dim), data)
    finally:
        logger.close()
    assert strategy.reduced == 2 * result.extra["steps_per_epoch"] and strategy.barriers == strategy.set_up == 1
    assert (tmp_path / "checkpoints" / "last.pt").is_file() == writer
    from conftest import read_events

    assert bool(read_events(tmp_path / "tb").scalars) == writer


# ---------------------------------------------------------------------------
# early_stopping=none: its monitor and mode still pick the best epoch


def test_early_stopping_none_monitor_picks_the_best_epoch(tmp_path):
    from mlpkit.app.build import build_best_epoch
    from mlpkit.app.cli import train_from_config

    args = ["data=moons", "data.n_samples=150", "model.hidden=[4]", "optimizer=sgd", "optimizer.lr=0.5",
            "trainer.max_epochs=8", "trainer.batch_size=8", "trainer.progress=false", "early_stopping=none",
            "early_stopping.monitor=val_accuracy"]
    cfg = compose_config(args)
    best = build_best_epoch(cfg)
    assert type(best) is BestEpoch and (best.monitor, best.mode) == ("val_accuracy", "max")
    train_from_config(cfg, tmp_path)
    metrics = read_metrics(tmp_path)
    accuracy = metrics["history"]["val_accuracy"]
    assert metrics["best_epoch"] == accuracy.index(max(accuracy)) + 1  # the first epoch with the best accuracy
    assert metrics["best_val_accuracy"] == max(accuracy) and metrics["status"] == "completed"
    assert "val_accuracy" in refusal(["data=sine", *args[1:]])  # a regression target has no accuracy


def test_the_perceptron_takes_the_monitor_but_never_stops_early():
    from mlpkit.app.build import build_best_epoch

    best = build_best_epoch(compose_config(["model=perceptron", "early_stopping.monitor=val_accuracy"]))
    assert type(best) is BestEpoch and best.mode == "max"


# ---------------------------------------------------------------------------
# One home for the defaults


def test_the_trainers_defaults_are_the_config_schemas():
    from mlpkit.schema import OptimizerConfig, RegularizationConfig, SchedulerConfig, TrainConfig, TrainerConfig

    defaults = {k: p.default for k, p in inspect.signature(Trainer).parameters.items()}
    schema = {"optimizer": OptimizerConfig.name, "scheduler": SchedulerConfig.name,
              "max_epochs": TrainerConfig.max_epochs, "batch_size": TrainerConfig.batch_size,
              "device": TrainerConfig.device, "log_every_n_steps": TrainerConfig.log_every_n_steps,
              "manual_backprop": TrainerConfig.manual_backprop, "clip_grad_norm": TrainerConfig.clip_grad_norm,
              "clip_grad_value": TrainerConfig.clip_grad_value, "l1": RegularizationConfig.l1,
              "l2": RegularizationConfig.l2, "input_noise": RegularizationConfig.input_noise,
              "seed": TrainConfig.seed}
    assert {k: defaults[k] for k in schema} == schema
    assert defaults["lr"] is None  # the optimizer's own (mlpkit.schema.option_default): adam's OptimizerConfig.lr
    assert defaults["class_weight"] in (None, TrainerConfig.class_weight)
    assert math.isclose(PerceptronRule().lr, 1.0)
