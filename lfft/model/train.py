"""``lfft train``: the joint loss L = L_M + lambda * L_F, in one loop written out (no Trainer).

    lfft train --model ckpt/init --data splits/ --out ckpt/final --objective kto

Reads ``splits/train.parquet`` (and ``val.parquet`` when present), starts from the checkpoint
``--model`` (which is also the frozen reference of kto/dpo), and writes a transformers-loadable
checkpoint to ``--out`` with ``metrics.parquet``; step checkpoints under
``out/checkpoints/step-N/`` let ``--resume`` continue exactly where a killed run stopped.

:func:`train` reads top to bottom: setup, then per optimizer step the micro-batches' forward,
L = L_M + lambda * L_F, backward, clip, step, log, validate, save; then the final model. Under
torchrun the same loop runs on every rank (:mod:`lfft.model.distributed`: lines marked DDP/FSDP).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from lfft.config import TrainConfig, as_dict
from lfft.errors import LfftError, NoUsableRows
from lfft.io import _hash_json, fingerprints, recover_swap, write_table
from lfft.model import checkpoint, defaults, distributed, objectives, report_to
from lfft.model.attention import set_attention
from lfft.model.batching import Batch, plan
from lfft.model.compile import compile_model
from lfft.model.device import pick_device, pick_dtype
from lfft.model.display import TrainDisplay
from lfft.model.feedback_lm import inner, position_limit, reference_logps
from lfft.model.objectives import NEEDS_REFERENCE, LossSettings, TrainSet
from lfft.model.state import LossWindow, TrainState
from lfft.model.train_setup import (
    adamw,
    choose_packing,
    epoch_plans,
    load_for_training,
    loss_settings,
    make_batch,
    read_rows,
    run_info,
    seed_everything,
    split_paths,
    summary,
    warmup_cosine,
)
from lfft.report import StageResult
from lfft.schemas import METRICS, make_metadata


def train(
    model_dir: str | Path,
    data_dir: str | Path,
    out: str | Path,
    cfg: TrainConfig,
    resume: bool = False,
) -> StageResult:
    """Train from the checkpoint ``model_dir`` on ``data_dir``'s splits into ``out``."""
    start = time.perf_counter()
    objectives.check(cfg.objective, cfg.feedback_loss)
    report_to.resolve(cfg.report_to)  # a bad --report-to fails before anything is loaded
    model_dir, out = Path(model_dir), Path(out)
    if out.resolve() == model_dir.resolve():
        raise LfftError("--out must be a new folder, not the --model checkpoint")
    base_info = checkpoint.read_info(model_dir)
    # the one place where unset defaults (lr, warmup, lambda) are filled in, from the base
    cfg, chosen = defaults.resolve(cfg, base_info)
    train_path, val_path = split_paths(data_dir)
    inputs = fingerprints([model_dir, train_path] + ([val_path] if val_path else []))
    run_id = _hash_json({"stage": "train", "config": as_dict(cfg), "inputs": inputs})
    if resume and _complete(out, run_id):
        return StageResult(stage="train", skipped=True, outputs={"checkpoint": out})
    steps = checkpoint.step_dirs(out) if resume else []
    resume_dir = steps[-1] if steps else None
    ctx = distributed.init(cfg)  # DDP/FSDP: this rank's place in the job; None in a plain run
    world, writes = (1, True) if ctx is None else (ctx.world, ctx.rank == 0)  # rank 0 writes
    if writes:
        if not resume:
            shutil.rmtree(out / checkpoint.CHECKPOINTS, ignore_errors=True)
        (out / checkpoint.INFO_FILE).unlink(missing_ok=True)

    # --- setup (this order keeps runs reproducible: random numbers are drawn while loading) ---
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.precision, device)
    seed_everything(cfg.seed)
    tokenizer = checkpoint.load_tokenizer(model_dir)
    use_head = cfg.feedback_loss != "none" and cfg.lambda_ > 0  # else the head stays as it is
    load_on = torch.device("cpu") if ctx is not None and ctx.fsdp else device  # FSDP: shards move
    model, ref = load_for_training(cfg, model_dir, resume_dir, load_on, use_head)
    max_length = min(cfg.max_length, position_limit(model))
    trainset = _examples(tokenizer, train_path, cfg, max_length)
    valset = _examples(tokenizer, val_path, cfg, max_length) if val_path else None
    if not trainset.examples:
        raise NoUsableRows(
            f"{train_path}: no rows usable by --objective {cfg.objective}"
            + (" (dpo needs pairs within a group_id)" if cfg.objective == "dpo" else "")
        )
    if valset is not None and not valset.examples:
        valset = None  # e.g. dpo without pairs in val.parquet
    settings = loss_settings(cfg, trainset)
    packed, padded_share = choose_packing(cfg, trainset, model.lm)
    attention = set_attention(model.lm, cfg.attention, packed, device)
    compiled = compile_model(model.lm, cfg.compile_scope) if cfg.compile else None
    if ref is not None:
        set_attention(ref.lm, attention, packed, device)
    to_batch = partial(make_batch, tokenizer.pad_token_id, packed, max_length, device)
    plan_of = epoch_plans(trainset, cfg, packed)
    per_step = max(1, cfg.grad_accum) * world  # micro-batches per optimizer step (all ranks)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * math.ceil(len(plan_of(0)) / per_step)))
    if ctx is not None:
        model, ref = distributed.wrap(model, ref, ctx)  # DDP/FSDP: before the optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adamw(params, cfg, device)
    warmup = min(cfg.warmup_steps, total // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    info = run_info(cfg, base_info, model_dir, trainset, valset, settings, packed)
    info.update(inputs=inputs, fingerprint=run_id, attention=attention, compiled=compiled)
    info.update(chosen.record())
    if ctx is not None:
        info["distributed"] = distributed.info(ctx)
    state = TrainState()
    if resume_dir is not None:
        tensors, saved = checkpoint.read_state(resume_dir)  # CPU: load_state_dict moves states
        checkpoint.load_optimizer_state(model, optimizer, tensors["optimizer"])
        scheduler.load_state_dict(tensors["scheduler"])
        if scaler is not None and "scaler" in tensors:
            scaler.load_state_dict(tensors["scaler"])
        state = TrainState(**saved)
        checkpoint.set_rng_state(tensors["rng"])  # last: loading models drew random numbers
    losses = partial(joint_loss, model, ref, settings=settings, dtype=dtype)  # (L, L_M, L_F)

    def kto_pairs(indices: list[int]) -> Batch | None:  # KTO's mismatched pairs, for its z
        if not settings.mismatched_reference:
            return None
        return to_batch(objectives.mismatched(trainset.examples, indices), range(len(indices)))

    save = partial(_save, model=model, tokenizer=tokenizer, info=info, cfg=cfg, writes=writes)

    # --- the loop: one optimizer step per iteration ---
    window = LossWindow(device)
    console = None if writes else Console(stderr=True, quiet=True)  # DDP/FSDP: rank 0 prints
    report = report_to.reporting(cfg.report_to, out, as_dict(cfg), writes)
    with TrainDisplay(total, state.step, console) as display, report as reporter:
        while state.step < total and not state.stopped:
            batches = plan_of(state.epoch)
            micro = batches[state.pos : state.pos + per_step]
            mine, filler = distributed.share(micro, ctx.rank, world) if ctx else (micro, False)
            for k, indices in enumerate(mine):
                # DDP/FSDP: gradients are averaged over ranks on the last micro-batch only
                with distributed.grad_sync(model, last=k == len(mine) - 1 and not filler):
                    batch = to_batch(trainset.examples, indices)
                    loss, lm, fb = losses(batch, kto_pairs(indices))
                    _backward(loss * world / len(micro), scaler)  # the step's mean over batches
                    window.add(loss, lm, fb, batch.tokens, batch.positions)
                    # the spent autograd graph goes now, not amid the next forward: kept, it
                    # fragments the heap (2-3% more page faults a step, a higher peak RSS)
                    del loss, lm, fb
            if filler:  # DDP/FSDP: a rank without a micro-batch left runs one that adds nothing
                with distributed.grad_sync(model, last=True):
                    _backward(losses(to_batch(trainset.examples, micro[0]))[0] * 0, scaler)
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.clip > 0:
                window.grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.advance(len(micro), len(batches))
            display.advance(state.step)

            last = state.step == total
            logged = state.step % max(1, cfg.log_every) == 0 or last
            if logged:
                if ctx is not None:
                    window.sum_over_ranks(ctx.device)  # DDP/FSDP: the losses of all ranks
                lr = scheduler.get_last_lr()[0]
                logged_row = window.log(state, len(plan_of(state.epoch)), lr, use_head, device)
                display.log(logged_row)
                reporter.log(logged_row)
            paused = time.perf_counter()
            if valset and cfg.eval_every > 0 and (state.step % cfg.eval_every == 0 or last):
                row, rows = validate(model, losses, valset, to_batch, cfg, packed, ctx, device)
                row = {"step": state.step, **row}
                state.metrics.append(row)
                display.log(row)
                reporter.log(row)
                if cfg.patience > 0 and rows and state.early_stop(row["loss"], cfg.patience):
                    save(checkpoint.best_dir(out), state=state)
            if cfg.save_every > 0 and state.step % cfg.save_every == 0 and not last:
                save(checkpoint.step_dir(out, state.step), state, (optimizer, scheduler, scaler))
                if writes:
                    checkpoint.prune(out, cfg.keep_last)
            if logged:
                window.restart()
            else:  # validation and saving do not count as training time
                window.start += time.perf_counter() - paused

    # --- the final model (the best one with early stopping; LoRA merged), metrics, lfft.json ---
    best = checkpoint.best_dir(out)
    recover_swap(best)  # a kill while best/ was being replaced
    if cfg.patience > 0 and state.best_step not in (None, state.step) and best.exists():
        checkpoint.load_weights(model, best, device, cfg.lora)
    save(out, state, final=True)
    if ctx is not None:  # DDP/FSDP: the wrapped modules hold the process group: dropped first
        del model, ref, optimizer, scheduler, params, losses, save
        distributed.close(ctx)
    device_text = f"{device.type} {str(dtype).removeprefix('torch.')}"
    packing = (packed, padded_share)
    elapsed = time.perf_counter() - start
    result = summary(cfg, state, trainset, settings, packing, device_text, out, elapsed)
    result.extra.update(chosen.summary(), attention=attention)
    return result


def joint_loss(
    model,
    ref,
    batch: Batch,
    kto_pairs: Batch | None = None,
    *,
    settings: LossSettings,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(L, L_M, L_F or None)`` of one batch, L = L_M + lambda * L_F, under autocast when not
    fp32; kto/dpo score the batch with the reference model too, and kto takes its reference
    point from the mismatched pairs ``kto_pairs`` when given (else from the batch's rows)."""
    autocast = torch.autocast(batch.input_ids.device.type, dtype, enabled=dtype != torch.float32)
    with autocast:
        kl = None
        if kto_pairs is not None:  # scored before the batch's forward: no graph kept
            with torch.no_grad():
                pairs_policy = model(kto_pairs).token_logps
                pairs_ref = reference_logps(model, ref, kto_pairs)
            mask = kto_pairs.response_mask
            kl = objectives.kto_reference_point(pairs_policy, pairs_ref, mask)
        out = model(batch)
        needs_ref = settings.objective in NEEDS_REFERENCE
        ref_logps = reference_logps(model, ref, batch) if needs_ref else None
        lm = objectives.lm_loss(settings, batch, out, ref_logps, kl)
        if out.fb_seq_logits is None:  # the head is not trained: L = L_M
            return lm, lm, None
        fb = objectives.feedback_loss(settings.feedback_loss, batch, out)
        return lm + settings.lambda_ * fb, lm, fb


@torch.no_grad()
def validate(
    model, losses, valset: TrainSet, to_batch, cfg: TrainConfig, packed: bool, ctx, device
) -> tuple[dict[str, Any], int]:
    """``(row, rows)``: the mean L, L_M, L_F (``losses(batch)``) over the validation examples,
    of all ranks under DDP/FSDP; ``rows``: how many."""
    model.eval()
    sums = torch.zeros(4, device=device)  # loss, lm, fb (times rows), rows
    lengths = [len(e) for e in valset.examples]
    batches = plan(lengths, cfg.batch_size, cfg.batch_tokens, group=valset.group, packed=packed)
    mine, filler = distributed.share(batches, ctx.rank, ctx.world) if ctx else (batches, False)
    for indices in mine:
        batch = to_batch(valset.examples, indices)
        loss, lm, fb = losses(batch)
        zero = torch.zeros((), device=device)
        sums[:3] += torch.stack([loss, lm, zero if fb is None else fb]).float() * len(batch)
        sums[3] += len(batch)
    if filler:  # FSDP: every rank runs as many forwards (they gather weights together)
        losses(to_batch(valset.examples, batches[0]))
    model.train()
    if ctx is not None:
        distributed.all_sum(sums)
        if ctx.fsdp:  # forwards without a backward leave the root unit's weights gathered
            model.reshard()
    rows = int(sums[3])
    loss, lm, fb = (sums[:3] / max(1, rows)).tolist()
    fb = fb if inner(model).train_head else None
    return {"split": "val", "loss": loss, "lm_loss": lm, "fb_loss": fb}, rows


def _save(
    path: Path,
    state: TrainState,
    training: tuple | None = None,
    final: bool = False,
    *,
    model,
    tokenizer,
    info: dict[str, Any],
    cfg: TrainConfig,
    writes: bool,
) -> None:
    """Write the model at ``state.step`` into the folder ``path``: with ``training`` (optimizer,
    scheduler, scaler) a step checkpoint that a run resumes from; ``final``: the finished run's
    folder (LoRA merged, metrics, a complete ``lfft.json``). Every rank calls it (FSDP gathers
    the state); rank 0 writes."""
    extra = None
    if training is not None:
        optimizer, scheduler, scaler = training
        tensors = {
            "optimizer": checkpoint.optimizer_state(model, optimizer, writes),
            "scheduler": scheduler.state_dict(),
            "rng": checkpoint.rng_state(),
        }
        if scaler is not None:
            tensors["scaler"] = scaler.state_dict()
        train_state = state.to_json()

        def extra(folder: Path) -> None:
            checkpoint.write_state(folder, tensors, train_state)

    parts = checkpoint.trained_parts(model, writes)
    if parts is None:
        return
    lm, head = parts
    if not final:
        saved = {**info, "step": state.step, "complete": False}
        checkpoint.save_folder(path, lm, tokenizer, head, saved, extra, adapter_only=cfg.lora)
        return
    saved = {**info, "step": state.step, "complete": True, "metrics": state.final_metrics()}
    meta = make_metadata("train", as_dict(cfg), info["inputs"], {"rows": len(state.metrics)})
    table = state.metrics_table()

    def metrics(folder: Path) -> None:
        write_table(folder / checkpoint.METRICS_FILE, table, METRICS, meta)

    lm = lm.merge_and_unload() if cfg.lora else lm
    checkpoint.save_final(path, lm, tokenizer, head, saved, metrics)


def _backward(loss: torch.Tensor, scaler) -> None:
    (scaler.scale(loss) if scaler is not None else loss).backward()


def _examples(tokenizer, path: Path, cfg: TrainConfig, max_length: int) -> TrainSet:
    rows = read_rows(path)
    return objectives.train_set(tokenizer, rows, cfg.objective, max_length, cfg.max_pairs_per_group)


def _complete(out: Path, run_id: str) -> bool:
    info = out / checkpoint.INFO_FILE
    if not info.exists():
        return False
    data = json.loads(info.read_text(encoding="utf-8"))
    return bool(data.get("complete")) and data.get("fingerprint") == run_id
