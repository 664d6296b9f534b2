"""Where a run on several processes would differ from one: the Strategy the Trainer asks.

The loop never asks for a rank. It calls `setup` once the model and data are on the device,
`reduce_gradients` after each backward pass (before the on_after_backward hooks, clipping and the
optimizer step) and `barrier` once the run's files are written (after on_train_end, before the test
pass); callbacks that write files (ModelCheckpoint, TensorBoard, EpochTime's scalar, Progress's log
lines) write only where `is_writer`. `Strategy` itself is one process: every call a no-op.

A data-parallel strategy (torch DDP) would start the process group and shard the train split in
`setup`, all-reduce (average) the gradients in `reduce_gradients`, be the writer on rank 0 only, and
wait on the process group in `barrier`; the val and test numbers would then need a reduction too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import torch

if TYPE_CHECKING:
    from mlpkit.training.trainer import Trainer


class Strategy:
    """One process on one device (the default)."""

    is_writer: bool = True  # this process writes checkpoints, logs and TensorBoard events

    def setup(self, trainer: "Trainer") -> None:
        """Once trainer.model and trainer.data are on trainer.device, before the first epoch."""

    def reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        """After backward: make every process's `.grad` the same (their mean over the processes)."""

    def barrier(self) -> None:
        """Wait until every process got here."""
