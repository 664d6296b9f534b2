"""Who started this process, and as which of how many: torchrun's or SLURM's environment, and the
process group built from it.

    torchrun --nproc-per-node 2 train.py trainer.strategy=ddp     # RANK, WORLD_SIZE, MASTER_ADDR, ...
    srun -n 2 python train.py trainer.strategy=ddp                # SLURM_PROCID, SLURM_NTASKS, ...

SLURM's variables are read as Lightning's SLURMEnvironment reads them: the rank is SLURM_PROCID, the
world size the step's task count, the local rank SLURM_LOCALID, the address the first host of
SLURM_NODELIST and the port 15000 + the last four digits of SLURM_JOB_ID; MASTER_ADDR and MASTER_PORT,
where set, win (the tests put everything on 127.0.0.1). One process group serves the job: gloo for CPU
tensors and, on CUDA, nccl for device tensors ("cpu:gloo,cuda:nccl").
"""

from __future__ import annotations

import atexit
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Optional

# A collective that waits longer than this ends the job (a peer that hangs without dying; one that
# dies breaks the connection at once). Rank 0 alone claims the run directory and checks a resume's data
# file (a sha256 over the whole file) while the others wait in their first collective: hence minutes.
TIMEOUT_S = 300


@dataclass(frozen=True)
class Launch:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0  # its index on its machine (its GPU under nccl)
    world_size: int = 1
    address: str = "127.0.0.1"
    port: int = 0
    launcher: str = "none"  # torchrun | slurm | none

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `node[03-05,7],gpu1` -> node03."""
    head = re.match(r"[^,\[]*(\[[^\]]*\])?", nodelist.strip()).group(0)
    if "[" in head:
        prefix, ranges = head.split("[", 1)
        head = prefix + re.split(r"[-,]", ranges.rstrip("]"))[0]
    return head or "127.0.0.1"


def detect(env: Mapping[str, str] = os.environ) -> Launch:
    """torchrun's variables, else a SLURM step's, else one process."""
    if "RANK" in env and "WORLD_SIZE" in env:
        return Launch(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]),
                      env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", 29500)), "torchrun")
    # a SLURM step's tasks (srun, submitit): its own task count; a batch script alone is one process
    tasks = env.get("SLURM_STEP_NUM_TASKS") or (env.get("SLURM_NTASKS") if "SLURM_STEP_ID" in env else None)
    if "SLURM_PROCID" in env and tasks and env.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        job = env.get("SLURM_JOB_ID", "0")
        port = int(env.get("MASTER_PORT") or 15000 + int(job[-4:] or 0))
        address = env.get("MASTER_ADDR") or first_host(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_NODELIST", ""))
        return Launch(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(tasks), address, port, "slurm")
    return Launch()


def backend(device_type: str) -> str:
    """gloo for CPU tensors; on CUDA nccl for device tensors (gloo still carries the CPU flags)."""
    return "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"


def init_process_group(launch: Launch, device_type: str) -> Any:
    """Join the job's process group (once per process; later calls return it); destroyed at exit."""
    import torch.distributed as dist

    if dist.is_initialized():
        return dist.group.WORLD
    # under torchrun env:// joins the store its agent already serves on MASTER_PORT
    method = "env://" if launch.launcher == "torchrun" else f"tcp://{launch.address}:{launch.port}"
    dist.init_process_group(backend(device_type), init_method=method, rank=launch.rank, world_size=launch.world_size, timeout=timedelta(seconds=TIMEOUT_S))
    atexit.register(close_process_group)
    return dist.group.WORLD


def close_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # a peer already gone: nothing left to tear down politely
            pass


def broadcast_object(obj: Optional[Any], launch: Launch) -> Any:
    """Rank 0's `obj` on every rank (the run directory, or why there is none)."""
    import torch.distributed as dist

    box = [obj if launch.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
