"""``lfft train`` on several processes or machines, on PyTorch's own engine: torchrun, DDP, FSDP2.

    torchrun --nproc-per-node 4 -m lfft train --model ckpt/init --data splits/ --out ckpt/final
    lfft train --nproc 4 --model ckpt/init --data splits/ --out ckpt/final   # runs torchrun

Under torchrun (``WORLD_SIZE`` set), :func:`init` joins the process group (nccl on CUDA, gloo on
the CPU) and :func:`wrap` wraps the :class:`~lfft.model.feedback_lm.FeedbackLM` (the LM and the
feedback head together) in DDP, or shards it with FSDP2 (``--fsdp``). The training loop
(:func:`lfft.model.train.train`) is the single-process one with a few explicit points: this
rank's :func:`share` of each step, :func:`grad_sync` on the last micro-batch only, the logged
sums all-reduced (:func:`all_sum`), and the checkpoint functions gathering FSDP's shards.

The data is split by micro-batch. Every rank builds the same epoch plan from the seed; an
optimizer step takes the plan's next ``grad_accum * world_size`` micro-batches and rank r
computes those at positions r, r + world, r + 2 world, ... Each micro-batch's loss is exactly
the single-process one (its token means never span ranks); gradients are scaled by
``world / micro-batches in the step`` and DDP/FSDP average them over ranks, so a step is the
single-process step with ``grad_accum * world_size`` micro-batches. When a step has fewer
micro-batches than that (the end of an epoch), ranks left without one run a filler whose loss is
multiplied by 0: every rank runs as many forward/backward passes, as the collectives need.
Only rank 0 prints and writes files.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lfft.config import TrainConfig
from lfft.errors import ConfigError
from lfft.model.device import pick_device
from lfft.model.feedback_lm import FeedbackLM, is_sharded


@dataclass(frozen=True)
class Context:
    """This process's place in the job."""

    world: int
    rank: int
    local_rank: int
    device: torch.device
    fsdp: bool
    owner: bool = True  # lfft joined the process group (and leaves it at the end)


def under_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ


def init(cfg: TrainConfig) -> Context | None:
    """Join the process group under torchrun; None in a plain single-process run."""
    if not under_torchrun():
        if cfg.fsdp:
            raise ConfigError("--fsdp shards over several processes: add --nproc N or use torchrun")
        return None
    if cfg.fsdp and cfg.lora:
        raise ConfigError("--fsdp with --lora is not supported: leave out --fsdp (DDP) for LoRA")
    if cfg.fsdp and cfg.precision == "fp16":
        raise ConfigError("--fsdp with --precision fp16 is not supported: use bf16 or fp32")
    world, rank, local = (int(os.environ[k]) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))
    device = pick_device(cfg.device)
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"--device {cfg.device}: under torchrun each process uses cuda:LOCAL_RANK; "
                "pass --device cuda (or auto)"
            )
        torch.cuda.set_device(local)  # plain "cuda" (what training uses) is now this rank's GPU
        device = torch.device("cuda", local)
    owner = not dist.is_initialized()  # else the caller's group: used, and left to the caller
    if owner and device.type == "cuda":
        dist.init_process_group("nccl", device_id=device)
    elif owner:
        dist.init_process_group("gloo")
    return Context(world, rank, local, device, cfg.fsdp, owner)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """``lfft train --nproc N ...``: the same command on N local processes under torchrun.

    ``argv`` is the command line after the program name (a leading ``train`` is optional);
    ``--nproc`` is left out. Returns torchrun's exit code.
    """
    if under_torchrun():
        raise ConfigError("--nproc starts torchrun itself: leave it out under torchrun")
    args = list(argv)[1:] if list(argv)[:1] == ["train"] else list(argv)
    kept, skip = [], False
    for a in args:
        if skip or a.startswith("--nproc="):
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        kept.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "lfft", "train", *kept]
    return subprocess.call(cmd)


def info(ctx: Context) -> dict[str, object]:
    """What ``lfft.json`` records about the job."""
    strategy = "fsdp" if ctx.fsdp else "ddp"
    return {"world_size": ctx.world, "strategy": strategy, "backend": dist.get_backend()}


def wrap(
    model: FeedbackLM, ref: FeedbackLM | None, ctx: Context
) -> tuple[nn.Module, nn.Module | None]:
    """``(model, reference)`` for this job: DDP replicates the model (the reference stays a plain
    copy); FSDP2 shards both (the reference's root unit is also freed after each forward)."""
    if ctx.fsdp:
        return _fully_shard(model, ctx), None if ref is None else _fully_shard(ref, ctx, True)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(model, device_ids=ids, forward_sync_buffers=False), ref


def share(batches: Sequence[list[int]], rank: int, world: int) -> tuple[list[list[int]], bool]:
    """``(mine, filler)``: rank ``rank``'s micro-batches (positions rank, rank + world, ...) and
    whether it must run one more pass that adds nothing, so that every rank runs as many
    (``ceil(len / world)``)."""
    mine = list(batches[rank::world])
    return mine, len(mine) < -(-len(batches) // world)


def grad_sync(model: nn.Module, last: bool) -> AbstractContextManager:
    """Around a micro-batch's forward and backward: gradients are synchronised over ranks on the
    step's ``last`` micro-batch only (DDP ``no_sync``, FSDP ``set_requires_gradient_sync``)."""
    if is_sharded(model):
        model.set_requires_gradient_sync(last)
    elif isinstance(model, nn.parallel.DistributedDataParallel) and not last:
        return model.no_sync()
    return nullcontext()


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over ranks (in place)."""
    dist.all_reduce(values)
    return values


def close(ctx: Context) -> None:
    """Leave the process group together, after rank 0 has written everything. The caller drops
    its wrapped modules first: they hold the process group."""
    gc.collect()
    dist.barrier()
    if ctx.owner:
        dist.destroy_process_group()


def _fully_shard(model: FeedbackLM, ctx: Context, reshard_root: bool | None = None):
    """FSDP2: each transformer block (the LM's ``_no_split_modules``) is one unit; the rest
    (embeddings, final norm, LM head, feedback head) is the root unit."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # forward_batch makes no in-place change to the outputs FSDP warns about
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(ctx.device.type, (ctx.world,))
    blocks = set(getattr(model.lm, "_no_split_modules", None) or ())
    for module in model.lm.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_root)
