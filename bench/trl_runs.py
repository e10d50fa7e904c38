"""TRL's trainers as contenders of bench/train_throughput.py, each setting worth trying.

TRL is an optional extra installed in the benchmark's environment only (``make bench-train``
creates ``.venv-bench``). Every run uses the same model, rows, batch size, maximum length,
learning rate and thread count as lfft's runs, in fp32 without activation checkpointing (TRL's
CPU defaults, bf16 autocast and checkpointing, were 5-8x slower on the CPU): only the settings
named in :data:`SETTINGS` differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# name -> (trainer, config overrides, what the setting does). A peer gets its best settings: each
# one TRL offers for speed is tried, and the report picks the best per trainer.
SETTINGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "trl sft": ("sft", {}, "defaults: random order, padded to the batch's longest"),
    "trl sft group_by_length": (
        "sft",
        {"train_sampling_strategy": "group_by_length"},
        "batches of similar lengths (less padding)",
    ),
    "trl sft padding_free": (
        "sft",
        {"padding_free": True},
        "a batch flattened into one row, no padding",
    ),
    "trl sft packed": ("sft", {"packing": True}, "packing, bfd (padding-free)"),
    "trl sft packed wrapped": (
        "sft",
        {"packing": True, "packing_strategy": "wrapped"},
        "packing, wrapped (fixed 512-token rows)",
    ),
    "trl sft liger": ("sft", {"use_liger_kernel": True}, "use_liger_kernel"),
    "trl kto": ("kto", {}, "defaults: reference forward every step"),
    "trl kto precompute_ref": (
        "kto",
        {"precompute_ref_log_probs": True},
        "reference log-probs computed once before training (timed, pro rata)",
    ),
}


def skipped(name: str) -> str | None:
    """Why the setting ``name`` cannot run here (None: it can)."""
    if "liger" not in name:
        return None
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError:
        return "liger-kernel is not installed (`pip install liger-kernel`)"
    if "gpt2" not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return "liger-kernel has no GPT-2 kernels: `use_liger_kernel` applies nothing to this model"
    return None


def trl_version() -> str:
    try:
        import trl
    except ImportError:
        return "not installed"
    return trl.__version__


def run_trl(name: str, work: Path, args, rows: list[dict], clock) -> dict:
    """Train with TRL's ``name`` setting; ``clock`` times the optimizer steps after warm-up."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, overrides, _ = SETTINGS[name]
    tok = AutoTokenizer.from_pretrained(work / "init")
    model = AutoModelForCausalLM.from_pretrained(work / "init", dtype=torch.float32)
    data = {  # conversational prompt/completion: the chat template is lfft's own (set by init)
        "prompt": [list(r["context"]) + [{"role": "user", "content": r["prompt"]}] for r in rows],
        "completion": [[{"role": "assistant", "content": r["response"]}] for r in rows],
    }
    if kind == "kto":
        data["label"] = [bool(r["label"]) for r in rows]
    dataset = Dataset.from_dict(data)
    common: dict[str, Any] = dict(
        output_dir=str(work / name.replace(" ", "-")),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=1e-4,
        logging_steps=args.steps,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        max_length=args.max_length,
        bf16=False,
        activation_checkpointing=False,
    )
    if kind == "kto":
        from trl import KTOConfig, KTOTrainer

        class Trainer(KTOTrainer):
            def _precompute_ref_logps(self, dataset, name, batch_size):
                # precompute_ref_log_probs: the reference forward of every row, once, before
                # training: timed, and charged pro rata to the timed steps (a share of an epoch)
                with clock.extra(share=(args.steps - args.warmup) * args.batch_size / len(rows)):
                    return super()._precompute_ref_logps(dataset, name, batch_size)

        config = KTOConfig(**common, **overrides)
        trainer = Trainer(model=model, args=config, train_dataset=dataset, processing_class=tok)
    else:
        from trl import SFTConfig, SFTTrainer

        if overrides.get("padding_free") and not overrides.get("packing"):
            # TRL does not truncate padding-free rows: it asks for truncated inputs and
            # max_length=None. Its own preparation (max_length) makes them, untimed like the rest.
            plain = SFTTrainer(
                model=model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tok
            )
            dataset = plain.train_dataset
            common["max_length"] = None
        config = SFTConfig(**common, **overrides)
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tok)
    _count_tokens(trainer, clock)
    trainer.train()
    return clock.result()


def _count_tokens(trainer, clock) -> None:
    """Count the tokens of every batch the trainer trains on (not those collated ahead)."""
    step = trainer.training_step

    def counting(model, inputs, *a, **kw):
        mask = inputs.get("attention_mask")
        if mask is None and "completion_attention_mask" in inputs:  # KTO
            mask = inputs["completion_attention_mask"]
        if mask is not None:
            clock.add(int(mask.sum()), mask.numel())
        else:  # padding-free: one row of real tokens
            n = inputs["input_ids"].numel()
            clock.add(n, n)
        if "KL_completion_attention_mask" in inputs:  # KTO's mismatched pairs: work, not useful
            clock.add(0, inputs["KL_completion_attention_mask"].numel())
        return step(model, inputs, *a, **kw)

    trainer.training_step = counting
