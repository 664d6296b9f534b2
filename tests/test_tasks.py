"""Each task's rules against trusted references: autograd for the gradient, torch's own losses,
torch's softmax/sigmoid for probabilities, scikit-learn for class weights and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlpkit.errors import ConfigError
from mlpkit.tasks import TASKS, classification_task, get_task


def _batch(task, n=37, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(n, task.out_dim(k), generator=g, dtype=torch.float64)
    if task.name == "multiclass":
        y = torch.randint(0, k, (n,), generator=g)
    elif task.name == "binary":
        y = torch.randint(0, 2, (n, 1), generator=g).double()
    else:
        y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return out, y


@pytest.mark.parametrize("name,weighted", [(name, weighted) for name in TASKS.names() for weighted in (False, True)
                                           if TASKS[name].classification or not weighted])
def test_output_grad_is_autograds(name, weighted):
    task = TASKS[name]
    out, y = _batch(task)
    weight = task.balanced_weights(y).double() if weighted else None
    z = out.clone().requires_grad_(True)
    reference = task.loss(weight)(z, y)
    reference.backward()
    loss, grad = task.output_grad(out.clone(), y, weight)
    torch.testing.assert_close(loss, reference.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, z.grad, rtol=1e-12, atol=1e-12)


def test_losses_are_torchs():
    out, y = _batch(TASKS["multiclass"])
    torch.testing.assert_close(TASKS["multiclass"].loss()(out, y), torch.nn.functional.cross_entropy(out, y))
    out, y = _batch(TASKS["binary"])
    torch.testing.assert_close(TASKS["binary"].loss()(out, y),
                               torch.nn.functional.binary_cross_entropy_with_logits(out, y))
    out, y = _batch(TASKS["regression"])
    torch.testing.assert_close(TASKS["regression"].loss()(out, y), torch.nn.functional.mse_loss(out, y))


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_balanced_weights_are_scikit_learns(name):
    from sklearn.utils.class_weight import compute_class_weight

    task = TASKS[name]
    y = torch.tensor([0, 0, 0, 1, 1, 0, 0, 1, 0, 0] if name == "binary" else [0, 2, 2, 1, 2, 2, 0, 2, 2, 2])
    labels = y.numpy()
    expected = compute_class_weight("balanced", classes=np.unique(labels), y=labels)
    got = task.balanced_weights(y.reshape(-1, 1).float() if name == "binary" else y)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_probabilities_and_decoding(name):
    task = TASKS[name]
    out, _ = _batch(task, k=5)
    out[0] = 800.0  # no overflow for large logits
    proba = task.probabilities(out.numpy())
    if name == "binary":
        p = torch.sigmoid(out[:, 0]).numpy()
        np.testing.assert_allclose(proba, np.stack([1 - p, p], 1), rtol=1e-12, atol=1e-15)
    else:
        np.testing.assert_allclose(proba, torch.softmax(out, 1).numpy(), rtol=1e-12, atol=1e-15)
    assert np.all(np.isfinite(proba))
    np.testing.assert_array_equal(task.decode(out.numpy()), proba.argmax(1))


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_accuracy_from_kept_predictions_equals_from_outputs(name):
    task = TASKS[name]
    out, y = _batch(task)
    buffer = task.prediction_buffer(len(out), "cpu")
    task.keep(buffer, out.float())
    assert int(task.correct(buffer, y if name == "multiclass" else y.float())) == int(task.correct(out, y))
    expected = (task.decode(out.numpy()) == y.reshape(-1).long().numpy()).sum()
    assert int(task.correct(out, y)) == expected


def test_regression_decodes_and_scores_in_target_units():
    from sklearn.metrics import mean_squared_error

    task = TASKS["regression"]
    out = np.array([[0.5], [-1.0], [2.0]], dtype=np.float32)
    np.testing.assert_allclose(task.decode(out, y_mean=10.0, y_std=4.0), [12.0, 6.0, 18.0])
    truth = task.target_units(np.array([[0.0], [-1.0], [1.0]], dtype=np.float32), 10.0, 4.0)
    m = task.metrics(truth, out, 10.0, 4.0)
    assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth.ravel(), [12.0, 6.0, 18.0])))
    assert task.stratify(np.zeros(3)) is None and task.standardizes_target()
    with pytest.raises(TypeError):
        task.probabilities(out)


def test_names_and_lookup():
    assert TASKS.names() == ["binary", "multiclass", "regression"]
    assert get_task("binary") is TASKS["binary"] and get_task(TASKS["binary"]) is TASKS["binary"]
    assert classification_task(2).name == "binary" and classification_task(3).name == "multiclass"
    assert str(TASKS["multiclass"]) == "multiclass"
    with pytest.raises(ConfigError, match="choose one of: binary, multiclass, regression"):
        get_task("ordinal")
