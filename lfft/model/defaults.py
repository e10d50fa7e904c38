"""Training defaults that follow the base: a model trained from scratch needs other settings than
a pretrained one.

``lfft init`` records in ``lfft.json`` whether its base is pretrained (``tiny``: random weights,
trained from scratch; a local folder, a ``.gguf`` file or a Hub id: pretrained). ``lfft train``
leaves ``lr``, ``warmup_steps``, ``lambda`` and ``pref_sft`` unset (``None``) unless the user
gives them, and :func:`resolve` fills each unset one from that record and the objective, once,
before training:

- from scratch (the tiny base): ``lr`` 1e-3, 10 warmup steps, λ 0.5 for every objective;
- pretrained: the learning rates of the anchor recipes (TRL, LLaMA-Factory, torchtune;
  ``docs/training.md`` cites each): 2e-5 for the likelihood objectives (sft, filtered, weighted,
  unlikelihood), 5e-6 for the preference objectives that pull against a frozen reference (kto,
  dpo); with ``--lora`` 1e-4 and 1e-5, since only the adapters learn;
- ``pref_sft`` (the SFT term on desirable / chosen rows) 1 for kto and dpo, on any base.

A value the user gives (``--lr``, a TOML key) always wins. Checkpoints written before lfft
recorded the flag are judged by the base they name (``base_kind``, else ``base``): ``tiny`` is
from scratch, anything else pretrained; with no record at all, from scratch (the old defaults).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lfft.config import TrainConfig

AUTO_FIELDS = ("lr", "warmup_steps", "lambda_", "pref_sft")  # None means "auto" in TrainConfig

SCRATCH = {"lr": 1e-3, "warmup_steps": 10, "lambda_": 0.5}  # the tiny base, every objective
PREFERENCE = ("kto", "dpo")  # objectives against a frozen reference: smaller steps
PRETRAINED_LR = {"likelihood": 2e-5, "preference": 5e-6}
PRETRAINED_LORA_LR = {"likelihood": 1e-4, "preference": 1e-5}
PRETRAINED = {"warmup_steps": 10, "lambda_": 0.5}
# the SFT term on desirable / chosen rows (LLaMA-Factory's pref_ftx, TRL's rpo_alpha): without it
# kto and dpo from a base that cannot yet answer right push the wrong answers down without
# pulling the right ones up (docs/objectives.md, docs/learning-proof.md)
PREF_SFT = {"kto": 1.0, "dpo": 1.0}


@dataclass(frozen=True)
class Chosen:
    """What :func:`resolve` decided, for the summary and ``lfft.json``."""

    pretrained: bool
    why: str  # how the base's kind was found
    values: dict[str, Any]  # field -> value used
    given: tuple[str, ...]  # fields the user set; the others are automatic
    objective: str

    def source(self, name: str) -> str:
        """Where the value of field ``name`` came from."""
        if name in self.given:
            return "given"
        if name == "pref_sft":
            return f"auto: {self.objective}"
        base = "pretrained base" if self.pretrained else "base trained from scratch"
        return f"auto: {base}, {self.objective}" if name == "lr" else f"auto: {base}"

    def summary(self) -> dict[str, str]:
        """Summary lines: each value and where it came from, and the base's kind."""
        lines = {"base": f"{'pretrained' if self.pretrained else 'from scratch'} ({self.why})"}
        for name, value in self.values.items():
            if name == "pref_sft" and self.objective not in PREFERENCE:
                continue  # only kto and dpo have the term
            lines[_LABELS[name]] = f"{value:g} ({self.source(name)})"
        return lines

    def record(self) -> dict[str, Any]:
        """``lfft.json`` entries: ``pretrained`` (which a run starting from this checkpoint
        reads) and ``defaults``: each value and where it came from."""
        values = {
            k.rstrip("_"): {"value": v, "from": self.source(k)} for k, v in self.values.items()
        }
        return {"pretrained": self.pretrained, "defaults": {"pretrained_from": self.why, **values}}


_LABELS = {"lr": "lr", "warmup_steps": "warmup steps", "lambda_": "lambda", "pref_sft": "pref sft"}


def auto_values(objective: str, pretrained: bool, lora: bool = False) -> dict[str, Any]:
    """The automatic ``lr``, ``warmup_steps``, ``lambda_`` and ``pref_sft`` for this objective
    and base."""
    pref_sft = PREF_SFT.get(objective, 0.0)
    if not pretrained:
        return {**SCRATCH, "pref_sft": pref_sft}
    kind = "preference" if objective in PREFERENCE else "likelihood"
    lr = (PRETRAINED_LORA_LR if lora else PRETRAINED_LR)[kind]
    return {"lr": lr, **PRETRAINED, "pref_sft": pref_sft}


def is_pretrained(info: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a checkpoint's ``lfft.json`` says its weights come from a pretrained base, and
    how that was found (checkpoints made before the flag existed are judged by their base)."""
    if isinstance(info.get("pretrained"), bool):
        return info["pretrained"], "recorded by lfft init"
    kind = info.get("base_kind") or info.get("base")
    if isinstance(kind, str):
        return kind != "tiny", f"inferred from its base ({kind}): made before lfft recorded it"
    return False, "not recorded: treated as trained from scratch"


def resolve(cfg: TrainConfig, info: Mapping[str, Any]) -> tuple[TrainConfig, Chosen]:
    """``cfg`` with every unset :data:`AUTO_FIELDS` filled in for the starting checkpoint whose
    ``lfft.json`` is ``info``; given values are kept as they are."""
    pretrained, why = is_pretrained(info)
    auto = auto_values(cfg.objective, pretrained, cfg.lora)
    given = tuple(f for f in AUTO_FIELDS if getattr(cfg, f) is not None)
    values = {f: getattr(cfg, f) if f in given else auto[f] for f in AUTO_FIELDS}
    chosen = Chosen(pretrained, why, values, given, cfg.objective)
    return dataclasses.replace(cfg, **values), chosen
