"""``lfft train``: the joint loss L = L_M + lambda * L_F, in a loop written out (no Trainer).

    lfft train --model ckpt/init --data splits/ --out ckpt/final --objective kto

Reads ``splits/train.parquet`` (and ``val.parquet`` when present), starts from the checkpoint
``--model`` (which is also the frozen reference of kto/dpo), and writes a transformers-loadable
checkpoint to ``--out`` with ``metrics.parquet``; step checkpoints under
``out/checkpoints/step-N/`` let ``--resume`` continue exactly where a killed run stopped.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from lfft import __version__
from lfft.config import TrainConfig, as_dict
from lfft.errors import LfftError, NoUsableRows
from lfft.io import _hash_json, fingerprints, read_table, write_table
from lfft.model import checkpoint, defaults
from lfft.model.batching import (
    Example,
    collate,
    pack,
    pad_share,
    plan,
    plan_pad_share,
    use_packing,
)
from lfft.model.device import peak_memory_mb, pick_device, pick_dtype
from lfft.model.display import TrainDisplay
from lfft.model.forward import forward_batch, packing_works, unwrap
from lfft.model.objectives import (
    NEEDS_REFERENCE,
    LossSettings,
    TrainSet,
    build,
    check,
    feedback_loss,
    kto_weights,
    lm_loss,
)
from lfft.report import StageResult
from lfft.schemas import METRICS, SPLIT, make_metadata

ROW_COLUMNS = [
    "context",
    "prompt",
    "response",
    "target",
    "score",
    "label",
    "weight",
    "signal",
    "token_spans",
    "group_id",
]


@dataclass
class Progress:
    """Where a run stands; saved as JSON in every step checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    pos: int = 0  # next batch of the epoch's plan
    best: float | None = None  # best validation loss (early stopping)
    best_step: int | None = None
    bad_evals: int = 0
    stopped: bool = False  # early stopping fired
    tokens: int = 0  # useful (non-pad) tokens trained on
    positions: int = 0  # positions computed (padded or packed rows)
    train_seconds: float = 0.0  # time in training steps (not validation or saving)
    metrics: list[dict[str, Any]] = field(default_factory=list)


def train(
    model_dir: str | Path,
    data_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
) -> StageResult:
    """Train from the checkpoint ``model_dir`` on ``data_dir``'s splits into ``out``."""
    start = time.perf_counter()
    check(cfg.objective, cfg.feedback_loss)
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():
        raise LfftError("--out must be a new folder, not the --model checkpoint")
    # the one place where unset defaults (lr, warmup, lambda) are filled in, from the base
    cfg, chosen = defaults.resolve(cfg, checkpoint.read_info(model_dir))
    train_path, val_path = split_paths(data_dir)
    inputs = fingerprints([model_dir, train_path] + ([val_path] if val_path else []))
    run_id = _hash_json({"stage": "train", "config": as_dict(cfg), "inputs": inputs})
    if resume and _complete(out, run_id):
        return StageResult(stage="train", skipped=True, outputs={"checkpoint": out})
    steps = checkpoint.step_dirs(out) if resume else []
    from lfft.model import distributed  # (imports this module)

    ctx = distributed.init(cfg)  # under torchrun: this rank's place; None in a plain run
    if ctx is None or ctx.rank == 0:  # only rank 0 writes
        if not resume:
            shutil.rmtree(out / checkpoint.CHECKPOINTS, ignore_errors=True)
        (out / checkpoint.INFO_FILE).unlink(missing_ok=True)
    args = (model_dir, train_path, val_path, out, cfg, steps[-1] if steps else None)
    run = Run(*args) if ctx is None else distributed.DistributedRun(ctx, *args)
    run.info.update(inputs=inputs, fingerprint=run_id, **chosen.record())
    run.fit()
    run.finish()
    result = run.summary(time.perf_counter() - start)
    result.extra.update(chosen.summary())
    return result


def split_paths(data: str | Path) -> tuple[Path, Path | None]:
    """``(train, val)``: a splits folder's ``train.parquet`` / ``val.parquet``, or one file."""
    data = Path(data)
    if not data.exists():
        raise LfftError(f"{data}: no such splits folder or file")
    if data.is_file() or data.suffix == ".parquet":  # one split (a file or a folder of parts)
        return data, None
    train_path, val_path = data / "train.parquet", data / "val.parquet"
    if not train_path.exists():
        raise LfftError(f"{data}: no train.parquet (make it with `lfft split ... --out {data}`)")
    return train_path, val_path if val_path.exists() else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    table = read_table(path, columns=ROW_COLUMNS, schema=SPLIT, what=str(path))
    return table.to_pylist()


def _complete(out: Path, run_id: str) -> bool:
    info = out / checkpoint.INFO_FILE
    if not info.exists():
        return False
    data = json.loads(info.read_text(encoding="utf-8"))
    return bool(data.get("complete")) and data.get("fingerprint") == run_id


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def warmup_cosine(warmup: int, total: int):
    """lr multiplier at optimizer step s (0-based): linear warmup, then cosine down to 0."""

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / warmup
        progress = (s - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class Run:
    """One training run: the parts (model, head, reference, optimizer, data) and its loop.

    Under torchrun, :class:`lfft.model.distributed.DistributedRun` overrides the methods marked
    "hook" (and extends setup, logging, validation and finishing).
    """

    world = 1  # processes that share each optimizer step
    writes = True  # this process prints and writes files (rank 0)
    console = None  # the training display's rich Console (None: stderr)

    def __init__(self, model_dir, train_path, val_path, out, cfg: TrainConfig, resume_dir):
        self.cfg, self.out, self.model_dir = cfg, out, model_dir
        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.precision, self.device)
        seed_everything(cfg.seed)
        self._load_models(resume_dir)
        self.use_head = cfg.feedback_loss != "none" and cfg.lambda_ > 0
        self.max_length = min(
            cfg.max_length, getattr(self.model_config, "max_position_embeddings", None) or 1 << 30
        )
        self.trainset = self._examples(train_path)
        self.valset = self._examples(val_path) if val_path else None
        if self.valset is not None and not self.valset.examples:
            self.valset = None  # e.g. dpo without pairs in val.parquet
        if not self.trainset.examples:
            raise NoUsableRows(
                f"{train_path}: no rows usable by --objective {cfg.objective}"
                + (" (dpo needs pairs within a group_id)" if cfg.objective == "dpo" else "")
            )
        self.settings = self._loss_settings()
        self.packing = self._packing()
        self.plans: dict[int, list[list[int]]] = {}
        per_epoch = math.ceil(len(self._plan(0)) / (max(1, cfg.grad_accum) * self.world))
        self.total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
        self.optimizer = self._optimizer()
        warmup = min(cfg.warmup_steps, self.total // 2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, self.total)
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        self.prog = Progress()
        self.info = self._info()
        if resume_dir is not None:
            self._restore(resume_dir)

    # --- setup --------------------------------------------------------------------------

    def _load_models(self, resume_dir: Path | None) -> None:
        cfg, device = self.cfg, self.device
        self.tokenizer = checkpoint.load_tokenizer(self.model_dir)
        weights = resume_dir if resume_dir is not None and not cfg.lora else self.model_dir
        self.model = checkpoint.load_model(weights, device)
        self.head = checkpoint.load_head(resume_dir or self.model_dir, device)
        self.model_config = self.model.config
        if cfg.lora:
            self.model = _with_lora(self.model, cfg, resume_dir)
        if cfg.grad_checkpointing:
            unwrap(self.model).gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        if cfg.compile:
            unwrap(self.model).base_model.compile(dynamic=True)
        self.model.train()
        self.head.train()
        self.ref = None
        if cfg.objective in NEEDS_REFERENCE and not cfg.lora:
            self.ref = checkpoint.load_model(self.model_dir, device).eval().requires_grad_(False)

    def _examples(self, path: Path) -> TrainSet:
        rows = read_rows(path)
        return build(
            self.tokenizer, rows, self.cfg.objective, self.max_length, self.cfg.max_pairs_per_group
        )

    def _loss_settings(self) -> LossSettings:
        cfg = self.cfg
        w_d, w_u = cfg.desirable_weight or 1.0, cfg.undesirable_weight or 1.0
        if cfg.objective == "kto":
            labels = [e.label for e in self.trainset.examples]
            w_d, w_u = kto_weights(
                sum(x == 1 for x in labels),
                sum(x == 0 for x in labels),
                cfg.desirable_weight,
                cfg.undesirable_weight,
            )
        return LossSettings(
            cfg.objective,
            cfg.feedback_loss,
            cfg.lambda_,
            beta=cfg.beta,
            alpha=cfg.unlikelihood_alpha,
            desirable_weight=w_d,
            undesirable_weight=w_u,
        )

    def _plan(self, epoch: int) -> list[list[int]]:
        """The batches of an epoch: a pure function of (examples, config, seed, epoch)."""
        if epoch not in self.plans:
            self.plans = {
                epoch: plan(
                    [len(e) for e in self.trainset.examples],
                    self.cfg.batch_size,
                    self.cfg.batch_tokens,
                    shuffle=True,
                    seed=self.cfg.seed + epoch,
                    group=self.trainset.group,
                    packed=self.packing,
                )
            }
        return self.plans[epoch]

    def _packing(self) -> bool:
        """``--packing`` resolved for this data (``auto``: by the pad share of padded batches);
        ``on`` for a model that cannot keep packed examples apart is an error."""
        mode, cfg = self.cfg.packing, self.cfg
        lengths = [len(e) for e in self.trainset.examples]
        padded = plan(
            lengths, cfg.batch_size, cfg.batch_tokens, True, cfg.seed, self.trainset.group
        )
        self.padded_share = plan_pad_share(lengths, padded)
        if not use_packing(mode, self.padded_share):
            return False
        if packing_works(self.model):
            return True
        if mode == "on":
            name = type(unwrap(self.model)).__name__
            raise LfftError(
                f"--packing on: {name} lets packed examples attend to each other; use --packing off"
            )
        return False

    def _batch(self, examples: list[Example]):
        """One micro-batch on the device: packed rows or length-grouped padding."""
        pad = self.tokenizer.pad_token_id
        batch = pack(examples, pad, self.max_length) if self.packing else collate(examples, pad)
        return batch.to(self.device)

    def _optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.use_head:
            params += list(self.head.parameters())
        else:
            self.head.requires_grad_(False)  # lambda = 0: the head is left exactly as it was
        self.params = params
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": self.cfg.weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        fused = True if self.device.type == "cuda" else None
        return torch.optim.AdamW(groups, lr=self.cfg.lr, fused=fused)

    def _info(self) -> dict[str, Any]:
        counts = {"train_" + k: v for k, v in self.trainset.counts.items()}
        if self.valset:
            counts.update({"val_" + k: v for k, v in self.valset.counts.items()})
        base = checkpoint.read_info(self.model_dir)
        return {
            "stage": "train",
            "version": __version__,
            "base": base.get("base"),
            "start": {
                "path": str(self.model_dir),
                "stage": base.get("stage"),
                "step": base.get("step"),
            },
            "config": as_dict(self.cfg),
            "counts": counts,
            "trust_remote_code": base.get("trust_remote_code", False),
            "loss": asdict(self.settings),
            "packing": self.packing,
        }

    def _restore(self, folder: Path) -> None:
        tensors, progress = checkpoint.read_state(folder)  # CPU: load_state_dict moves states
        self._load_optimizer(tensors["optimizer"])
        self.scheduler.load_state_dict(tensors["scheduler"])
        if self.scaler is not None and "scaler" in tensors:
            self.scaler.load_state_dict(tensors["scaler"])
        self.prog = Progress(**progress)
        self._rng = tensors["rng"]

    # --- the loop -----------------------------------------------------------------------

    def fit(self) -> None:
        cfg, prog = self.cfg, self.prog
        if getattr(self, "_rng", None) is not None:
            checkpoint.set_rng_state(self._rng)  # last: loading models may draw random numbers
        window = _Window(self.device)
        with TrainDisplay(self.total, prog.step, self.console) as display:
            while prog.step < self.total and not prog.stopped:
                self._train_step(window)
                display.advance(prog.step)
                last = prog.step == self.total
                logged = prog.step % max(1, cfg.log_every) == 0 or last
                if logged:
                    display.log(self._log(window))
                paused = time.perf_counter()
                if self.valset and cfg.eval_every > 0 and (prog.step % cfg.eval_every == 0 or last):
                    display.log(self._validate())
                if cfg.save_every > 0 and prog.step % cfg.save_every == 0 and not last:
                    self._save_step()
                if logged:
                    window.restart()
                else:  # validation and saving do not count as training time
                    window.start += time.perf_counter() - paused

    def _train_step(self, window: _Window) -> None:
        """One optimizer step over ``grad_accum`` micro-batches (per process)."""
        prog, examples = self.prog, self.trainset.examples
        batches = self._plan(prog.epoch)
        micro = batches[prog.pos : prog.pos + max(1, self.cfg.grad_accum) * self.world]
        for idx in self._share(micro):  # None: a filler that adds nothing
            batch = self._batch([examples[i] for i in idx or micro[0]])
            loss, lm, fb = self._losses(batch)
            scaled = loss * self.world / len(micro) if idx is not None else loss * 0
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            if idx is not None:
                window.add(loss, lm, fb, batch.tokens, batch.positions)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.clip > 0:
            window.grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        prog.step += 1
        prog.pos += len(micro)
        if prog.pos >= len(batches):
            prog.epoch, prog.pos = prog.epoch + 1, 0

    def _losses(self, batch):
        """``(L, L_M, L_F or None)`` of one batch, under autocast when not fp32."""
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype != torch.float32):
            out = self._forward(batch)
            ref = self._ref_logps(batch) if self.cfg.objective in NEEDS_REFERENCE else None
            lm = lm_loss(self.settings, batch, out, ref)
            if not self.use_head:
                return lm, lm, None
            fb = feedback_loss(self.cfg.feedback_loss, batch, out)
            return lm + self.cfg.lambda_ * fb, lm, fb

    def _forward(self, batch):  # hook
        return forward_batch(self.model, self.head if self.use_head else None, batch)

    def _share(self, batches: list[list[int]]) -> Iterable[list[int] | None]:  # hook
        """This process's micro-batches of ``batches`` (None: a filler that adds nothing)."""
        return batches

    def _all_sum(self, values: torch.Tensor) -> torch.Tensor:  # hook
        """``values`` summed over processes."""
        return values

    @torch.no_grad()
    def _ref_logps(self, batch) -> torch.Tensor:
        if self.ref is not None:
            return forward_batch(self.ref, None, batch).token_logps
        with self.model.disable_adapter():  # LoRA: the base weights are the reference
            return forward_batch(self.model, None, batch).token_logps

    def _log(self, window: _Window) -> dict[str, Any]:
        prog = self.prog
        loss, lm, fb = window.means()  # the only host sync of a logging step
        seconds = time.perf_counter() - window.start
        prog.tokens += window.tokens
        prog.positions += window.positions
        prog.train_seconds += seconds
        batches = self._plan(prog.epoch)
        row = {
            "step": prog.step,
            "split": "train",
            "epoch": prog.epoch + prog.pos / max(1, len(batches)),
            "loss": loss,
            "lm_loss": lm,
            "fb_loss": fb if self.use_head else None,
            "lr": self.scheduler.get_last_lr()[0],
            "grad_norm": None if window.grad_norm is None else float(window.grad_norm),
            "tokens": window.tokens,
            "tokens_per_s": window.tokens / seconds if seconds > 0 else None,
            "pad_share": pad_share(window.tokens, window.positions),
            "mem_mb": peak_memory_mb(self.device),
            "elapsed_s": prog.train_seconds,
        }
        prog.metrics.append(row)
        return row

    @torch.no_grad()
    def _validate(self) -> dict[str, Any]:
        """Mean loss over the validation examples; updates early stopping."""
        self.model.eval()
        self.head.eval()
        sums = torch.zeros(4, device=self.device)  # loss, lm, fb (times rows), rows
        examples = self.valset.examples
        lengths = [len(e) for e in examples]
        batches = plan(
            lengths,
            self.cfg.batch_size,
            self.cfg.batch_tokens,
            group=self.valset.group,
            packed=self.packing,
        )
        for idx in self._share(batches):
            batch = self._batch([examples[i] for i in idx or batches[0]])
            loss, lm, fb = self._losses(batch)
            if idx is None:
                continue
            zero = torch.zeros((), device=self.device)
            sums[:3] += torch.stack([loss, lm, zero if fb is None else fb]).float() * len(batch)
            sums[3] += len(batch)
        self.model.train()
        self.head.train()
        sums = self._all_sum(sums)
        rows = int(sums[3])
        loss, lm, fb = (sums[:3] / max(1, rows)).tolist()
        prog = self.prog
        row = {"step": prog.step, "split": "val", "loss": loss, "lm_loss": lm}
        row["fb_loss"] = fb if self.use_head else None
        prog.metrics.append(row)
        if self.cfg.patience > 0 and rows:
            if prog.best is None or loss < prog.best - 1e-4:
                prog.best, prog.best_step, prog.bad_evals = loss, prog.step, 0
                self._save_model(self.out / checkpoint.CHECKPOINTS / "best")
            else:
                prog.bad_evals += 1
                prog.stopped = prog.bad_evals >= self.cfg.patience
        return row

    # --- checkpoints --------------------------------------------------------------------

    def _save_step(self) -> None:
        tensors = {
            "optimizer": self._optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "rng": checkpoint.rng_state(),
        }
        if self.scaler is not None:
            tensors["scaler"] = self.scaler.state_dict()
        progress = asdict(self.prog)
        self._save_model(
            checkpoint.step_dir(self.out, self.prog.step),
            lambda tmp: checkpoint.write_state(tmp, tensors, progress),
        )
        if self.writes:
            checkpoint.prune(self.out, self.cfg.keep_last)

    def _optimizer_state(self) -> dict[str, Any]:  # hook
        return self.optimizer.state_dict()

    def _load_optimizer(self, state: dict[str, Any]) -> None:  # hook
        self.optimizer.load_state_dict(state)

    def _saved_parts(self):  # hook
        """``(model, head)`` to write; None where this process writes nothing."""
        return self.model, self.head

    def _save_model(self, path: Path, extra=None) -> None:
        parts = self._saved_parts()  # every process takes part (FSDP gathers); rank 0 writes
        if parts is None:
            return
        model, head = parts
        info = {**self.info, "step": self.prog.step, "complete": False}
        if not self.cfg.lora:
            checkpoint.save_folder(path, model, self.tokenizer, head, info, extra)
            return
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        def lora_files(tmp: Path) -> None:  # resume-only: adapter weights, not a full model
            state = get_peft_model_state_dict(model)
            save_file({k: v.contiguous() for k, v in state.items()}, tmp / checkpoint.ADAPTER_FILE)
            self.tokenizer.save_pretrained(tmp)
            head.save(tmp)
            checkpoint.write_info(tmp, {**info, "head": head.config, "lora": True})
            if extra is not None:
                extra(tmp)

        with checkpoint.atomic_path(path) as tmp:
            tmp.mkdir()
            lora_files(tmp)

    def finish(self) -> None:
        """Write the final model (best one with early stopping), metrics and ``lfft.json``."""
        prog, out = self.prog, self.out
        best = out / checkpoint.CHECKPOINTS / "best"
        if self.cfg.patience > 0 and prog.best_step not in (None, prog.step) and best.exists():
            self._load_weights(best)
        parts = self._saved_parts()
        if parts is None:
            return
        model, head = parts
        model = model.merge_and_unload() if self.cfg.lora else model
        out.mkdir(parents=True, exist_ok=True)
        write_table(out / "metrics.parquet", self._metrics_table(), METRICS, self._meta())
        info = {**self.info, "step": prog.step, "complete": True, "metrics": self.final_metrics()}
        tmp = out / ".final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        checkpoint.write_model(tmp, model, self.tokenizer, head, info)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == checkpoint.INFO_FILE):
            os.replace(f, out / f.name)  # lfft.json last: it marks the folder complete
        tmp.rmdir()

    def _load_weights(self, folder: Path) -> None:
        from safetensors.torch import load_file

        if self.cfg.lora:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, load_file(folder / checkpoint.ADAPTER_FILE))
        else:
            best = checkpoint.load_model(folder, self.device)
            self.model.load_state_dict(best.state_dict())
        self.head.load(folder, self.device)

    def _metrics_table(self) -> pa.Table:
        rows = [{k: r.get(k) for k in METRICS.names} for r in self.prog.metrics]
        return pa.Table.from_pylist(rows, schema=METRICS)

    def _meta(self) -> dict[str, Any]:
        return make_metadata(
            "train", as_dict(self.cfg), self.info.get("inputs"), {"rows": len(self.prog.metrics)}
        )

    def final_metrics(self) -> dict[str, Any]:
        """The last train and val losses, tokens/s and pad share of the whole run."""
        prog = self.prog
        train_rows = [r for r in prog.metrics if r["split"] == "train"]
        val_rows = [r for r in prog.metrics if r["split"] == "val"]
        return {
            "steps": prog.step,
            "epochs": train_rows[-1]["epoch"] if train_rows else 0.0,
            "train_loss": train_rows[-1]["loss"] if train_rows else None,
            "val_loss": val_rows[-1]["loss"] if val_rows else None,
            "best_val_loss": prog.best,
            "best_step": prog.best_step,
            "early_stopped": prog.stopped,
            "tokens_per_s": prog.tokens / prog.train_seconds if prog.train_seconds else None,
            "pad_share": pad_share(prog.tokens, prog.positions),
            "train_seconds": prog.train_seconds,
        }

    def summary(self, seconds: float) -> StageResult:
        m = self.final_metrics()
        counts = self.trainset.counts
        extra = {
            "objective": self.cfg.objective,
            "device": f"{self.device.type} {str(self.dtype).removeprefix('torch.')}",
            "steps": m["steps"],
            "epochs": round(m["epochs"], 3),
            "train loss": m["train_loss"],
            "val loss": m["val_loss"],
            "tokens/s": round(m["tokens_per_s"] or 0),
            "packing": f"{'on' if self.packing else 'off'} ({self.cfg.packing}; padded batches"
            f" would be {self.padded_share:.1%} padding)",
            "pad share": round(m["pad_share"], 4),
            "train time s": round(m["train_seconds"], 2),
            "examples": len(self.trainset.examples),
        }
        if "pairs" in counts:
            extra["pairs"] = counts["pairs"]
        if self.cfg.objective == "kto":
            extra["kto weights"] = {
                "desirable": self.settings.desirable_weight,
                "undesirable": self.settings.undesirable_weight,
            }
        if m["early_stopped"]:
            extra["early stopped"] = f"best val {m['best_val_loss']:.4f} at step {m['best_step']}"
        used = counts.get("rows_in_pairs", counts["responses"])
        return StageResult(
            stage="train",
            rows_in=counts["rows"],
            rows_out=used,
            seconds=seconds,
            outputs={"checkpoint": self.out, "metrics": self.out / "metrics.parquet"},
            extra=extra,
        )


class _Window:
    """Loss sums and token counts since the last logged step (kept on the device: no sync)."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, device=device)
        self.restart()

    def restart(self) -> None:
        self.sums.zero_()
        self.n = self.tokens = self.positions = 0
        self.grad_norm: torch.Tensor | None = None
        self.start = time.perf_counter()

    def add(self, loss, lm, fb, tokens: int, positions: int) -> None:
        zero = torch.zeros((), device=loss.device)
        self.sums += torch.stack([loss, lm, zero if fb is None else fb]).detach().float()
        self.n += 1
        self.tokens += tokens
        self.positions += positions

    def means(self) -> list[float]:
        return (self.sums / max(1, self.n)).tolist()


def _with_lora(model, cfg: TrainConfig, resume_dir: Path | None):
    try:
        import peft
    except ImportError:
        raise LfftError("--lora needs the peft package: pip install 'lfft[lora]'") from None
    config = peft.LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    model = peft.get_peft_model(model, config)
    if resume_dir is not None:
        from safetensors.torch import load_file

        state = load_file(resume_dir / checkpoint.ADAPTER_FILE)
        peft.set_peft_model_state_dict(model, state)
    return model
