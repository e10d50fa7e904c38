"""Where answers come from: the built-in transformers backend, or an upstream server.

Both give a :class:`Generation`: an iterator of text pieces (one choice, streamed) or, for
``n`` choices, :attr:`Generation.texts` after :meth:`Generation.run`. The built-in backend
loads the checkpoint ``--model`` points at (usually ``WORK/current``) and, before each
request, checks whether that path now resolves to another folder (``lfft online`` promoted or
rolled back): it then loads the new version and answers new requests with it, while requests
already running finish on the old one (they hold their own reference to it).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfft.errors import LfftError


class BackendError(Exception):
    """The backend cannot answer: ``status`` is the HTTP status to send."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass
class Params:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1
    seed: int | None = None


@dataclass
class Generation:
    """One request's answer(s). Iterate for the streamed pieces of a single choice."""

    version: str
    pieces: Iterator[str] | None = None
    texts: list[str] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __iter__(self) -> Iterator[str]:
        return self.pieces or iter(())


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    hits = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


# --- built-in transformers backend ------------------------------------------------------------


class LocalBackend:
    """A checkpoint folder (or a symlink to one) answered with ``model.generate``."""

    def __init__(self, path: Path, device: str = "auto", threads: int = 1):
        from lfft.model.device import pick_device

        self.path = Path(path)
        self.device = pick_device(device)
        if self.device.type == "cpu":  # concurrent generations each spinning many threads on
            import torch  # few cores wait for each other: measured 16x slower (docs/serve.md)

            torch.set_num_threads(threads)
        self._lock = threading.Lock()
        self._loaded: tuple[Path, str, Any, Any] | None = None
        self.current()

    def current(self) -> tuple[str, Any, Any]:
        """``(version, model, tokenizer)`` of what ``path`` resolves to now (reloaded if moved)."""
        try:
            target = self.path.resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            if self._loaded is None:
                raise LfftError(f"--model {self.path}: no such checkpoint folder") from None
            target = self._loaded[0]  # mid-swap or removed: keep answering with what we have
        with self._lock:
            if self._loaded is None or self._loaded[0] != target:
                self._loaded = (target, target.name, *self._load(target))
            return self._loaded[1:]

    def _load(self, target: Path) -> tuple[Any, Any]:
        import torch

        from lfft.model.checkpoint import load_model, load_tokenizer
        from lfft.model.tokenizer import make_chat_ready

        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            model = load_model(target, self.device, dtype).eval()
            tok = load_tokenizer(target)
        except (OSError, ValueError, KeyError) as e:
            raise LfftError(f"--model {target}: cannot load the checkpoint ({e})") from None
        make_chat_ready(tok)
        return model, tok

    def generate(
        self,
        messages: Sequence[Mapping[str, str]],
        p: Params,
        cancel: threading.Event,
        model_name: str = "",
    ) -> Generation:
        """Answer ``messages`` (``model_name`` is ignored: the checkpoint answers)."""
        version, model, tok = self.current()
        text = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        limit = getattr(model.config, "max_position_embeddings", None) or 1 << 30
        if len(ids) + p.max_tokens > limit:
            raise BackendError(
                f"the prompt is {len(ids)} tokens and max_tokens {p.max_tokens}; "
                f"the model {version} takes at most {limit} in all",
                400,
            )
        gen = Generation(version, prompt_tokens=len(ids))
        kwargs = _generate_kwargs(model, tok, ids, p, cancel)
        if p.n == 1:
            gen.pieces = self._stream(model, tok, kwargs, p, gen)
        else:
            self._many(model, tok, kwargs, p, gen)
        return gen

    def _many(self, model, tok, kwargs, p: Params, gen: Generation) -> None:
        """``n`` sampled choices at once (``num_return_sequences``)."""
        with _seeded(p.seed, model):
            seqs = model.generate(**kwargs, num_return_sequences=p.n)
        for row in seqs[:, len(kwargs["input_ids"][0]) :].tolist():
            new = row[: row.index(tok.eos_token_id) + 1] if tok.eos_token_id in row else row
            text, hit = cut_at_stop(tok.decode(new, skip_special_tokens=True), p.stop)
            gen.texts.append(text)
            gen.completion_tokens += len(new)
            cut_short = len(new) >= p.max_tokens and not hit and tok.eos_token_id not in new
            gen.finish.append("length" if cut_short else "stop")

    def _stream(self, model, tok, kwargs, p: Params, gen: Generation) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        counter = _Counter()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with _seeded(p.seed, model):
                    model.generate(**kwargs, streamer=_Tee(streamer, counter))
            except BaseException as e:  # reported in the request thread
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        held = ""
        emitted = 0
        hold = max((len(s) for s in p.stop), default=1) - 1
        stopped = False
        for piece in streamer:
            held += piece
            safe, stopped = cut_at_stop(held, p.stop)
            if not stopped and hold:
                safe = held[: max(emitted, len(held) - hold)]
            if len(safe) > emitted:
                yield safe[emitted:]
                emitted = len(safe)
            if stopped:
                kwargs["stopping_criteria"][0].cancel.set()
                break
        thread.join()
        if errors:
            raise BackendError(f"generation failed: {errors[0]}", 500)
        final, hit = cut_at_stop(held, p.stop)
        if len(final) > emitted:
            yield final[emitted:]
        gen.texts = [final]
        gen.completion_tokens = counter.n
        cut_short = counter.n >= p.max_tokens and not (stopped or hit)
        gen.finish = ["length" if cut_short else "stop"]


def _generate_kwargs(model, tok, ids: list[int], p: Params, cancel: threading.Event) -> dict:
    import torch
    from transformers import StoppingCriteriaList

    sample = p.temperature > 0
    kwargs: dict[str, Any] = {
        "input_ids": torch.tensor([ids], device=model.device),
        "attention_mask": torch.ones((1, len(ids)), dtype=torch.long, device=model.device),
        "max_new_tokens": p.max_tokens,
        "do_sample": sample,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "stopping_criteria": StoppingCriteriaList([_Cancel(cancel)]),
    }
    if sample:
        kwargs.update(temperature=p.temperature, top_p=p.top_p, top_k=0)
    return kwargs


class _Cancel:
    """Stops generation when the client went away or a stop string was seen."""

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.cancel.is_set(), dtype=torch.bool)


class _Counter:
    n = 0


class _Tee:
    """Counts the new tokens on their way to the streamer (the first put is the prompt)."""

    def __init__(self, streamer, counter: _Counter):
        self.streamer, self.counter, self.first = streamer, counter, True

    def put(self, value) -> None:
        if self.first:
            self.first = False
        else:
            self.counter.n += int(value.numel())
        self.streamer.put(value)

    def end(self) -> None:
        self.streamer.end()


class _seeded:
    """A seeded RNG for one request (``seed`` given), leaving the global RNG as it was."""

    def __init__(self, seed: int | None, model):
        self.seed, self.model, self.fork = seed, model, None

    def __enter__(self) -> None:
        if self.seed is not None:
            import torch

            devices = [self.model.device] if self.model.device.type == "cuda" else []
            self.fork = torch.random.fork_rng(devices=devices)
            self.fork.__enter__()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        if self.fork is not None:
            self.fork.__exit__(*exc)


# --- upstream: another OpenAI-compatible server -----------------------------------------------


class UpstreamBackend:
    """Forwards to ``url`` (``.../v1``) and captures; ``model`` names the upstream's model."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 600.0):
        if not url.startswith(("http://", "https://")):
            raise LfftError(f"--upstream {url!r}: expected an http(s):// URL ending in /v1")
        self.url = url.rstrip("/")
        self.api_key = api_key or os.environ.get("LFFT_UPSTREAM_API_KEY")
        self.timeout = timeout

    def _post(self, body: dict[str, Any]):
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(
            self.url + "/chat/completions", json.dumps(body).encode(), headers
        )
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read(2000).decode("utf-8", "replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]["message"]
            raise BackendError(f"upstream: {detail}", e.code if e.code < 500 else 502) from None
        except (urllib.error.URLError, OSError) as e:
            raise BackendError(f"upstream {self.url} unreachable: {e}", 502) from None

    def generate(self, messages, p: Params, cancel: threading.Event, model: str = "") -> Generation:
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "n": p.n,
            "stream": p.n == 1,
        }
        if p.stop:
            body["stop"] = p.stop
        if p.seed is not None:
            body["seed"] = p.seed
        gen = Generation(model)
        resp = self._post(body)
        if p.n == 1:
            gen.pieces = self._stream(resp, gen, cancel)
        else:
            with resp:
                self._fill(json.load(resp), gen)
        return gen

    def _fill(self, data: dict[str, Any], gen: Generation) -> None:
        try:
            gen.version = data.get("model") or gen.version
            gen.texts = [c["message"]["content"] or "" for c in data["choices"]]
            gen.finish = [c.get("finish_reason") or "stop" for c in data["choices"]]
            usage = data.get("usage") or {}
            gen.prompt_tokens = usage.get("prompt_tokens", 0)
            gen.completion_tokens = usage.get("completion_tokens", 0)
        except (KeyError, TypeError, AttributeError) as e:
            raise BackendError(f"upstream answered an unexpected body ({e})") from None

    def _stream(self, resp, gen: Generation, cancel: threading.Event) -> Iterator[str]:
        text, finish = [], "stop"
        with resp:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if cancel.is_set():
                    finish = "stop"
                    break
                if not line.startswith("data:") or line == "data: [DONE]":
                    continue
                try:
                    chunk = json.loads(line[5:])
                    gen.version = chunk.get("model") or gen.version
                    choice = chunk["choices"][0] if chunk.get("choices") else {}
                    piece = (choice.get("delta") or {}).get("content") or ""
                    finish = choice.get("finish_reason") or finish
                    usage = chunk.get("usage") or {}
                except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
                    raise BackendError(f"upstream sent an unexpected event ({e})") from None
                gen.prompt_tokens = usage.get("prompt_tokens", gen.prompt_tokens)
                gen.completion_tokens = usage.get("completion_tokens", gen.completion_tokens)
                if piece:
                    text.append(piece)
                    gen.completion_tokens += 0 if usage else 1
                    yield piece
        gen.texts, gen.finish = ["".join(text)], [finish]


Backend = LocalBackend | UpstreamBackend
Factory = Callable[[], Backend]
