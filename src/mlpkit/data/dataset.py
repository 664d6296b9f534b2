"""`Dataset`: the three splits of a data set as tensors, and what was fitted to make them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from mlpkit.tasks import Task, get_task


@dataclass(frozen=True)
class InputLayout:
    """Where each kind of model input sits in a row of X: [numbers | other dense inputs | category codes].

    The first `numeric` inputs are continuous numbers (what numeric embeddings apply to); -1 = every input.
    The last len(categories) inputs are category codes, one per embedded column, each a whole number in
    [0, cardinality) stored as a float; the inputs between them (missing-value indicators, one-hot
    columns) are dense 0/1 inputs the model reads as they are. The default: every input a number.
    """

    numeric: int = -1
    categories: Tuple[int, ...] = ()  # the cardinality of each embedded category column, in input order

    def numbers(self, in_dim: int) -> int:
        """How many of `in_dim` inputs are continuous numbers."""
        return in_dim - len(self.categories) if self.numeric < 0 else self.numeric

    def to_json(self) -> Dict[str, Any]:
        return {"numeric": self.numeric, "categories": list(self.categories)}


@dataclass
class Dataset:
    """Three splits as tensors. y is (N, 1) float for binary and regression, (N,) long for multiclass."""

    name: str
    task: Task  # a name (str) is accepted and becomes its Task
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    feature_names: List[str] = field(default_factory=list)
    classes: List[str] = field(default_factory=list)  # label of each class index
    notes: List[str] = field(default_factory=list)  # things the log should tell the user
    y_mean: float = 0.0  # regression targets were standardised with these; metrics undo it
    y_std: float = 1.0
    warnings: List[str] = field(default_factory=list)  # things the user should act on
    preprocessing: Any = None  # mlpkit.data.preprocess.Preprocessing: applies the fitted transform to new rows
    rows: Dict[str, np.ndarray] = field(default_factory=dict)  # source row numbers of each split
    columns_table: str = ""  # the column table of a user's file, for the log
    layout: InputLayout = field(default_factory=InputLayout)  # which inputs are numbers, which category codes

    @property
    def in_dim(self) -> int:
        return self.X_train.shape[1]

    def __post_init__(self) -> None:
        self.task = get_task(self.task)  # a name given from Python becomes its Task

    @property
    def out_dim(self) -> int:
        if self.task.classification:
            return self.task.out_dim(len(self.classes))
        return 1 if self.y_train.dim() == 1 else self.y_train.shape[1]

    def target_range(self) -> Tuple[float, float]:
        """The train targets' range, in the model's units (regression: standardised)."""
        return float(self.y_train.min()), float(self.y_train.max())

    def train_inputs(self, columns: int) -> np.ndarray:
        """The first `columns` inputs of the train rows (what a model builder fits on, e.g. bin edges)."""
        return self.X_train[:, :columns].detach().cpu().numpy()

    def train_sample(self, columns: int) -> Tuple[np.ndarray, np.ndarray]:
        """train_inputs with the same rows' targets (tree-based bin edges fit on both)."""
        return self.train_inputs(columns), self.y_train.detach().cpu().numpy()

    @property
    def is_classification(self) -> bool:
        return self.task.classification

    def to(self, device: torch.device | str) -> "Dataset":
        """Move all six tensors to `device` (once; batches are then sliced there)."""
        for key in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
            setattr(self, key, getattr(self, key).to(device))
        return self

    def write_rows(self, fh) -> None:
        """splits.npz into the open file `fh`: the source rows of each split (np.load reads it)."""
        np.savez_compressed(fh, **self.rows)

    def describe(self) -> str:
        n = (len(self.X_train), len(self.X_val), len(self.X_test))
        kind = f"{self.task}, {len(self.classes)} classes" if self.is_classification else str(self.task)
        return f"{self.name}: {self.in_dim} features, {kind}; train/val/test = {n[0]}/{n[1]}/{n[2]} rows"


