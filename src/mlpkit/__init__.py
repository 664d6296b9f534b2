"""mlpkit: multi-layer perceptron experiments from configs, logged to TensorBoard.

Usable without Hydra:

    from mlpkit import MLP, Trainer, load_dataset
    data = load_dataset("moons", noise=0.3)
    model = MLP(data.in_dim, [32, 32], data.out_dim, activation="relu")
    result = Trainer(optimizer="adam", lr=1e-2, max_epochs=50).fit(model, data)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module; imported on first use so `import mlpkit` stays fast.
_EXPORTS = {
    "MLP": "mlpkit.models.mlp",
    "TabM": "mlpkit.models.tabm",
    "InputLayout": "mlpkit.data.dataset",
    "Maxout": "mlpkit.models.activations",
    "Step": "mlpkit.models.activations",
    "make_activation": "mlpkit.models.activations",
    "initialize": "mlpkit.models.initializers",
    "make_optimizer": "mlpkit.training.optim",
    "make_scheduler": "mlpkit.training.optim",
    "load_dataset": "mlpkit.data",
    "Dataset": "mlpkit.data",
    "Trainer": "mlpkit.training.trainer",
    "EarlyStopping": "mlpkit.training.trainer",
    "FitResult": "mlpkit.training.trainer",
    "Callback": "mlpkit.training.callbacks",
    "TrainState": "mlpkit.training.state",
    "TensorBoardLogger": "mlpkit.training.tblog",
    "load_checkpoint": "mlpkit.training.checkpoint",
    "ConfigError": "mlpkit.errors",
    "load_run": "mlpkit.predict",
    "Run": "mlpkit.predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mlpkit' has no attribute {name!r}")
