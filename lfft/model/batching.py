"""From split rows to tensor batches: chat-template rendering, tokenization, length grouping,
packing.

An :class:`Example` is one (prompt, response) token sequence: the prompt is rendered with the
tokenizer's chat template from ``context`` + ``prompt`` (with the generation prompt), the response
(``response``, or ``target`` with ``use_target``) follows and ends with eos. Padded batches
(:func:`collate`) group examples of similar length and are right-padded; packed batches
(:func:`pack`) lay examples end to end in rows. Either way examples stay independent: an
example's outputs never depend on the others in its batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

from lfft.errors import ConfigError

SIGNAL_CODES = {"none": 0, "binary": 1, "scalar": 2, "pairwise": 3, "token": 4}
NAN = float("nan")
PACKING = ("auto", "on", "off")


@dataclass(slots=True)
class Example:
    """One tokenized row. ``ids[:prompt_len]`` is the prompt, the rest the response (+ eos)."""

    ids: list[int]
    prompt_len: int
    row: int  # index into the rows list it came from
    label: float = NAN  # 1 good / 0 bad / nan
    score: float = NAN  # in [0, 1] / nan
    weight: float = 1.0
    signal: str = "none"
    group: str = ""
    token_labels: list[float] | None = None  # per response token: 1 keep / 0 modify / -1 ignore
    is_target: bool = False  # the text is the user's correction, not the logged response
    edited: bool = False  # the row has a correction (its target differs from its response)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Batch:
    """Right-padded tensors of a list of examples (see ``docs/training.md``)."""

    input_ids: torch.Tensor  # (B,T) long
    attention_mask: torch.Tensor  # (B,T) long, 1 on real tokens
    position_ids: torch.Tensor  # (B,T) long
    response_mask: torch.Tensor  # (B,T) bool, True where the token is a response token
    token_labels: torch.Tensor  # (B,T) float, 1 keep / 0 modify / -1 ignore
    last_index: torch.Tensor  # (B,) long, position of the last response token (eos)
    score: torch.Tensor  # (B,) float, nan if null
    label: torch.Tensor  # (B,) float, nan if null
    weight: torch.Tensor  # (B,) float
    row: torch.Tensor  # (B,) long, index into the rows list
    signal: torch.Tensor  # (B,) long, SIGNAL_CODES
    is_target: torch.Tensor  # (B,) bool
    edited: torch.Tensor  # (B,) bool
    response_index: torch.Tensor  # (N,) long, flat indices b*T+t of response tokens
    tokens: int = 0  # real (non-pad) tokens
    positions: int = 0  # positions the model computes: B*T, or P*Tp when packed
    # Packed (see :func:`pack`): the model runs on P rows of several examples each; every field
    # above keeps the logical (B,T) layout, and ``gather`` maps it back from the packed rows.
    pack_ids: torch.Tensor | None = None  # (P,Tp) long
    pack_pos: torch.Tensor | None = None  # (P,Tp) long, restarting at 0 for each example
    gather: torch.Tensor | None = None  # (B*T,) long: flat index in P*Tp of each b*T+t (pad: 0)

    def to(self, device: torch.device | str) -> Batch:
        moved = {
            f.name: getattr(self, f.name).to(device, non_blocking=True)
            if isinstance(getattr(self, f.name), torch.Tensor)
            else getattr(self, f.name)
            for f in fields(self)
        }
        return Batch(**moved)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def render_prompt(tokenizer, row: Mapping[str, Any]) -> str:
    """The chat-template text of a row's ``context`` + ``prompt``, ending in the assistant cue."""
    messages = [
        {"role": m["role"], "content": m["content"] or ""} for m in row.get("context") or ()
    ]
    messages.append({"role": "user", "content": row.get("prompt") or ""})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_ids(tokenizer, rows: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Token ids of each row's rendered prompt (what generation continues)."""
    texts = [render_prompt(tokenizer, r) for r in rows]
    return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []


def encode(
    tokenizer,
    rows: Sequence[Mapping[str, Any]],
    max_length: int,
    use_target: bool = False,
) -> list[Example]:
    """Tokenize rows (NORMALIZED/SPLIT dicts) into examples; ``row`` indexes ``rows``.

    Too long: the prompt loses tokens from its start (down to half of ``max_length``), then the
    response from its end. Rows left with no response token are dropped.
    """
    if not rows:
        return []
    texts = [(r["target"] if use_target and r.get("target") else r["response"]) or "" for r in rows]
    prompts = prompt_ids(tokenizer, rows)
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    eos = tokenizer.eos_token_id
    out = []
    for i, row in enumerate(rows):
        p, resp = prompts[i], enc["input_ids"][i] + [eos]
        r_keep = min(len(resp), max_length - min(len(p), max_length // 2))
        p_keep = min(len(p), max_length - r_keep)
        if r_keep <= 0 or p_keep <= 0:
            continue
        edited = bool(row.get("target")) and row.get("target") != row.get("response")
        spans = None if use_target else row.get("token_spans")
        out.append(
            Example(
                ids=p[len(p) - p_keep :] + resp[:r_keep],
                prompt_len=p_keep,
                row=i,
                label=_num(row.get("label")),
                score=_num(row.get("score")),
                weight=float(row.get("weight") or 1.0),
                signal=row.get("signal") or "none",
                group=row.get("group_id") or "",
                token_labels=_token_labels(spans, enc["offset_mapping"][i], r_keep),
                is_target=use_target and edited,
                edited=edited,
            )
        )
    return out


def _num(value: Any) -> float:
    return NAN if value is None else float(value)


def _token_labels(spans, offsets: Sequence[tuple[int, int]], n: int) -> list[float] | None:
    """Character spans (1 keep / 0 modify) -> one label per response token (-1: no span).

    A token touching any modify span is 0 (modify wins); the final eos is -1.
    """
    if not spans:
        return None
    labels = []
    for start, end in list(offsets)[:n]:
        label = -1.0
        for s in spans:
            if s["start"] < end and start < s["end"]:
                if s["label"] == 0:
                    label = 0.0
                    break
                label = 1.0
        labels.append(label)
    return labels + [-1.0] * (n - len(labels))


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad examples into a :class:`Batch` (on the CPU; call ``.to(device)``)."""
    b, t = len(examples), max(len(e) for e in examples)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    attn = torch.zeros((b, t), dtype=torch.long)
    resp = torch.zeros((b, t), dtype=torch.bool)
    tok_labels = torch.full((b, t), -1.0)
    for i, e in enumerate(examples):
        n = len(e)
        ids[i, :n] = torch.tensor(e.ids)
        attn[i, :n] = 1
        resp[i, e.prompt_len : n] = True
        if e.token_labels is not None:
            tok_labels[i, e.prompt_len : n] = torch.tensor(e.token_labels)
    lengths = [len(e) for e in examples]
    return Batch(
        input_ids=ids,
        attention_mask=attn,
        position_ids=torch.arange(t).expand(b, t).contiguous(),
        response_mask=resp,
        token_labels=tok_labels,
        last_index=torch.tensor([n - 1 for n in lengths]),
        score=torch.tensor([e.score for e in examples]),
        label=torch.tensor([e.label for e in examples]),
        weight=torch.tensor([e.weight for e in examples]),
        row=torch.tensor([e.row for e in examples]),
        signal=torch.tensor([SIGNAL_CODES.get(e.signal, 0) for e in examples]),
        is_target=torch.tensor([e.is_target for e in examples]),
        edited=torch.tensor([e.edited for e in examples]),
        response_index=resp.view(-1).nonzero().squeeze(1),
        tokens=sum(lengths),
        positions=b * t,
    )


AUTO_PACK_PAD_SHARE = 0.25  # --packing auto packs above this share of pad positions


def use_packing(mode: str, padded_share: float) -> bool:
    """``--packing``: ``on``/``off``, or ``auto``: packed rows when length-grouped padding would
    waste more than :data:`AUTO_PACK_PAD_SHARE` of the positions (``padded_share``).

    Packed rows cost more per token than short padded rows (attention runs over whole packed rows,
    under a block-diagonal mask): on the CPU 10-30% at 1-2.5% padding, on an H200 (sdpa) 7% at 9%;
    they win where padding is large, as in DPO pairs of mixed lengths (docs/training.md)."""
    if mode not in PACKING:
        raise ConfigError(f"--packing {mode!r}: expected one of {', '.join(PACKING)}")
    return mode == "on" or (mode == "auto" and padded_share > AUTO_PACK_PAD_SHARE)


def plan_pad_share(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """The share of pad positions of padded ``batches`` (index lists into ``lengths``)."""
    positions = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return pad_share(sum(lengths[i] for b in batches for i in b), positions)


def pack(examples: Sequence[Example], pad_id: int, pack_length: int) -> Batch:
    """A :func:`collate` batch whose model input is packed: the examples are laid end to end in
    rows of at most ``pack_length`` tokens (see :func:`pack_rows`; a longer example has a row of
    its own), positions restart at 0 for each example, and ``gather`` maps the logical (B,T)
    layout into the packed rows. ``positions`` counts the packed rows' positions (P*Tp)."""
    batch = collate(examples, pad_id)
    lengths = [len(e) for e in examples]
    rows = pack_rows(lengths, pack_length)
    width = max(sum(lengths[i] for i in r) for r in rows)
    t = batch.input_ids.shape[1]
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    gather = torch.zeros(len(examples) * t, dtype=torch.long)
    for r, row in enumerate(rows):
        offset = 0
        for i in row:
            n = lengths[i]
            ids[r, offset : offset + n] = batch.input_ids[i, :n]
            pos[r, offset : offset + n] = torch.arange(n)
            gather[i * t : i * t + n] = torch.arange(r * width + offset, r * width + offset + n)
            offset += n
        pos[r, offset:] = torch.arange(width - offset)  # the tail: a pad "example" of its own
    batch.pack_ids, batch.pack_pos, batch.gather = ids, pos, gather
    batch.positions = len(rows) * width
    return batch


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices of ``lengths`` in as few rows of at most ``capacity`` tokens as first-fit-decreasing
    finds, then spread over that many rows longest first onto the emptiest one (when that makes
    the widest row narrower: every row is padded to it)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    loads: list[int] = []
    for i in order:
        r = next((r for r, load in enumerate(loads) if load + lengths[i] <= capacity), None)
        if r is None:
            rows.append([])
            loads.append(0)
            r = len(rows) - 1
        rows[r].append(i)
        loads[r] += lengths[i]
    even: list[list[int]] = [[] for _ in rows]
    even_loads = [0] * len(rows)
    for i in order:
        r = min(range(len(rows)), key=even_loads.__getitem__)
        even[r].append(i)
        even_loads[r] += lengths[i]
    return even if max(even_loads) < max(loads) else rows


def plan(
    lengths: Sequence[int],
    batch_size: int,
    batch_tokens: int,
    shuffle: bool = False,
    seed: int = 0,
    group: int = 1,
    packed: bool = False,
    mixed: bool = False,
) -> list[list[int]]:
    """Index lists of length-grouped batches: at most ``batch_size`` sequences and
    ``batch_tokens`` padded positions each; consecutive runs of ``group`` indices stay together
    (DPO pairs). Shuffled: random mega-batches of 64 batches, each sorted by length, cut into
    batches, batch order shuffled; deterministic for a seed. Not shuffled: sorted by length.

    ``packed`` (for :func:`pack`): no length grouping; the (shuffled) examples are cut into
    batches of at most ``batch_size`` sequences and ``batch_tokens`` real tokens. ``mixed``: the
    same cut for padded batches (objectives.MIXED_BATCHES), ``batch_tokens`` counting padded
    positions.
    """
    units = [list(range(i, min(i + group, len(lengths)))) for i in range(0, len(lengths), group)]
    rng = random.Random(seed)
    if packed or mixed:
        if shuffle:
            rng.shuffle(units)
        return _cut_by_tokens(units, lengths, batch_size, batch_tokens, padded=not packed)
    if shuffle:
        rng.shuffle(units)
        mega = max(1, 64 * max(1, batch_size // group))
        chunks = [units[i : i + mega] for i in range(0, len(units), mega)]
    else:
        chunks = [units]
    out: list[list[int]] = []
    for chunk in chunks:
        chunk = sorted(chunk, key=lambda u: max(lengths[j] for j in u), reverse=True)
        cur: list[int] = []
        width = 0
        for u in chunk:
            w = max(width, max(lengths[j] for j in u))
            if cur and (len(cur) + len(u) > batch_size or w * (len(cur) + len(u)) > batch_tokens):
                out.append(cur)
                cur, w = [], max(lengths[j] for j in u)
            cur.extend(u)
            width = w
        if cur:
            out.append(cur)
    if shuffle:
        rng.shuffle(out)
    return out


def _cut_by_tokens(
    units: list[list[int]],
    lengths: Sequence[int],
    batch_size: int,
    batch_tokens: int,
    padded: bool = False,
) -> list[list[int]]:
    """Consecutive units into batches within ``batch_size`` sequences and ``batch_tokens``
    tokens: real ones, or with ``padded`` the positions of the batch padded to its longest."""
    out: list[list[int]] = []
    cur: list[int] = []
    tokens = width = 0
    for u in units:
        n = sum(lengths[j] for j in u)
        w = max(width, max(lengths[j] for j in u))
        cost = w * (len(cur) + len(u)) if padded else tokens + n
        if cur and (len(cur) + len(u) > batch_size or cost > batch_tokens):
            out.append(cur)
            cur, tokens, w = [], 0, max(lengths[j] for j in u)
        cur.extend(u)
        tokens += n
        width = w
    if cur:
        out.append(cur)
    return out


def batches(
    examples: Sequence[Example],
    batch_size: int,
    batch_tokens: int,
    shuffle: bool = False,
    seed: int = 0,
    group: int = 1,
) -> Iterator[list[Example]]:
    """Length-grouped lists of examples (see :func:`plan`)."""
    for idx in plan([len(e) for e in examples], batch_size, batch_tokens, shuffle, seed, group):
        yield [examples[i] for i in idx]


def pad_share(tokens: int, positions: int) -> float:
    return 0.0 if positions == 0 else 1.0 - tokens / positions
