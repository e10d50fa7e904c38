"""Tokenizers: a byte-level BPE trained on the data (tiny base), and chat-readiness for any other.

The trained tokenizer is a ``PreTrainedTokenizerFast`` with ChatML-like special tokens, so a saved
checkpoint loads with ``AutoTokenizer.from_pretrained`` and no lfft code. ``eos`` is
``<|im_end|>`` (it ends every assistant turn), ``pad`` is ``<|pad|>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from lfft.io import iter_batches

PAD, EOS, IM_START, END_OF_TEXT = "<|pad|>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"
SPECIAL_TOKENS = [END_OF_TEXT, PAD, IM_START, EOS]

# ChatML-like: <|im_start|>role\ncontent EOS\n (EOS is <|im_end|> for the trained tokenizer);
# the generation prompt opens an assistant turn, which the model ends with EOS.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + eos_token + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def split_texts(path: str | Path) -> Iterator[str]:
    """Every turn of a train split (context, prompt, response, target), streamed.

    Each turn is given as the chat template renders it, ``role\ncontent`` (the special tokens
    aside), so the role names and the line break after them become tokens of their own instead
    of being spelled out in bytes in every prompt.
    """
    columns = ["context", "prompt", "response", "target"]
    for batch in iter_batches(path, columns=columns):
        data = batch.to_pydict()
        for context, prompt, response, target in zip(*(data[c] for c in columns), strict=True):
            for turn in context or ():
                yield f"{turn['role']}\n{turn['content'] or ''}"
            yield f"user\n{prompt or ''}"
            yield f"assistant\n{response or ''}"
            if target and target != response:
                yield f"assistant\n{target}"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048):
    """A byte-level BPE trained on ``texts`` (no texts: the 256 bytes and the special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=1_000_000,
    )


def make_chat_ready(tokenizer) -> list[str]:
    """Give a loaded tokenizer what training needs; returns what was changed (for lfft.json).

    A tokenizer without a chat template gets the ChatML-like one as plain text (its markers are
    not special tokens there, so no embedding is resized); one without a pad token pads with eos.
    """
    changed = []
    if tokenizer.eos_token is None:
        from lfft.errors import LfftError

        raise LfftError("the base tokenizer has no eos token; set one in its tokenizer_config.json")
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHAT_TEMPLATE
        changed.append("chat_template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        changed.append("pad_token=eos")
    return changed
