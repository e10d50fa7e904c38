"""``lfft train`` on several processes or machines, on PyTorch's own engine: torchrun, DDP, FSDP2.

    torchrun --nproc-per-node 4 -m lfft train --model ckpt/init --data splits/ --out ckpt/final
    lfft train --nproc 4 --model ckpt/init --data splits/ --out ckpt/final   # runs torchrun

Under torchrun (``WORLD_SIZE`` set), :func:`init` joins the process group (nccl on CUDA, gloo on
the CPU) and :class:`DistributedRun` takes the place of :class:`~lfft.model.train.Run`: the model
and the feedback head are wrapped together in DDP, or sharded with FSDP2 (``--fsdp``).

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
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lfft.config import TrainConfig
from lfft.errors import ConfigError
from lfft.model import checkpoint
from lfft.model.device import pick_device
from lfft.model.forward import ForwardOut, forward_batch
from lfft.model.head import FeedbackHead
from lfft.model.train import Run

Share = list[list[int] | None]  # a rank's micro-batches (example indices); None: a filler


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
        torch.cuda.set_device(local)  # plain "cuda" (what Run uses) is now this rank's GPU
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


def share(batches: Sequence[list[int]], rank: int, world: int) -> Share:
    """Rank ``rank``'s micro-batches: positions rank, rank + world, ...; every rank gets as many
    (``ceil(len / world)``), the missing ones as None."""
    n = -(-len(batches) // world) * world
    return [batches[i] if i < len(batches) else None for i in range(rank, n, world)]


class Joint(nn.Module):
    """The LM and the feedback head (None: not trained) as one module: one forward for DDP/FSDP."""

    def __init__(self, model: nn.Module, head: nn.Module | None):
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, batch) -> tuple[Any, ...]:
        out = forward_batch(self.model, self.head, batch)  # a tuple: DDP/FSDP find its tensors
        return out.token_logps, out.response_mask, out.fb_token_logits, out.fb_seq_logits


class DistributedRun(Run):
    """A :class:`~lfft.model.train.Run` on one rank: the hooks of ``Run`` made distributed."""

    def __init__(self, ctx: Context, *args: Any):
        from rich.console import Console

        self.ctx = ctx
        self.world = ctx.world
        self.writes = ctx.rank == 0
        self.console = None if self.writes else Console(stderr=True, quiet=True)
        self.joint: nn.Module | None = None
        self.ref_joint: nn.Module | None = None
        super().__init__(*args)
        self.info["distributed"] = {
            "world_size": ctx.world,
            "strategy": "fsdp" if ctx.fsdp else "ddp",
            "backend": dist.get_backend(),
        }

    def finish(self) -> None:
        """Write (rank 0), then leave the process group together; the run keeps only what
        :meth:`summary` needs (the wrapped modules hold the process group: freed first)."""
        super().finish()
        self.joint = self.ref_joint = self.model = self.ref = self.head = None
        self.optimizer = self.scheduler = self.params = None
        gc.collect()
        dist.barrier()  # rank 0 has written everything
        if self.ctx.owner:
            dist.destroy_process_group()

    # --- setup: wrap after the models are loaded and before the optimizer is made -------------

    def _load_models(self, resume_dir: Path | None) -> None:
        if not self.ctx.fsdp:
            super()._load_models(resume_dir)
            return
        device, self.device = self.device, torch.device("cpu")  # fully_shard moves the shards
        try:
            super()._load_models(resume_dir)
        finally:
            self.device = device

    def _optimizer(self) -> torch.optim.Optimizer:
        if not self.use_head:
            self.head.requires_grad_(False)
        self._model_cls = type(self.model)
        joint = Joint(self.model, self.head if self.use_head else None)
        if self.ctx.fsdp:
            self.joint = _fully_shard(joint, self.model, self.ctx)
            if self.ref is not None:  # frozen: its root is also freed after each forward
                self.ref_joint = _fully_shard(Joint(self.ref, None), self.ref, self.ctx, True)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.joint = DDP(joint, device_ids=ids, forward_sync_buffers=False)
        return super()._optimizer()  # FSDP: over the sharded parameters

    # --- the loop -----------------------------------------------------------------------------

    def _forward(self, batch) -> ForwardOut:
        return ForwardOut(*self.joint(batch))

    @torch.no_grad()
    def _ref_logps(self, batch) -> torch.Tensor:
        if self.ref_joint is None:
            return super()._ref_logps(batch)
        return self.ref_joint(batch)[0]

    def _share(self, batches: Sequence[list[int]]) -> Iterator[list[int] | None]:
        """This rank's micro-batches; gradients are synchronised on the last one only."""
        mine = share(batches, self.ctx.rank, self.world)
        for k, idx in enumerate(mine):
            last = k == len(mine) - 1
            if self.ctx.fsdp:
                self.joint.set_requires_gradient_sync(last)
                yield idx
            else:
                with nullcontext() if last else self.joint.no_sync():
                    yield idx

    def _all_sum(self, values: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(values)
        return values

    def _log(self, window) -> dict[str, Any]:
        """Sum the logging window over ranks first: the logged losses are those of all ranks."""
        self._all_sum(window.sums)
        counts = torch.tensor([window.n, window.tokens, window.positions], device=self.ctx.device)
        window.n, window.tokens, window.positions = self._all_sum(counts).tolist()
        if hasattr(window.grad_norm, "full_tensor"):  # FSDP: a DTensor
            window.grad_norm = window.grad_norm.full_tensor()
        return super()._log(window)

    def _validate(self) -> dict[str, Any]:
        row = super()._validate()
        if self.ctx.fsdp:  # forwards without a backward leave the root unit's weights gathered
            self.joint.reshard()
        return row

    # --- checkpoints: every rank gathers (FSDP), rank 0 writes ---------------------------------

    def _saved_parts(self) -> tuple[Any, FeedbackHead] | None:
        if not self.ctx.fsdp:
            return (self.model, self.head) if self.writes else None
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(self.joint, options=_full(cpu_offload=True))
        if not self.writes:
            return None
        with torch.device("meta"):  # no memory and no random init: the weights are assigned
            model = self._model_cls(self.model_config)
        model.load_state_dict(_part(state, "model."), assign=True)
        model.tie_weights()
        head = self.head
        if self.use_head:
            head = FeedbackHead.from_config(self.head.config)
            head.load_state_dict(_part(state, "head."))
        return model, head

    def _optimizer_state(self) -> dict[str, Any]:
        if not self.ctx.fsdp:
            return super()._optimizer_state()
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        full = get_optimizer_state_dict(self.joint, self.optimizer, options=_full(True))
        if not self.writes:
            return {}
        # torch's own Optimizer.state_dict() layout: the checkpoint resumes in any mode
        index = {name: i for i, name in enumerate(self._param_names())}
        return {
            "state": {index[n]: s for n, s in full["state"].items() if n in index},
            "param_groups": self.optimizer.state_dict()["param_groups"],
        }

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        if not self.ctx.fsdp:
            super()._load_optimizer(state)
            return
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        names = self._param_names()
        full = {
            "state": {names[i]: s for i, s in state["state"].items()},
            "param_groups": [
                {**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]
            ],
        }
        set_optimizer_state_dict(self.joint, self.optimizer, full, options=_full())

    def _param_names(self) -> list[str]:
        """Names (in ``self.joint``) of the optimizer's parameters, in the optimizer's order."""
        names = {id(p): n for n, p in self.joint.named_parameters()}
        return [names[id(p)] for g in self.optimizer.param_groups for p in g["params"]]

    def _load_weights(self, folder: Path) -> None:
        if not self.ctx.fsdp:
            super()._load_weights(folder)
            return
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        model = checkpoint.load_model(folder)
        state = {"model." + k: v for k, v in model.state_dict().items()}
        if self.use_head:
            head = checkpoint.load_head(folder)
            state.update({"head." + k: v for k, v in head.state_dict().items()})
        else:
            self.head.load(folder)
        set_model_state_dict(self.joint, state, options=_full())


def _full(cpu_offload: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload)


def _part(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _fully_shard(joint: Joint, model, ctx: Context, reshard_root: bool | None = None):
    """FSDP2: each transformer block (the model's ``_no_split_modules``) is one unit; the rest
    (embeddings, final norm, LM head, feedback head) is the root unit."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # forward_batch makes no in-place change to the outputs FSDP warns about
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    mesh = init_device_mesh(ctx.device.type, (ctx.world,))
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    return fully_shard(joint, mesh=mesh, reshard_after_forward=reshard_root)
