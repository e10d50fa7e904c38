"""``lfft serve``: an OpenAI-compatible chat server that logs every turn and every feedback.

The standard library's ``ThreadingHTTPServer`` (a thread per connection) is enough here:
generation runs in torch, outside the GIL, and a semaphore bounds how many run at once
(``concurrency``; ``max_queue`` more may wait, further requests get a 503). Endpoints:
``POST /v1/chat/completions``, ``GET /v1/models``, ``POST /v1/feedback``, ``GET /health``
and the chat page ``GET /`` (docs/serve.md).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

from lfft.config import ServeConfig
from lfft.serve import api
from lfft.serve.api import ApiError
from lfft.serve.backend import Backend, BackendError, LocalBackend, UpstreamBackend
from lfft.serve.convo import Conversations
from lfft.serve.log import EventLog, new_id, replay

PAGE = {  # the page's files: fixed names, never a path taken from a request
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}


class Service:
    """Everything a request needs: backend, log, identity index, limits."""

    def __init__(self, cfg: ServeConfig, backend: Backend, log: EventLog, convos: Conversations):
        self.cfg, self.backend, self.log, self.convos = cfg, backend, log, convos
        self.slots = threading.BoundedSemaphore(cfg.concurrency)
        self._waiting = 0
        self._wlock = threading.Lock()

    def enter(self) -> None:
        """Take a generation slot, or 503 when ``max_queue`` requests already wait."""
        with self._wlock:
            if self._waiting >= self.cfg.concurrency + self.cfg.max_queue:
                raise ApiError(503, "the server is busy: retry later", code="overloaded")
            self._waiting += 1
        self.slots.acquire()

    def leave(self) -> None:
        self.slots.release()
        with self._wlock:
            self._waiting -= 1

    def models(self) -> dict[str, Any]:
        if isinstance(self.backend, LocalBackend):
            name = self.backend.current()[0]
        else:
            name = self.cfg.upstream_model or "upstream"
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "lfft"}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lfft-serve"
    service: Service  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # access log off: the log is events
        pass

    # --- plumbing ----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'self'")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode())

    def _guard(self, fn) -> None:
        try:
            fn()
        except ApiError as e:
            self._json(e.status, e.body())
        except BackendError as e:
            self._json(e.status, ApiError(e.status, str(e), code="backend_error").body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _auth(self) -> None:
        key = self.service.cfg.api_key
        if not key:
            return
        got = self.headers.get("Authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {key}".encode()):
            raise ApiError(401, "a valid 'Authorization: Bearer KEY' header is required")

    def _body(self) -> dict[str, Any]:
        size = self.headers.get("Content-Length")
        if size is None or not size.isdigit():
            self.close_connection = True
            raise ApiError(411, "a Content-Length header is required")
        if int(size) > self.service.cfg.max_body_bytes:
            self.close_connection = True
            limit = self.service.cfg.max_body_bytes
            raise ApiError(413, f"the body is {size} bytes; the limit is {limit}")
        return api.parse_json(self.rfile.read(int(size)))

    # --- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in PAGE:
            name, ctype = PAGE[path]
            data = resources.files("lfft.serve").joinpath("page", name).read_bytes()
            return self._send(200, data, ctype)
        if path == "/health":
            return self._json(200, {"status": "ok"})
        self._guard(lambda: self._get_api(path))

    def _get_api(self, path: str) -> None:
        self._auth()
        if path == "/v1/models":
            return self._json(200, self.service.models())
        raise ApiError(404, f"no route GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {"/v1/chat/completions": self._chat, "/v1/feedback": self._feedback}
        self._guard(lambda: self._post_api(routes.get(path), path))

    def _post_api(self, route, path: str) -> None:
        if route is None:
            self.close_connection = True  # the unread body must not be taken for a request
            raise ApiError(404, f"no route POST {path}")
        self._auth()
        route()

    def _feedback(self) -> None:
        event = api.feedback_event(self._body(), self.service.convos.session_of)
        self.service.log.append([event])
        self._json(200, {"id": event["id"], "object": "feedback", "event": event["event"]})

    def _chat(self) -> None:
        s = self.service
        cfg = s.cfg
        req = api.chat_request(self._body(), cfg.max_tokens, cfg.default_max_tokens, cfg.max_n)
        plan = s.convos.resolve(req.messages, req.user, req.session_id, req.message_ids)
        ext = {"session_id": plan.session_id, "message_ids": plan.message_ids}
        cancel = threading.Event()
        s.enter()
        try:
            gen = s.backend.generate(req.messages, req.params, cancel, req.model)
            s.log.append(plan.events)  # the request is accepted: its new messages are logged
            s.convos.commit(plan)
            if req.stream:
                return self._stream(req, plan, gen, cancel, ext)
            for _ in gen:  # one choice: drain its pieces
                pass
        finally:
            s.leave()
        ids = [new_id("m-") for _ in gen.texts]
        events = [
            s.convos.answer(plan, t, gen.version, req.user, {"finish_reason": f}, mid)
            for mid, t, f in zip(ids, gen.texts, gen.finish, strict=True)
        ]
        s.log.append(events)
        usage = api.usage(gen.prompt_tokens, gen.completion_tokens)
        self._json(200, api.completion(ids, gen.texts, gen.finish, gen.version, usage, ext))

    def _stream(self, req, plan, gen, cancel: threading.Event, ext: dict) -> None:
        mid = new_id("m-")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")  # nginx: do not buffer the stream
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        gone, failed = False, None
        text: list[str] = []
        try:
            self._event(api.chunk(mid, gen.version, {"role": "assistant", "content": ""}, lfft=ext))
            for piece in gen:
                text.append(piece)
                self._event(api.chunk(mid, gen.version, {"content": piece}))
        except (BrokenPipeError, ConnectionResetError):
            gone = True
            cancel.set()
            for piece in gen:  # let generation wind down; keep what was made
                text.append(piece)
        except BackendError as e:  # headers are sent: the error goes into the stream
            failed = e
        finish = "disconnect" if gone else "error" if failed else (gen.finish or ["stop"])[0]
        event = self.service.convos.answer(
            plan, "".join(text), gen.version, req.user, {"finish_reason": finish}, mid
        )
        if text or not failed:  # an empty failed answer is no turn of the conversation
            self.service.log.append([event])
        if gone:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if failed:
                err = ApiError(failed.status, str(failed), code="backend_error").body()
                self._event(b"data: " + json.dumps(err).encode() + b"\n\n")
                return
            self._event(api.chunk(mid, gen.version, {}, finish))
            if req.include_usage:
                usage = api.usage(gen.prompt_tokens, gen.completion_tokens)
                self._event(api.chunk(mid, gen.version, {}, None, usage=usage))
            self._event(b"data: [DONE]\n\n")

    def _event(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: bursts of clients wait, not refused


def make_server(
    cfg: ServeConfig, logs: Path, model: Path | None = None, upstream: str | None = None
) -> Server:
    """A server bound to ``cfg.host:cfg.port`` (port 0: any free port), not yet serving."""
    from lfft.errors import LfftError

    if (model is None) == (upstream is None):
        raise LfftError("give exactly one of --model CHECKPOINT and --upstream URL")
    if model is not None:
        threads = cfg.threads or max(1, (os.cpu_count() or 1) // cfg.concurrency)
        backend: Backend = LocalBackend(model, cfg.device, threads)
    else:
        backend = UpstreamBackend(upstream or "")
    convos = Conversations()
    convos.learn(replay(Path(logs)))
    log = EventLog(Path(logs), int(cfg.rotate_mb * 2**20), cfg.rotate_seconds)
    handler = type("BoundHandler", (Handler,), {"service": Service(cfg, backend, log, convos)})
    try:
        return Server((cfg.host, cfg.port), handler)
    except OSError as e:
        raise LfftError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror}") from None


def serve(
    cfg: ServeConfig, logs: Path, model: Path | None = None, upstream: str | None = None
) -> None:
    """Run the server until interrupted (the CLI's ``lfft serve``)."""
    server = make_server(cfg, logs, model, upstream)
    host, port = server.server_address[:2]
    what = f"model {model}" if model is not None else f"upstream {upstream}"
    print(f"serving on http://{host}:{port} ({what}; logs in {logs})", flush=True)
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not cfg.api_key:
        print("warning: listening beyond this machine without --api-key", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.RequestHandlerClass.service.log.close()  # type: ignore[attr-defined]
