"""The chain-rule backward of mlpkit.models.backprop against autograd, for every layer type it covers."""

from __future__ import annotations

import pytest
import torch

from mlpkit import MLP, Trainer, load_dataset
from mlpkit.models.backprop import DERIVATIVES, ManualBackprop
from mlpkit.tasks import TASKS

COVERED = [name for name, cls in (("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh), ("sigmoid", torch.nn.Sigmoid),
                                  ("identity", torch.nn.Identity)) if cls in DERIVATIVES]
LOSSES = {"multiclass": torch.nn.CrossEntropyLoss(), "binary": torch.nn.BCEWithLogitsLoss(),
          "regression": torch.nn.MSELoss()}


def _targets(task: str, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if task == "multiclass":
        return torch.randint(0, 5, (n,), generator=g)
    if task == "binary":
        return torch.randint(0, 2, (n, 1), generator=g).double()
    return torch.randn(n, 3, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("task", list(LOSSES))
@pytest.mark.parametrize("activation", COVERED)
@pytest.mark.parametrize("hidden", [[], [16], [16, 8, 8]])
def test_gradients_equal_autograd(activation, task, hidden):
    torch.manual_seed(0)
    out_dim = {"multiclass": 5, "binary": 1, "regression": 3}[task]
    model = MLP(7, hidden, out_dim, activation=activation).double()
    x = torch.randn(33, 7, dtype=torch.float64)
    y = _targets(task, 33)
    loss = LOSSES[task](model(x), y)
    loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    manual_loss, out = ManualBackprop(model, task).step(x, y)
    assert torch.allclose(manual_loss, loss, rtol=1e-12, atol=1e-12)
    assert torch.allclose(out, model(x))
    for got, want in zip((p.grad for p in model.parameters()), expected):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(activation="elu"), dict(norm="batch"), dict(norm="layer"),
                                    dict(dropout=0.2), dict(activation="maxout"), dict(activation="prelu")])
def test_other_models_fall_back_to_autograd(kwargs):
    assert not ManualBackprop.supports(MLP(4, [8], 2, **kwargs))


def test_training_with_and_without_manual_backprop_agrees():
    """Same seed, same data: the float32 curves of both paths agree closely."""
    data = load_dataset("moons", n_samples=300, seed=0)
    curves = []
    for manual in (True, False):
        torch.manual_seed(0)
        model = MLP(data.in_dim, [16, 16], data.out_dim, activation="tanh")
        result = Trainer(optimizer="adam", lr=1e-2, max_epochs=5, batch_size=32, l2=1e-3, manual_backprop=manual,
                         handle_signals=False).fit(model, data)
        assert result.extra["backprop"] == ("manual" if manual else "autograd")
        curves.append(result.history["train_loss"])
    assert curves[0] == pytest.approx(curves[1], rel=1e-4)


def test_manual_backprop_steps_one_flat_tensor_that_the_layers_view():
    """The optimiser updates one buffer; every weight and bias of the model is a view of it."""
    data = load_dataset("moons", n_samples=200, seed=0)
    torch.manual_seed(0)
    model = MLP(data.in_dim, [8, 8], data.out_dim, activation="relu")
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(optimizer="adam", lr=1e-2, max_epochs=2, batch_size=32, handle_signals=False)
    result = trainer.fit(model, data)
    assert result.extra["backprop"] == "manual"
    params = list(model.parameters())
    storages = {p.untyped_storage().data_ptr() for p in params}
    grads = {p.grad.untyped_storage().data_ptr() for p in params}
    assert len(storages) == 1 and len(grads) == 1
    assert all(not torch.equal(a, b) for a, b in zip(before, params))  # every layer moved through the buffer
    assert result.history["train_loss"][-1] < result.history["train_loss"][0]


def test_manual_backprop_with_a_users_optimizer_keeps_its_parameters():
    """An optimiser made beforehand holds the model's own tensors: those are trained, not a flat copy."""
    data = load_dataset("moons", n_samples=200, seed=0)
    torch.manual_seed(0)
    model = MLP(data.in_dim, [8], data.out_dim, activation="tanh")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    result = Trainer(optimizer=opt, max_epochs=2, batch_size=32, handle_signals=False).fit(model, data)
    assert result.extra["backprop"] == "manual"
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("task", ["multiclass", "binary"])
@pytest.mark.parametrize("activation", COVERED)
def test_class_weighted_gradients_equal_autograd(activation, task):
    """trainer.class_weight: the manual path's weighted loss and gradients against autograd's on the
    trainer's own loss function (torch's weighted CrossEntropyLoss; a weighted mean of BCE terms)."""
    torch.manual_seed(0)
    out_dim = 5 if task == "multiclass" else 1
    model = MLP(7, [16, 8], out_dim, activation=activation).double()
    x = torch.randn(41, 7, dtype=torch.float64)
    y = _targets(task, 41)
    weight = TASKS[task].balanced_weights(y).double()
    loss = TASKS[task].loss(weight)(model(x), y)  # the loss the trainer's autograd path uses
    loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    manual_loss, _ = ManualBackprop(model, task, weight=weight).step(x, y)
    assert torch.allclose(manual_loss, loss, rtol=1e-12, atol=1e-12)
    for got, want in zip((p.grad for p in model.parameters()), expected):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    unweighted = LOSSES[task](model(x), y)
    assert not torch.allclose(unweighted, loss)  # the weights matter on these uneven labels



def test_balanced_class_weights_raise_minority_recall():
    """90/10 classes: weighting the loss finds more of the rare class than the plain loss does."""
    data = load_dataset("classification", n_samples=3000, n_features=6, noise=0.2, seed=0)
    keep = torch.cat([torch.nonzero(data.y_train[:, 0] == 0)[:, 0],
                      torch.nonzero(data.y_train[:, 0] == 1)[:, 0][:150]])
    data.X_train, data.y_train = data.X_train[keep], data.y_train[keep]
    recall = {}
    for weight in (None, "balanced"):
        torch.manual_seed(0)
        model = MLP(data.in_dim, [16], data.out_dim, activation="relu")
        result = Trainer(optimizer="adam", lr=1e-2, max_epochs=15, batch_size=64, class_weight=weight,
                         handle_signals=False).fit(model, data)
        cm = result.test["confusion_matrix"]
        recall[weight] = cm[1][1] / sum(cm[1])
    assert recall["balanced"] > recall[None] + 0.1, recall
