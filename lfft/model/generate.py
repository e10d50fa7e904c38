"""Batched generation for the test prompts: greedy or sampled, left-padded, stopping at eos.

Prompts arrive as token ids (rendered with the chat template by :mod:`lfft.model.batching`, so
generation sees exactly the prompt format training saw). ``best_of`` draws n samples per prompt
and keeps the one the feedback head scores highest (best-of-n reranking, as in Nakano et al.
2021, "WebGPT", https://arxiv.org/abs/2112.09332).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from lfft.model.throughput import Throughput

Scorer = Callable[[list[int], list[str]], list[float]]  # (prompt indices, texts) -> head scores


@torch.no_grad()
def generate_ids(
    model,
    prompts: Sequence[Sequence[int]],
    *,
    pad_id: int,
    eos_id: int,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    stats: Throughput | None = None,
) -> list[list[list[int]]]:
    """New tokens for each prompt (``num_return_sequences`` lists per prompt), eos excluded.

    Prompts are length-sorted into left-padded batches (little padding) decoded with the KV
    cache; the global RNG is left as it was (sampling runs in a forked RNG seeded with ``seed``).
    ``stats`` (when given) accumulates the tokens generated and the time spent.
    """
    stats = stats if stats is not None else Throughput()
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[list[int]]] = [[] for _ in prompts]
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask = _left_pad([prompts[i] for i in idx], pad_id, device)
            kwargs = {"temperature": temperature, "top_k": 0, "top_p": 1.0} if do_sample else {}
            with stats.timed():
                seqs = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    num_return_sequences=num_return_sequences,
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                    use_cache=True,
                    **kwargs,
                )
                new = seqs[:, ids.shape[1] :].tolist()  # waits for the device
            stats.add(new, eos_id)
            for j, tokens in enumerate(new):
                out[idx[j // num_return_sequences]].append(_cut(tokens, eos_id))
    return out


def _left_pad(
    prompts: list[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


def _cut(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens


def generate_texts(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int = 48,
    do_sample: bool = False,
    temperature: float = 1.0,
    best_of: int = 1,
    batch_size: int = 16,
    seed: int = 0,
    scorer: Scorer | None = None,
    stats: Throughput | None = None,
) -> list[str]:
    """One text per prompt: greedy (or sampled); with ``best_of > 1`` (sampling implied) the
    candidate ``scorer`` ranks highest (first on ties)."""
    n = max(1, best_of)
    cands = generate_ids(
        model,
        prompts,
        pad_id=tokenizer.pad_token_id,
        eos_id=tokenizer.eos_token_id,
        max_new_tokens=max_new_tokens,
        do_sample=do_sample or n > 1,
        temperature=temperature,
        num_return_sequences=n,
        batch_size=max(1, batch_size // n),
        seed=seed,
        stats=stats,
    )
    texts = [[tokenizer.decode(c, skip_special_tokens=True) for c in cs] for cs in cands]
    if n == 1 or scorer is None:
        return [cs[0] for cs in texts]
    flat_idx = [i for i, cs in enumerate(texts) for _ in cs]
    scores = scorer(flat_idx, [t for cs in texts for t in cs])
    best = []
    for i, cs in enumerate(texts):
        mine = scores[i * n : (i + 1) * n]
        best.append(cs[max(range(n), key=lambda k, mine=mine: mine[k])])
    return best
