"""TRL's trainers as contenders of bench/train_throughput.py, each setting worth trying.

TRL is an optional extra installed in the benchmark's environment only (``make bench-train``
creates ``.venv-bench``). Every run uses the same model, rows, batch size, maximum length,
learning rate and thread count as lfft's runs, without activation checkpointing; on the CPU in
fp32 (TRL's CPU defaults, bf16 autocast and checkpointing, were 5-8x slower there), on a GPU in
bf16 autocast like lfft (``--precision``), with TRL's recommended GPU settings (:func:`chosen`).
Only the settings named in :data:`SETTINGS` differ.
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


# On a GPU, TRL's recommended settings: bf16 (from --precision), padding-free or packed batches,
# Liger's fused kernels; with --lora, a peft LoraConfig like lfft's (r 8, alpha 16, all linear).
GPU_SETTINGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "trl sft liger": (
        "sft",
        {"use_liger_kernel": True, "padding_free": True},
        "use_liger_kernel, padding-free",
    ),
    "trl kto liger": ("kto", {"use_liger_kernel": True}, "use_liger_kernel"),
}
LORA_SETTINGS: dict[str, tuple[str, dict[str, Any], str]] = {
    "trl sft lora": ("sft", {"padding_free": True}, "peft LoRA, padding-free"),
    "trl sft lora liger": (
        "sft",
        {"padding_free": True, "use_liger_kernel": True},
        "peft LoRA, padding-free, use_liger_kernel",
    ),
    "trl kto lora": ("kto", {}, "peft LoRA (the reference: adapters disabled)"),
}
SETTINGS.update(GPU_SETTINGS)
SETTINGS.update(LORA_SETTINGS)
CPU_ONLY = ("trl sft group_by_length", "trl sft packed wrapped")  # not what TRL recommends on GPUs


def chosen(gpu: bool, lora: bool) -> list[str]:
    """The settings a run tries: the CPU's list, or on a GPU TRL's recommended ones."""
    names = [n for n in SETTINGS if n not in LORA_SETTINGS]
    if gpu:
        names = [n for n in names if n not in CPU_ONLY]
    return names + (list(LORA_SETTINGS) if lora else [])


def skipped(name: str, model_type: str = "gpt2", device: str = "cpu") -> str | None:
    """Why the setting ``name`` cannot run here (None: it can)."""
    if "liger" not in name:
        return None
    if device != "cuda":
        return "liger-kernel's Triton kernels need a CUDA GPU"
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except ImportError:
        return "liger-kernel is not installed (`pip install liger-kernel`)"
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"liger-kernel has no {model_type} kernels: `use_liger_kernel` applies nothing"
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
    peft_config = None
    if "lora" in name:
        from peft import LoraConfig

        from lfft.config import TrainConfig

        lfft = TrainConfig()  # lfft --lora's defaults (lfft/model/train_setup.py _with_lora)
        peft_config = LoraConfig(
            r=lfft.lora_r,
            lora_alpha=lfft.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    data = {  # conversational prompt/completion: the chat template is lfft's own (set by init)
        "prompt": [list(r["context"]) + [{"role": "user", "content": r["prompt"]}] for r in rows],
        "completion": [[{"role": "assistant", "content": r["response"]}] for r in rows],
    }
    if kind == "kto":
        data["label"] = [bool(r["label"]) for r in rows]
    dataset = Dataset.from_dict(data)
    common: dict[str, Any] = dict(
        output_dir=str(work / name.replace(" ", "-")),
        per_device_train_batch_size=batch_rows(args, overrides, tok, rows),
        max_steps=args.steps,
        learning_rate=args.lr,
        logging_steps=args.steps,
        save_strategy="no",
        report_to=[],
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        max_length=args.max_length,
        bf16=args.precision == "bf16",
        activation_checkpointing=False,
    )
    if kind == "kto":
        from trl import KTOConfig, KTOTrainer

        class Trainer(KTOTrainer):
            def _precompute_ref_logps(self, dataset, name, batch_size):
                # precompute_ref_log_probs: the reference forward of every row, once, before
                # training: timed, and charged pro rata to the timed steps (the share of an
                # epoch they train; at most once, when they go through more than one epoch)
                timed_rows = (args.steps - args.warmup) * args.batch_size
                with clock.extra(share=min(1.0, timed_rows / len(rows))):
                    return super()._precompute_ref_logps(dataset, name, batch_size)

        trainer_class, config = Trainer, KTOConfig(**common, **overrides)
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
        trainer_class, config = SFTTrainer, SFTConfig(**common, **overrides)
    trainer = trainer_class(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tok,
        peft_config=peft_config,
    )
    _count_tokens(trainer, clock)
    trainer.train()
    return clock.result()


def batch_rows(args, overrides: dict[str, Any], tok, rows: list[dict]) -> int:
    """Rows per batch: ``--batch-size`` examples, or on a GPU for packed settings the packed rows
    (up to ``--max-length`` tokens each) that hold as many tokens as ``--batch-size`` examples, so
    that both sides train on the same tokens per step (the CPU tables keep ``--batch-size``)."""
    if args.device != "cuda" or not overrides.get("packing"):
        return args.batch_size
    from lfft.model.batching import encode

    lengths = [len(e) for e in encode(tok, rows, args.max_length)]
    return max(1, round(args.batch_size * sum(lengths) / len(lengths) / args.max_length))


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
