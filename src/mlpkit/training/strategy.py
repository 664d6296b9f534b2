"""Where a run on several processes differs from one: the Strategy the Trainer asks (`trainer.strategy`).

The loop never asks for a rank. It asks the strategy for this process's `root_device`, calls `setup`
once the model, data and batch size are set, takes each batch's rows from `batch_rows`, calls
`reduce_gradients` after each backward pass (before the on_after_backward hooks, clipping and the
optimizer step), `batch_loss` for a logged step's loss, `sum` for the epoch's totals, `agree` after
each step's and each epoch's callbacks (every process then stops, or none; `stop_signal` is the signal
the SignalHandler acts on), and `barrier` once the
run's files are written (after on_train_end, before the test pass); callbacks that write files
(ModelCheckpoint, TensorBoard, EpochTime's scalar, Progress's log lines) write only where `is_writer`.
`Strategy` itself is one process: every call returns what it was given.

DDPStrategy (`trainer.strategy=ddp`) is data parallelism over the processes of a torchrun or SLURM job
(mlpkit.training.launch): every process holds the whole data set and the same model; the epoch's order
is the same everywhere (one seed), and each global batch of `trainer.batch_size` rows is cut into
contiguous shards, one per rank, as evenly as possible. Each rank's gradient of its shard's mean loss is
weighed by its share of the batch (rows, or class weights) and one all_reduce sums them: the mean over
the global batch, as one process computes it. Both backward paths reduce one flat buffer: the manual
chain rule's own (mlpkit.models.backprop), autograd's gradients flattened into one bucket (the one
bucket torch's DDP would make for a model this size, without wrapping the model). Validation and test
run whole on every rank (exact, and every rank then takes the same early-stopping decision).

A streamed table (data.stream=true, mlpkit.data.stream) is not held by any process: each reads its own
pieces of the epoch's shared order, takes split_sizes(batch)[rank] rows a step, and every process takes
the same number of steps, the most that all of them can fill (computed by each from the fitting pass's
counts of rows per piece, no communication); the global batch is always whole. Its val and test splits
are read in shares too (reads_share): the loss and accuracy sums are all_reduced, the test outputs
gathered and put back in file order, so the numbers are those of one process reading every row.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from mlpkit.errors import ConfigError, RunError
from mlpkit.registry import Registry
from mlpkit.status import RunStatus
from mlpkit.training.launch import Launch, backend, detect, init_process_group

if TYPE_CHECKING:
    from mlpkit.training.state import TrainState
    from mlpkit.training.trainer import Trainer

Rows = Union[slice, torch.Tensor]


class ProcessLost(RunError):
    """Another process of the job ended (killed, out of memory) or stopped answering."""


class Strategy:
    """One process on one device (the default)."""

    is_writer: bool = True  # this process writes checkpoints, logs and TensorBoard events
    rank: int = 0
    world_size: int = 1

    def root_device(self, device: torch.device) -> torch.device:
        """The device this process trains on, given trainer.device."""
        return device

    def setup(self, trainer: "Trainer") -> None:
        """Once trainer.model and trainer.data are on trainer.device and trainer.bs is set, before the
        first epoch."""

    def batch_rows(self, perm: Optional[torch.Tensor], start: int, stop: int) -> Tuple[slice, Rows]:
        """This process's part of the batch at positions [start, stop) of the epoch's order `perm`
        (None: the rows in order): (those positions, the rows of the data they hold)."""
        part = slice(start, stop)
        return part, (part if perm is None else perm[part])

    def epoch_rows(self, trainer: "Trainer", epoch: int) -> None:
        """Before a streamed split's epoch: its trainer.steps_per_epoch and trainer.n_seen (rows trained on)."""

    def stream_batches(self, trainer: "Trainer", X: Any, epoch: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        """This process's train batches of a streamed split (mlpkit.data.stream.StreamSplit) in `epoch`."""
        return X.batches(trainer.bs, epoch=epoch, steps=trainer.steps_per_epoch)

    def reads_share(self, X: Any) -> bool:
        """Whether this process evaluates only its share of split X (reads_share: its rows are
        `eval_batches`' and its sums go through `sum`, its outputs through `gather`)."""
        return False

    def eval_batches(self, X: Any, chunk: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        """A streamed split's (inputs, targets) batches that this process evaluates, in file order."""
        return X.batches(chunk)

    def gather(self, array: Any) -> List[Any]:
        """Every process's `array` (a numpy array), in rank order."""
        return [array]

    def reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        """After backward: make every process's `.grad` the gradient of the global batch's mean loss."""

    def batch_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The global batch's mean loss from this process's part's `loss`."""
        return loss

    def sum(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Each tensor summed over the processes."""
        return tensors

    def own_positions(self) -> Rows:
        """The positions of the epoch's order this process trained on (as batch_rows gave them)."""
        return slice(None)

    def stop_signal(self, trainer: "Trainer") -> Optional[int]:
        """The signal that stops the run once every process knows of it (here: as soon as it came)."""
        return trainer.stop_signal

    def agree(self, trainer: "Trainer", state: "TrainState", step: bool = False) -> None:
        """Make a stop decision (a status, a signal) taken on any process every process's: after each
        epoch's callbacks, and after each step's (`step`)."""

    def barrier(self) -> None:
        """Wait until every process got here."""


# when processes stopped for different reasons, the later one here wins (a signal over a divergence)
# Within an epoch they agree every SIGNAL_EVERY steps (a collective costs as much as a small step); only a
# signal can differ there (a logged step's loss is the whole batch's), and stop_signal() gives one only
# once every rank knows it.
SIGNAL_EVERY = 8
_STOPS = (RunStatus.RUNNING, RunStatus.PRUNED, RunStatus.EARLY_STOPPED, RunStatus.DIVERGED, RunStatus.INTERRUPTED)


class DDPStrategy(Strategy):
    """Data parallel training over the processes of a torchrun or SLURM job; rank 0 writes the run.

    Without a launcher (world size 1) it is one process, like Strategy."""

    def __init__(self, launch: Optional[Launch] = None):
        self.launch = launch or detect()
        self.rank, self.world_size = self.launch.rank, self.launch.world_size
        self.is_writer = self.rank == 0
        self.lost = False  # a peer is gone: no more collectives
        self.peers: List[Tuple[str, int]] = []  # (host, pid) of each rank
        self.share: Any = 1.0  # this rank's share of the current batch's loss weight
        self.rows = 0  # rows of the current batch on this rank
        self.positions: List[slice] = []
        self.signal: Optional[int] = None  # a signal every rank knows of (agree)

    def root_device(self, device: torch.device) -> torch.device:
        if device.type == "cuda" and self.world_size > 1:
            return torch.device("cuda", self.launch.local_rank % torch.cuda.device_count())
        return device

    def setup(self, trainer: "Trainer") -> None:
        if self.world_size == 1:
            trainer.log("trainer.strategy=ddp without torchrun or srun: training in one process (world size 1)")
            return
        import torch.distributed as dist

        self._sync_batch_norm(trainer)
        init_process_group(self.launch, trainer.device.type)
        self.peers = [None] * self.world_size  # type: ignore[list-item]
        self._collective(dist.all_gather_object, self.peers, (socket.gethostname(), os.getpid()))
        for tensor in trainer.model.state_dict().values():  # rank 0's weights everywhere (the same seed made them)
            self._collective(dist.broadcast, tensor, 0)
        if self.rank:  # dropout and input noise: each rank its own draws
            torch.manual_seed(trainer.seed + self.rank)
        self.y, self.weight, self.task = trainer.data.y_train, trainer.weight, trainer.task
        if not torch.is_tensor(trainer.data.X_train):
            return self._setup_stream(trainer)
        n, bs = len(trainer.data.X_train), trainer.bs
        last = n - (trainer.steps_per_epoch - 1) * bs
        split = " + ".join(str(k) for k in self.split_sizes(bs))
        tail = f" (the last batch, {last} rows: {' + '.join(map(str, self.split_sizes(last)))})" if last != bs else ""
        trainer.log(f"ddp: {self.world_size} processes ({self.launch.launcher}, {backend(trainer.device.type)}); "
                    f"trainer.batch_size is the global batch: {bs} rows per step = {split} by rank{tail}; "
                    "rank 0 writes the run")

    def _setup_stream(self, trainer: "Trainer") -> None:
        """A streamed table (data.stream=true): every process ran the same fitting pass (refused when
        their results differ: another file, or one that changed); each reads its own pieces; every
        epoch's steps are the ones all can fill (refused when a process has no train rows)."""
        import torch.distributed as dist

        X, bs, w = trainer.data.X_train, trainer.bs, self.world_size
        digests: List[Any] = [None] * w
        self._collective(dist.all_gather_object, digests, X.source.digest())
        if len(set(digests)) > 1:
            other = next(r for r, d in enumerate(digests) if d != digests[0])
            raise ConfigError(f"data.stream=true under trainer.strategy=ddp: rank {other} fitted another "
                              f"preprocessing than rank 0 on data.path={X.source.table.path!r} (not the same file "
                              "on every machine, or it changed while they read it)")
        sizes = self.split_sizes(bs)
        epochs = range(min(trainer.max_epochs, 1000))  # the log's range; each epoch computes its own
        steps = [X.steps(e, sizes) for e in epochs]
        if min(steps) == 0:
            e = steps.index(0)
            rows = X.rows_per_rank(e, w)
            r = int(next(r for r in range(w) if rows[r] < sizes[r]))
            raise ConfigError(f"data.stream=true under trainer.strategy=ddp: in epoch {e + 1} rank {r} reads "
                              f"{rows[r]} train rows from its {len(X.source.table.pieces(r, w, X.epoch_order(e)[1]))} "
                              f"of the table's {X.source.table.n_pieces} pieces, fewer than its {sizes[r]} rows per "
                              "step; use more row groups, fewer processes or a smaller trainer.batch_size")
        n = len(X)
        used = [k * bs for k in steps]
        rows = f"{used[0]}" if min(used) == max(used) else f"{min(used)} to {max(used)}"
        left = (f"; the rest are left over, other rows each epoch (the pieces and each process's "
                "last rows change with the epoch's order)") if min(used) < n else ""
        trainer.log(f"ddp: {w} processes ({self.launch.launcher}, {backend(trainer.device.type)}); "
                    f"trainer.batch_size is the global batch: {bs} rows per step = "
                    f"{' + '.join(map(str, sizes))} by rank; data.stream=true: each process fitted the same "
                    f"preprocessing and reads its own pieces (one in {w} of the epoch's order of the "
                    f"{X.source.table.n_pieces}); every process takes the steps all can fill: "
                    f"{steps[0] if min(steps) == max(steps) else f'{min(steps)} to {max(steps)}'} per epoch, "
                    f"{rows} of the {n} train rows{left}; val and test read in shares and summed; "
                    "rank 0 writes the run")

    def epoch_rows(self, trainer: "Trainer", epoch: int) -> None:
        if self.world_size > 1:
            trainer.steps_per_epoch = trainer.data.X_train.steps(epoch, self.split_sizes(trainer.bs))
            trainer.n_seen = max(1, trainer.steps_per_epoch * trainer.bs)

    def stream_batches(self, trainer: "Trainer", X: Any, epoch: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        if self.world_size == 1:
            return super().stream_batches(trainer, X, epoch)
        self.rows = self.split_sizes(trainer.bs)[self.rank]  # every step a whole global batch
        self.share = self.rows / trainer.bs
        return X.batches(self.rows, epoch=epoch, steps=trainer.steps_per_epoch, rank=self.rank,
                         world_size=self.world_size)

    def reads_share(self, X: Any) -> bool:
        return self.world_size > 1 and not torch.is_tensor(X)

    def eval_batches(self, X: Any, chunk: int) -> Iterable[Tuple[torch.Tensor, torch.Tensor]]:
        return X.batches(chunk, rank=self.rank, world_size=self.world_size)

    def gather(self, array: Any) -> List[Any]:
        if self.world_size == 1:
            return [array]
        import torch.distributed as dist

        parts: List[Any] = [None] * self.world_size
        self._collective(dist.all_gather_object, parts, array)
        return parts

    def _sync_batch_norm(self, trainer: "Trainer") -> None:
        """Batch statistics over the global batch (SyncBatchNorm, CUDA only); refused on CPU."""
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in trainer.model.modules()):
            return
        check_sync_batch_norm(True, trainer.device.type)
        nn.SyncBatchNorm.convert_sync_batchnorm(trainer.model)  # the same parameters: the optimizer keeps them

    def split_sizes(self, size: int) -> List[int]:
        """Rows of a batch of `size` per rank: as even as can be, the first ranks one more."""
        q, r = divmod(size, self.world_size)
        return [q + (i < r) for i in range(self.world_size)]

    def batch_rows(self, perm: Optional[torch.Tensor], start: int, stop: int) -> Tuple[slice, Rows]:
        if self.world_size == 1:
            return super().batch_rows(perm, start, stop)
        if start == 0:
            self.positions = []
        sizes = self.split_sizes(stop - start)
        lo = start + sum(sizes[:self.rank])
        part = slice(lo, lo + sizes[self.rank])
        rows = part if perm is None else perm[part]
        self.positions.append(part)
        self.rows = sizes[self.rank]
        if self.weight is None:
            self.share = self.rows / (stop - start)
        else:  # class weights: the batch's loss is a weighted mean, so weigh by class weight, not rows
            every = slice(start, stop) if perm is None else perm[start:stop]
            self.share = self.task.batch_weight(self.y[rows], self.weight) / self.task.batch_weight(self.y[every],
                                                                                                   self.weight)
        return part, rows

    def reduce_gradients(self, parameters: Iterable[torch.Tensor]) -> None:
        if self.world_size == 1:
            return
        import torch.distributed as dist

        params = list(parameters)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        flat = grads[0] if len(grads) == 1 else torch._utils._flatten_dense_tensors(grads)
        if self.rows:
            flat.mul_(self.share)
        else:  # an empty shard (a last batch smaller than the job): no gradient (its mean loss is NaN)
            flat.zero_()
        self._collective(dist.all_reduce, flat)
        if len(grads) > 1:
            for g, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
                g.copy_(reduced)

    def batch_loss(self, loss: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return loss
        import torch.distributed as dist

        total = loss * self.share if self.rows else torch.zeros_like(loss)
        self._collective(dist.all_reduce, total)
        return total

    def sum(self, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.world_size == 1:
            return tensors
        import torch.distributed as dist

        stacked = torch.stack([t.double() for t in tensors])  # float64: counts stay exact
        self._collective(dist.all_reduce, stacked)
        return tuple(s.to(t.dtype) for s, t in zip(stacked, tensors))

    def own_positions(self) -> Rows:
        if self.world_size == 1:
            return slice(None)
        return torch.cat([torch.arange(p.start, p.stop, device=self.y.device) for p in self.positions])

    def stop_signal(self, trainer: "Trainer") -> Optional[int]:
        return trainer.stop_signal if self.world_size == 1 else self.signal

    def agree(self, trainer: "Trainer", state: "TrainState", step: bool = False) -> None:
        if self.world_size == 1 or self.lost or (step and state.step % SIGNAL_EVERY):
            return
        import torch.distributed as dist

        # a CPU tensor (gloo, also beside nccl): no wait for the device
        mine = torch.tensor([_STOPS.index(state.status) if state.status in _STOPS else 0, trainer.stop_signal or 0])
        self._collective(dist.all_reduce, mine, dist.ReduceOp.MAX)
        code, signum = int(mine[0]), int(mine[1])
        if signum and self.signal is None:
            self.signal = signum  # the SignalHandler stops every rank at the next step
            trainer.stop_signal = trainer.stop_signal or signum
        if code > (_STOPS.index(state.status) if state.status in _STOPS else 0):
            what = f" ({signal.Signals(signum).name})" if _STOPS[code] == RunStatus.INTERRUPTED and signum else ""
            state.stop(_STOPS[code], f"{_STOPS[code]}{what} on another process of the job in epoch "
                       f"{state.epoch + 1}; last.pt holds epoch {state.epoch}")

    def barrier(self) -> None:
        if self.world_size > 1 and not self.lost:
            import torch.distributed as dist

            try:
                self._collective(dist.barrier)
            except ProcessLost:  # after training: this rank's files are written, its run is complete
                pass

    def _collective(self, fn: Any, *args: Any) -> Any:
        """A collective; a peer that is gone (or silent past launch.TIMEOUT_S) raises ProcessLost."""
        try:
            return fn(*args)
        except RuntimeError as err:  # gloo's and nccl's errors (DistBackendError, DistNetworkError)
            self.lost = True
            raise ProcessLost(self.lost_message(err)) from None

    def lost_message(self, err: BaseException) -> str:
        """Which rank ended, when it ran on this machine; else gloo's or nccl's own words."""
        host = socket.gethostname()
        here = [(r, pid) for r, (h, pid) in enumerate(self.peers or []) if h == host and r != self.rank]
        gone: List[str] = []
        for _ in range(30 if here else 0):  # its socket closes a moment before the process is gone
            gone = [f"rank {r} (pid {pid})" for r, pid in here if not _alive(pid)]
            if gone:
                break
            time.sleep(0.1)
        if gone:
            what = f"{', '.join(gone)} of the job ended"
        else:
            reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            what = f"another process of the job ended or stopped answering ({reason})"
        return f"rank {self.rank}: {what}; every process of the job stops"


def check_sync_batch_norm(batch_norm: bool, device_type: str) -> None:
    """ConfigError for batch norm on several CPU processes: its statistics must be over the global batch,
    which torch's SyncBatchNorm computes on CUDA only."""
    if batch_norm and device_type != "cuda":
        raise ConfigError("norm=batch under trainer.strategy=ddp needs CUDA: its statistics must be over the "
                          "global batch, and torch's SyncBatchNorm runs on CUDA only; use norm=layer or "
                          "norm=none on CPU")


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed child its launcher has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


STRATEGIES = Registry("trainer.strategy", {"auto": Strategy, "ddp": DDPStrategy})
