"""Distributed entry point: ``torchrun --nproc_per_node N -m visionrt.trainer train DATA --out RUN``.

Initialises the process group from torchrun's environment (NCCL on GPUs, gloo on CPUs), then runs
the ordinary ``visionrt train`` command: DistributedDataParallel, a DistributedSampler per epoch,
metrics gathered from every rank, and only rank 0 writing the run dir. Without torchrun it is the
same as ``visionrt train``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "--help", "-h"):
        sys.argv.insert(1, "train")
    from visionrt.cli import main as cli_main

    try:
        cli_main()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
