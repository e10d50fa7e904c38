"""Stage configs: one frozen dataclass per stage; each field is a TOML key and an option.

A field declared with :func:`lfft.options.opt` carries its help text and allowed values; the
``[stage]`` table of a ``--config`` file and the options of ``lfft <stage>`` (generated in
:mod:`lfft.options_cli`) both come from it. Precedence: command-line option >
``--set stage.key=value`` > ``[stage]`` table of ``--config`` > dataclass default. An unknown
table or key, or a value of the wrong type or out of range, is an error naming it. TOML keys
may use ``-`` or ``_``; ``lambda`` maps to the field ``lambda_``.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from lfft.errors import ConfigError
from lfft.options import known_keys, make, opt, option
from lfft.options import validate as validate  # for library code checking a config it was given

C = TypeVar("C")

WORKERS = "Processes; 0 = auto: one per core on {}."
BATCH_ROWS = "Rows per Arrow batch read and written."
PART_ROWS = "Rows per output part file; 0 = one file (a folder --out: 1M-row parts)."


def _formats() -> tuple[str, ...]:
    from lfft.data.formats import FORMATS

    return ("auto", *FORMATS)


def _presets() -> tuple[str, ...]:
    from lfft.model.tiny import PRESETS

    return tuple(PRESETS)


def _shares(ratios: tuple[float, ...]) -> str | None:
    if any(not math.isfinite(r) or r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        return f"expected three shares >= 0 summing to 1, e.g. 0.8,0.1,0.1, got {list(ratios)}"
    return None


# --- data stages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectConfig:
    format: str = opt(
        "auto",
        "auto|events|trl|hh-rlhf|oasst|shp|ultrafeedback|finegrained|csv|...",
        short="-f",
        choices=_formats,
    )
    column_map: dict[str, str] = opt(
        {},
        "CSV/Parquet columns: lfft name=column, e.g. prompt=question,response=answer",
        aliases=("--map",),
    )
    implicit: bool = opt(True, "Infer feedback from the user's next message.")
    implicit_rules: str | None = opt(None, "TOML file overriding the implicit-feedback rules.")
    partitions: int = opt(32, "Hash partitions of events by session (bounded memory).", ge=1)
    workers: int = opt(1, WORKERS.format("inputs over 512 MB"), ge=0)
    memory_budget: float = opt(
        512.0, "MB of parsed records held in memory before spilling to disk.", gt=0
    )
    batch_rows: int = opt(16_384, BATCH_ROWS, ge=1)
    part_rows: int = opt(0, PART_ROWS, ge=0)


@dataclass(frozen=True)
class CleanConfig:
    min_response_chars: int = opt(1, "Shorter responses (after stripping) are dropped.", ge=0)
    max_chars: int = opt(32_000, "Drop longer interactions (context+prompt+response).", ge=1)
    max_turns: int = opt(64, "Most context turns kept.", ge=0)
    scrub_pii: bool = opt(True, "Replace personal data by placeholders.", aliases=("--scrub",))
    pii_kinds: list[Literal["url_secret", "email", "card", "ip", "phone"]] = opt(
        ["url_secret", "email", "card", "ip", "phone"], "What --scrub-pii replaces."
    )
    merge_across_sessions: bool = opt(False, "Merge the same prompt+response across sessions.")
    workers: int = opt(1, WORKERS.format("inputs over 200,000 rows"), ge=0)
    batch_rows: int = opt(16_384, BATCH_ROWS, ge=1)
    part_rows: int = opt(0, PART_ROWS, ge=0)


@dataclass(frozen=True)
class NormalizeConfig:
    explicit_weight: float = opt(1.0, "Weight of explicit feedback (thumbs, ratings).", gt=0)
    implicit_weight: float = opt(0.3, "Weight of implicit feedback (replies).", gt=0)
    behavioral_weight: float = opt(0.2, "Weight of behavioral feedback (copy, dwell).", gt=0)
    rating_scale: float = opt(5.0, "Top of the rating scale when an event gives none.", gt=0)
    positive_threshold: float = opt(
        0.5, "label = 1 when score >= threshold.", aliases=("--threshold",), ge=0, le=1
    )
    label_scores: dict[str, float] = opt({}, "Overrides: label=score, e.g. verbose=0.2")
    kind_scores: dict[str, float] = opt({}, "Overrides: kind=score, e.g. copy=1.0")
    dwell_positive_ms: float = opt(10_000.0, "Dwell at least this long is positive.", ge=0)
    dwell_negative_ms: float = opt(2_000.0, "Dwell shorter than this is negative.", ge=0)
    conflict: Literal["latest", "mean"] = opt(
        "latest", "Within a tier: latest (newest event wins) or mean."
    )
    partition_rows: int = opt(50_000, "Rows per in-memory group partition.", ge=1)
    workers: int = opt(1, WORKERS.format("inputs over 200,000 rows"), ge=0)
    batch_rows: int = opt(16_384, BATCH_ROWS, ge=1)
    part_rows: int = opt(0, PART_ROWS, ge=0)


@dataclass(frozen=True)
class SplitConfig:
    key: Literal["session_id", "user_id", "group_id"] = opt(
        "session_id", "No value of this column lands in two splits."
    )
    ratios: tuple[float, float, float] = opt((0.8, 0.1, 0.1), "train,val,test", check=_shares)
    seed: int = opt(0, "Seed of the key hash.")
    unlabeled: Literal["keep", "drop"] = opt("keep", "Rows without signal: keep (LM-only) or drop.")
    batch_rows: int = opt(16_384, BATCH_ROWS, ge=1)
    part_rows: int = opt(0, PART_ROWS, ge=0)


@dataclass(frozen=True)
class SynthConfig:
    sessions: int = opt(200, "Number of sessions.", ge=0)
    seed: int = opt(0, "Random seed.")
    files: int = opt(4, "Number of files.", ge=1)
    fault_rate: float = opt(0.01, "Share of deliberately faulty lines.", ge=0, le=0.5)
    compress: Literal["none", "gzip", "zstd"] = opt("none", "File compression.")


@dataclass(frozen=True)
class InspectConfig:
    rows: int = opt(5, "Rows to show.", ge=0)


@dataclass(frozen=True)
class ExportConfig:
    format: Literal["trl-kto", "trl-dpo", "trl-sft", "jsonl"] = opt(
        help="What to write: TRL's KTO, DPO or SFT records, or plain JSONL.", short="-f"
    )


# --- model stages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitConfig:
    base: str = opt("tiny", "tiny | LOCAL_PATH | model.gguf | HUB_ID")
    preset: str = opt("tiny", "Size of the tiny base: tiny|small|125m.", choices=_presets)
    layers: int | None = opt(None, "Layers (tiny base; default from --preset).", ge=1)
    hidden: int | None = opt(None, "Hidden size (tiny base).", ge=1)
    heads: int | None = opt(None, "Attention heads (tiny base).", ge=1)
    vocab_size: int = opt(2048, "BPE vocabulary trained on the data (tiny base).", ge=1)
    max_length: int = opt(512, "Context length (tiny base).", ge=1)
    data: str | None = opt(None, "Train split to train the tokenizer on (tiny base).")
    trust_remote_code: bool = opt(False, "Allow a hub model's own code.")
    gguf_file: str | None = opt(None, "A .gguf file inside a --base folder or hub repo.")
    seed: int = opt(0, "Random seed of the weights.")


@dataclass(frozen=True)
class TrainConfig:
    objective: Literal["sft", "filtered", "weighted", "unlikelihood", "kto", "dpo"] = opt(
        "sft", "What L_M learns from the feedback (docs/objectives.md)."
    )
    feedback_loss: Literal["auto", "bce", "mse", "token", "none"] = opt("auto", "L_F's loss.")
    lambda_: float | None = opt(
        None, "Weight of L_F in L = L_M + lambda * L_F (none: by the base, docs/training.md).", ge=0
    )
    max_steps: int | None = opt(None, "Optimizer steps (none: from --epochs).", ge=0)
    epochs: float = opt(1.0, "Passes over the train split (fractions allowed).", gt=0)
    lr: float | None = opt(
        None, "Peak learning rate (none: by the base and objective, docs/training.md).", gt=0
    )
    weight_decay: float = opt(0.0, "AdamW weight decay (not on norms and biases).", ge=0)
    warmup_steps: int | None = opt(
        None, "Linear warmup steps, at most half the run (none: by the base).", ge=0
    )
    batch_size: int = opt(16, "Sequences per micro-batch (upper bound).", ge=1)
    batch_tokens: int = opt(8192, "Token budget per micro-batch.", ge=1)
    grad_accum: int = opt(1, "Micro-batches per optimizer step.", ge=1)
    max_length: int = opt(512, "Truncate sequences to this many tokens.", ge=1)
    clip: float = opt(1.0, "Gradient-norm clipping (0 = off).", ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt("auto", "Forward precision.")
    device: str = opt("auto", "auto|cpu|cuda[:N]")
    grad_checkpointing: bool = opt(False, "Recompute activations in the backward.")
    compile: bool = opt(False, "torch.compile the model.")
    compile_scope: Literal["layers", "model"] = opt(
        "layers", "With --compile: each decoder layer (one shared graph) or the whole backbone."
    )
    lora: bool = opt(False, "Train LoRA adapters (peft).")
    lora_r: int = opt(8, "LoRA rank.", ge=1)
    lora_alpha: int = opt(16, "LoRA alpha.", ge=1)
    eval_every: int = opt(50, "Validate every N steps and at the end (0 = off).", ge=0)
    save_every: int = opt(50, "Step checkpoint every N steps (0 = none).", ge=0)
    keep_last: int = opt(2, "Step checkpoints kept.", ge=0)
    patience: int = opt(0, "Early stopping after N evals without improvement (0 = off).", ge=0)
    log_every: int = opt(10, "Log every N steps.", ge=0)
    seed: int = opt(0, "Random seed.")
    beta: float = opt(0.1, "KTO / DPO temperature.", gt=0)
    desirable_weight: float | None = opt(None, "KTO (none: from the label ratio).", ge=0)
    undesirable_weight: float | None = opt(None, "KTO (none: from the label ratio).", ge=0)
    kto_reference: Literal["mismatched", "batch"] = opt(
        "mismatched",
        "KTO's reference point: from mismatched prompt/answer pairs (paper, TRL) or the batch.",
    )
    pref_sft: float | None = opt(
        None,
        "kto/dpo: weight of an SFT term on desirable/chosen rows (none: 1).",
        ge=0,
    )
    unlikelihood_alpha: float = opt(1.0, "Weight of the unlikelihood term.", ge=0)
    max_pairs_per_group: int = opt(8, "DPO: pairs made within one group_id.", ge=1)
    fsdp: bool = opt(False, "FSDP2 sharding under torchrun (with --nproc).")
    packing: Literal["auto", "on", "off"] = opt(
        "auto", "Padding-free packed rows (auto: on a GPU only)."
    )
    attention: Literal["auto", "sdpa", "eager", "flex_attention"] = opt(
        "auto", "Attention kernel (auto: flex_attention for packed rows on a GPU, else sdpa)."
    )
    report_to: str = opt(
        "auto",
        "Curves also to tensorboard|wandb|mlflow (comma-separated), none, or auto: TensorBoard"
        " event files in OUT/tensorboard when tensorboard is installed.",
    )


@dataclass(frozen=True)
class EvaluateConfig:
    generate: bool = opt(False, "Generate answers to the test prompts.")
    max_new_tokens: int = opt(48, "Longest generated answer.", ge=1)
    do_sample: bool = opt(False, "Sample instead of greedy decoding.", aliases=("--sample",))
    temperature: float = opt(1.0, "Sampling temperature.", gt=0)
    best_of: int = opt(1, "Rerank N samples by the feedback head.", ge=1)
    batch_size: int = opt(16, "Rows per scoring batch (upper bound).", ge=1)
    batch_tokens: int = opt(16_384, "Padded-token budget per scoring batch.", ge=1)
    max_length: int = opt(512, "Longer rows are cut as in training.", ge=1)
    max_rows: int | None = opt(None, "Evaluate the first N rows only.", ge=1)
    calibration_bins: int = opt(10, "Bins of the calibration table.", ge=1)
    device: str = opt("auto", "auto|cpu|cuda[:N]")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = opt(
        "auto", "Weights' dtype for scoring and generation (auto: bf16 on a GPU, fp32 on CPU)."
    )
    seed: int = opt(0, "Seed of sampling.")


@dataclass(frozen=True)
class ExplainConfig:
    limit: int | None = opt(None, "Explain the first N rows only.", ge=1)
    max_length: int = opt(512, "Longer rows are cut as in training.", ge=1)
    batch_size: int = opt(16, "Rows per forward batch.", ge=1)
    device: str = opt("auto", "auto|cpu|cuda[:N]")


# --- orchestration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    from_stage: str | None = opt(None, "First stage to run.", aliases=("--from",))
    until_stage: str | None = opt(None, "Last stage to run.", aliases=("--until",))
    force: bool = opt(False, "Rerun stages even when up to date.")


@dataclass(frozen=True)
class OnlineConfig:
    interval: float = opt(300.0, "Seconds between rounds.", ge=0)
    replay_ratio: float = opt(1.0, "Replayed old rows per new row.", ge=0)
    min_new_rows: int = opt(1, "Skip training when fewer new rows arrived.", ge=0)
    gate_tolerance: float = opt(0.02, "Allowed relative regression of each gate metric.", ge=0)
    gate_metrics: list[str] = opt(["nll_pos", "brier"], "Gate metrics (lower is better).")
    gate_max_rows: int | None = opt(2_000, "Rows of the frozen gate set scored.", ge=1)
    val_max_rows: int | None = opt(2_000, "Validation rows of a round's training.", ge=1)
    gate_refresh: int = opt(0, "Refreeze the gate from the newest test rows every N rounds.", ge=0)
    max_steps: int = opt(50, "Training steps per round.", ge=0)
    keep_versions: int = opt(10, "Newest versions kept on disk (0 = all).", ge=0)
    seed: int = opt(0, "Seed of replay sampling.")
    incremental: bool = opt(True, "Recompute only the sessions new lines touch.")
    part_mb: float = opt(16.0, "Raw lines per data part (MB), incremental rounds.", gt=0)
    keep_consumed: bool = opt(True, "Keep consumed/ once its lines are in the parts.")


@dataclass(frozen=True)
class ServeConfig:
    host: str = opt("127.0.0.1", "Address to listen on (0.0.0.0: every interface).")
    port: int = opt(8000, "Port (0: any free port, printed at start).", ge=0, le=65535)
    api_key: str | None = opt(None, "Require 'Authorization: Bearer KEY' on /v1/*.")
    device: str = opt("auto", "auto|cpu|cuda[:N] (bf16 on a GPU).")
    concurrency: int = opt(4, "Generations running at once.", ge=1)
    threads: int = opt(0, "Torch CPU threads; 0: cores / concurrency, at least 1.", ge=0)
    max_queue: int = opt(256, "Requests waiting for a slot before 503.", ge=0)
    max_tokens: int = opt(1024, "Largest max_tokens a request may ask for.", ge=1)
    default_max_tokens: int = opt(256, "max_tokens when a request gives none.", ge=1)
    max_n: int = opt(8, "Largest n (choices per request).", ge=1)
    max_body_bytes: int = opt(1 << 20, "Largest request body.", ge=1)
    rotate_mb: float = opt(64.0, "Start a new log file past this size.", gt=0)
    rotate_seconds: float = opt(0.0, "Start a new log file after this age (0: never).", ge=0)
    upstream_model: str | None = opt(None, "Model name /v1/models reports in --upstream mode.")


STAGE_CONFIGS: dict[str, type] = {
    "collect": CollectConfig,
    "clean": CleanConfig,
    "normalize": NormalizeConfig,
    "split": SplitConfig,
    "synth": SynthConfig,
    "inspect": InspectConfig,
    "export": ExportConfig,
    "init": InitConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "pipeline": PipelineConfig,
    "online": OnlineConfig,
    "explain": ExplainConfig,
    "serve": ServeConfig,
}


def read_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """Parse a TOML file, turning a missing or malformed file into a one-line ConfigError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_toml(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """The tables of a TOML config file (or of an already merged ``{table: {key: value}}``,
    as the CLI passes after ``--set``), checked against the known stages and their keys."""
    if source is None:
        return {}
    where = "config" if isinstance(source, Mapping) else str(source)
    data = dict(source) if isinstance(source, Mapping) else read_toml(Path(source), "config file")
    unknown = sorted(set(data) - set(STAGE_CONFIGS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown table(s) {', '.join(unknown)}; known: {', '.join(STAGE_CONFIGS)}"
        )
    for stage, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: [{stage}] must be a table")
        cls = STAGE_CONFIGS[stage]
        bad = sorted(k for k in table if option(cls, k) is None)
        if bad:
            raise ConfigError(
                f"{where} [{stage}]: unknown key(s) {', '.join(bad)}; known: {known_keys(cls)}"
            )
    return data


def table_of(cls: type) -> str:
    """The TOML table of a config class (``TrainConfig`` -> ``train``)."""
    return next((t for t, c in STAGE_CONFIGS.items() if c is cls), cls.__name__)


def build(cls: type[C], table: Mapping[str, Any] | None = None, **overrides: Any) -> C:
    """Make a checked ``cls`` from a TOML table plus overrides (``None`` overrides are ignored)."""
    values = dict(table or {})
    for key, value in overrides.items():
        if value is not None:
            values = {k: v for k, v in values.items() if option(cls, k) is not option(cls, key)}
            values[key] = value
    return make(cls, values, f"[{table_of(cls)}]")


def stage_config(stage: str, config_path: str | Path | None, **overrides: Any):
    """The config of ``stage`` from ``--config`` (its table) and command-line overrides."""
    data = load_toml(config_path)
    return build(STAGE_CONFIGS[stage], data.get(stage, {}), **overrides)


def as_dict(cfg: Any) -> dict[str, Any]:
    """A config as a plain dict (for artifact metadata and fingerprints)."""
    return {f.name.rstrip("_"): getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
