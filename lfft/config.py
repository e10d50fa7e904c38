"""Stage configs: one frozen dataclass per stage, loadable from one TOML file (a table per stage).

Precedence: command-line option > ``[stage]`` table of ``--config`` > dataclass default. An
unknown table or key is an error, so a typo never silently does nothing. TOML keys may use
``-`` or ``_``; ``lambda`` maps to the field ``lambda_``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lfft.errors import ConfigError

C = TypeVar("C")


# --- data stages -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectConfig:
    format: str = "auto"  # auto|events|trl|hh-rlhf|oasst|shp|ultrafeedback|finegrained|csv|...
    column_map: dict[str, str] = field(default_factory=dict)  # csv/parquet: lfft name -> column
    implicit: bool = True  # infer feedback from the user's next message
    implicit_rules: str | None = None  # path to a TOML file overriding lfft/data/implicit rules
    partitions: int = 32  # hash partitions of events by session (bounded memory)
    workers: int = 1  # processes reading/joining; 0 = auto (one per core, inputs > 512 MB)
    batch_rows: int = 16_384
    part_rows: int = 0  # rows per output part file; 0 = one file (a folder --out: 1M-row parts)


@dataclass(frozen=True)
class CleanConfig:
    min_response_chars: int = 1  # after stripping whitespace
    max_chars: int = 32_000  # context + prompt + response, in characters
    max_turns: int = 64  # context turns
    scrub_pii: bool = True
    pii_kinds: list[str] = field(
        default_factory=lambda: ["url_secret", "email", "card", "ip", "phone"]
    )  # what scrub_pii replaces (lfft/data/pii.py)
    merge_across_sessions: bool = False  # same prompt+response in other sessions -> one row
    workers: int = 1  # processes; 0 = auto (one per core above 200,000 rows)
    batch_rows: int = 16_384
    part_rows: int = 0  # rows per output part file; 0 = one file (a folder --out: 1M-row parts)


@dataclass(frozen=True)
class NormalizeConfig:
    explicit_weight: float = 1.0
    implicit_weight: float = 0.3
    behavioral_weight: float = 0.2
    rating_scale: float = 5.0  # default top of the scale when an event gives none
    positive_threshold: float = 0.5  # score >= threshold -> label 1
    label_scores: dict[str, float] = field(default_factory=dict)  # overrides label -> score
    kind_scores: dict[str, float] = field(default_factory=dict)  # overrides e.g. copy -> 1.0
    dwell_positive_ms: float = 10_000.0  # dwell at least this long -> positive
    dwell_negative_ms: float = 2_000.0  # dwell shorter than this -> negative; between: none
    conflict: str = "latest"  # within a tier: latest (newest event wins) | mean
    partition_rows: int = 50_000  # rows per in-memory group partition (bounded memory)
    workers: int = 1  # processes; 0 = auto (one per core above 200,000 rows)
    batch_rows: int = 16_384
    part_rows: int = 0  # rows per output part file; 0 = one file (a folder --out: 1M-row parts)


@dataclass(frozen=True)
class SplitConfig:
    key: str = "session_id"  # session_id|user_id|group_id
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)  # train, val, test
    seed: int = 0
    unlabeled: str = "keep"  # keep (LM-only training rows) | drop
    batch_rows: int = 16_384
    part_rows: int = 0  # rows per output part file; 0 = one file (a folder --out: 1M-row parts)


@dataclass(frozen=True)
class SynthConfig:
    sessions: int = 200
    seed: int = 0
    files: int = 4
    fault_rate: float = 0.01  # share of deliberately faulty lines
    compress: str = "none"  # none|gzip|zstd


# --- model stages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InitConfig:
    base: str = "tiny"  # tiny | local folder | .gguf file | hub id
    preset: str = "tiny"  # size preset for the built-in base (tiny|small|125m)
    layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    vocab_size: int = 2048  # BPE vocabulary trained on the data (tiny base)
    max_length: int = 512
    data: str | None = None  # train split to train the tokenizer on
    trust_remote_code: bool = False
    gguf_file: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    objective: str = "sft"  # sft|filtered|weighted|unlikelihood|kto|dpo
    feedback_loss: str = "auto"  # auto|bce|mse|token|none
    lambda_: float | None = None  # None: by the base (lfft/model/defaults.py)
    max_steps: int | None = None
    epochs: float = 1.0
    lr: float | None = None  # None: by the base and objective (lfft/model/defaults.py)
    weight_decay: float = 0.0
    warmup_steps: int | None = None  # None: by the base (lfft/model/defaults.py)
    batch_size: int = 16  # sequences per micro-batch (upper bound)
    batch_tokens: int = 8192  # token budget per micro-batch
    grad_accum: int = 1
    max_length: int = 512
    clip: float = 1.0
    precision: str = "auto"  # auto|fp32|bf16|fp16
    device: str = "auto"  # auto|cpu|cuda
    grad_checkpointing: bool = False
    compile: bool = False
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    eval_every: int = 50
    save_every: int = 50
    keep_last: int = 2
    patience: int = 0  # early stopping after this many evals without improvement (0 = off)
    log_every: int = 10
    seed: int = 0
    beta: float = 0.1  # KTO / DPO temperature
    desirable_weight: float | None = None  # KTO; default from the label ratio
    undesirable_weight: float | None = None
    unlikelihood_alpha: float = 1.0
    max_pairs_per_group: int = 8  # DPO: pairs made within one group_id
    fsdp: bool = False
    packing: str = "auto"  # auto|on|off: padding-free packed rows (auto: on a GPU only)


@dataclass(frozen=True)
class EvaluateConfig:
    generate: bool = False
    max_new_tokens: int = 48
    do_sample: bool = False
    temperature: float = 1.0
    best_of: int = 1  # rerank n samples by the feedback head
    batch_size: int = 16
    batch_tokens: int = 16_384  # padded-token budget per scoring batch
    max_length: int = 512  # longer rows are cut as in training (prompt start, then response end)
    max_rows: int | None = None
    calibration_bins: int = 10
    device: str = "auto"
    seed: int = 0


# --- orchestration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineConfig:
    from_stage: str | None = None
    until_stage: str | None = None
    force: bool = False


@dataclass(frozen=True)
class OnlineConfig:
    interval: float = 300.0  # seconds between rounds
    replay_ratio: float = 1.0  # replayed old rows per new row
    min_new_rows: int = 1  # skip training when fewer new rows arrived
    gate_tolerance: float = 0.02  # allowed relative regression of each gate metric
    gate_metrics: list[str] = field(default_factory=lambda: ["nll_pos", "brier"])  # lower=better
    gate_max_rows: int | None = 2_000  # rows of the frozen gate set that are scored
    max_steps: int = 50  # training steps per round
    keep_versions: int = 10  # newest versions kept on disk (current always kept; 0 = all)
    seed: int = 0  # replay sampling


STAGE_CONFIGS: dict[str, type] = {
    "collect": CollectConfig,
    "clean": CleanConfig,
    "normalize": NormalizeConfig,
    "split": SplitConfig,
    "synth": SynthConfig,
    "init": InitConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "pipeline": PipelineConfig,
    "online": OnlineConfig,
}


def read_toml(path: Path, what: str = "file") -> dict[str, Any]:
    """Parse a TOML file, turning a missing or malformed file into a one-line ConfigError."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_toml(path: str | Path | None) -> dict[str, Any]:
    """Read a TOML config and check its tables against the known stages."""
    if path is None:
        return {}
    path = Path(path)
    data = read_toml(path, "config file")
    unknown = sorted(set(data) - set(STAGE_CONFIGS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {', '.join(unknown)}; known: {', '.join(STAGE_CONFIGS)}"
        )
    for stage, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{stage}] must be a table")
        _check_keys(STAGE_CONFIGS[stage], table, f"{path} [{stage}]")
    return data


def _field_name(cls: type, key: str) -> str | None:
    names = {f.name for f in dataclasses.fields(cls)}
    for cand in (key, key.replace("-", "_"), key.replace("-", "_") + "_"):
        if cand in names:
            return cand
    return None


def _check_keys(cls: type, table: dict[str, Any], where: str) -> None:
    bad = [k for k in table if _field_name(cls, k) is None]
    if bad:
        known = ", ".join(f.name.rstrip("_") for f in dataclasses.fields(cls))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(bad))}; known: {known}")


def build(cls: type[C], table: dict[str, Any] | None = None, **overrides: Any) -> C:
    """Make a ``cls`` from a TOML table plus overrides (``None`` overrides are ignored)."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for key, value in (table or {}).items():
        name = _field_name(cls, key)
        if name is None:
            _check_keys(cls, {key: value}, cls.__name__)
        values[name] = value
    for key, value in overrides.items():
        if value is not None:
            values[_field_name(cls, key) or key] = value
    for name, value in values.items():
        values[name] = _coerce(value, hints[name], f"{cls.__name__}.{name.rstrip('_')}")
    try:
        return cls(**values)
    except TypeError as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def stage_config(stage: str, config_path: str | Path | None, **overrides: Any):
    """The config of ``stage`` from ``--config`` (its table) and command-line overrides."""
    data = load_toml(config_path)
    return build(STAGE_CONFIGS[stage], data.get(stage, {}), **overrides)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bool and isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        if hint is int and isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def as_dict(cfg: Any) -> dict[str, Any]:
    """A config as a plain dict (for artifact metadata and fingerprints)."""
    return {f.name.rstrip("_"): getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
