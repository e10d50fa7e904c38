"""Per-token explanations of (prompt, response) rows: the feedback head's keep/modify score per
token, the sequence score, the user's own keep/modify marks, and with a baseline the change in
log-probability per token (see ``docs/explain.md``).

The tokens, their labels and the forward pass are exactly those of training and evaluation:
:func:`lfft.model.batching.encode` turns the rows' ``token_spans`` into per-token labels and
:func:`lfft.model.forward.forward_batch` runs model and head, so what is shown is what was learnt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lfft.errors import ConfigError
from lfft.model import metrics as M
from lfft.model.batching import Example, batches, collate, encode
from lfft.model.forward import forward_batch


@dataclass
class Explanation:
    """One row explained. Per-token lists run over the response tokens kept (eos last)."""

    row: int  # index into the rows given
    interaction_id: str
    prompt: str
    response: str
    tokens: list[str]  # the text of each token ("" for eos); their concatenation is the response
    p_keep: list[float]  # head: P(keep) per token (1 - P(modify))
    labels: list[float]  # user marks: 1 keep / 0 modify / -1 none
    logp: list[float]  # log p(token | before) under the model
    delta: list[float] | None  # logp - the baseline's logp, per token (with a baseline)
    score: float  # head's sequence score: sigmoid of the logit at the last response token
    label: float  # the row's own label (nan if none)
    f1: float  # token F1 of "modify" against the user marks (nan without marks)

    @property
    def cut(self) -> bool:
        """The response was cut at ``max_length`` (its last token is not eos)."""
        return bool(self.tokens) and self.tokens[-1] != ""

    @property
    def marked(self) -> bool:
        return any(x >= 0 for x in self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "interaction_id": self.interaction_id,
            "score": _num(self.score),
            "label": _num(self.label),
            "token_f1": _num(self.f1),
            "tokens": len(self.tokens),
            "marked_tokens": sum(x >= 0 for x in self.labels),
        }


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _pieces(tokenizer, text: str, n: int) -> list[str]:
    """The text of the first ``n`` response tokens ("" for eos): a token's piece runs to the next
    token's start (the first from 0, the last kept to the end), so the pieces join to the text."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    k = min(n, len(offsets))
    starts = [0] + [offsets[i][0] for i in range(1, k)]
    starts.append(len(text) if k == len(offsets) else offsets[k][0])
    return [text[starts[i] : starts[i + 1]] for i in range(k)] + [""] * (n - k)


@torch.inference_mode()
def token_outputs(
    model, head, examples: Sequence[Example], pad_id: int, batch_size: int = 16
) -> dict[int, tuple[np.ndarray, np.ndarray | None, float | None]]:
    """Per example (by ``row``): response-token log-probs, head P(keep) and sequence score."""
    device = next(model.parameters()).device
    out: dict[int, tuple[np.ndarray, np.ndarray | None, float | None]] = {}
    for group in batches(examples, batch_size, 16_384):
        batch = collate(group, pad_id).to(device)
        fo = forward_batch(model, head, batch)
        for b, e in enumerate(group):
            span = slice(e.prompt_len, len(e))
            logp = fo.token_logps[b, span].double().cpu().numpy()
            if fo.fb_token_logits is None:
                out[e.row] = (logp, None, None)
                continue
            p = torch.sigmoid(fo.fb_token_logits[b, span]).double().cpu().numpy()
            seq = float(torch.sigmoid(fo.fb_seq_logits[b]))
            out[e.row] = (logp, p, seq)
    return out


def explain_rows(
    model,
    tokenizer,
    head,
    rows: Sequence[Mapping[str, Any]],
    *,
    baseline=None,
    max_length: int = 512,
    batch_size: int = 16,
) -> list[Explanation]:
    """Explain each row (rows left with no response token after truncation are left out)."""
    examples = encode(tokenizer, rows, max_length)
    ours = token_outputs(model, head, examples, tokenizer.pad_token_id, batch_size)
    theirs = {}
    if baseline is not None:
        theirs = token_outputs(baseline, None, examples, tokenizer.pad_token_id, batch_size)
    result = []
    for e in examples:
        row = rows[e.row]
        logp, p_keep, seq = ours[e.row]
        n = len(logp)
        labels = list(e.token_labels) if e.token_labels is not None else [-1.0] * n
        p = p_keep if p_keep is not None else np.full(n, np.nan)
        result.append(
            Explanation(
                row=e.row,
                interaction_id=str(row.get("interaction_id") or e.row),
                prompt=row.get("prompt") or "",
                response=row.get("response") or "",
                tokens=_pieces(tokenizer, row.get("response") or "", n),
                p_keep=p.tolist(),
                labels=labels,
                logp=logp.tolist(),
                delta=(logp - theirs[e.row][0]).tolist() if baseline is not None else None,
                score=seq if seq is not None else math.nan,
                label=math.nan if row.get("label") is None else float(row["label"]),
                f1=M.token_f1(labels, p) if e.token_labels is not None else math.nan,
            )
        )
    return result


def same_vocabulary(tokenizer, other) -> None:
    """A baseline must tokenize alike, or its per-token log-probs do not line up."""
    if tokenizer.get_vocab() != other.get_vocab():
        raise ConfigError("--baseline has another tokenizer: per-token log-probs do not line up")


def summary(explained: Sequence[Explanation]) -> dict[str, Any]:
    """metrics.json of ``lfft explain``: token F1 over all marked tokens and per row."""
    marked = [x for x in explained if x.marked]
    labels = np.concatenate([x.labels for x in marked]) if marked else np.zeros(0)
    probs = np.concatenate([x.p_keep for x in marked]) if marked else np.zeros(0)
    return {
        "rows": len(explained),
        "rows_marked": len(marked),
        "token": {
            "tokens": int((labels >= 0).sum()),
            "f1_modify": _num(M.token_f1(labels, probs)),
            "accuracy": _num(M.accuracy(labels[labels >= 0], probs[labels >= 0])),
            "mean_row_f1": _num(_mean([x.f1 for x in marked])),
        },
        "per_row": [x.to_json() for x in explained],
    }


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
