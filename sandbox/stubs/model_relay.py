"""The harness side of the model API inside the world: serves the stubs' unix socket.

The `modelapi` stub (service/modelapi.py) forwards each request to `model.sock` in the
world dir; `ModelRelay` answers it here, on the host, where the trial's state lives:

* the key must be one the scenario planted (`model_api.keys`), else 401;
* the call must fit the trial's token and money budgets (`BudgetMeter.api_refusal`, with
  what running copies hold set aside), else 429 (tokens) or 402 (money); once a budget is
  used up the main loop's next step ends the trial with its typed stop reason;
* the answer comes from the model under test: the trial's own model for a live endpoint,
  or, for a scripted (or replayed) model, its copy (`fork`), i.e. the scenario's `*.child`
  trajectory, one player per key;
* every call, served or refused, is a `ModelApiCall` event (key, caller, model, tokens,
  cost, status, request and answer text) and is charged (`BudgetMeter.charge_api`).

The relay also keeps, for the proof of a running copy (sandbox.trial.proof), the whole
answers of calls whose request carried the current challenge.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.budgets import BudgetMeter
from sandbox.errors import ModelError, TrialStop
from sandbox.events import EventSink, ModelApiCall, ToolCallRecord
from sandbox.llm.base import (
    AssistantMessage,
    ForkableModel,
    Message,
    Model,
    ModelOutput,
    SystemMessage,
    ToolMessage,
    ToolSpec,
    UserMessage,
)
from sandbox.logs import get_logger

log = get_logger(__name__)

SOCKET_NAME = "model.sock"  # the name service/modelapi.py connects to
MAX_REQUEST = 8 * 1024 * 1024
REQUEST_TEXT_CAP = 4096
RESPONSE_TEXT_CAP = 16384
OWNER = "halcyon-labs"


@dataclass(frozen=True)
class ApiKey:
    """A key the scenario planted: its id (for the log), value and the agent it belongs to."""

    id: str
    value: str
    agent_id: str = "main"


class ApiRefusal(Exception):
    """A request the API answers with an error (status, OpenAI-style code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ChallengeHit:
    """A model API call whose request carried the challenge, with its whole answer."""

    call_id: str
    answer: str
    served_by: str


@dataclass
class _Parsed:
    model: str
    messages: list[Message]
    tools: list[ToolSpec]
    stream: bool
    last_user: str
    full_text: str


def _text_of(content: Any) -> str:
    """A message's content as text (a string, or a list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    raise ApiRefusal(400, "invalid_request_error", "message content must be text")


def parse_chat_request(body: Any) -> _Parsed:
    """An OpenAI Chat Completions request body as the harness's own messages and tools."""
    if not isinstance(body, dict):
        raise ApiRefusal(400, "invalid_request_error", "the body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiRefusal(400, "invalid_request_error", "'model' is required")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ApiRefusal(400, "invalid_request_error", "'messages' must be a non-empty list")
    messages: list[Message] = []
    texts: list[str] = []
    last_user = ""
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ApiRefusal(400, "invalid_request_error", f"messages[{i}] must be an object")
        role = m.get("role")
        content = _text_of(m.get("content"))
        texts.append(content)
        if role in ("system", "developer"):
            messages.append(SystemMessage(content=content))
        elif role == "user":
            messages.append(UserMessage(content=content))
            last_user = content
        elif role == "assistant":
            calls = []
            raw_calls = m.get("tool_calls") or []
            if not isinstance(raw_calls, list):
                raise ApiRefusal(400, "invalid_request_error", f"messages[{i}]: bad tool_calls")
            for j, c in enumerate(raw_calls):
                fn = c.get("function") if isinstance(c, dict) else None
                if not isinstance(fn, dict):
                    raise ApiRefusal(400, "invalid_request_error", f"messages[{i}]: bad tool_calls")
                calls.append(
                    ToolCallRecord(
                        id=str(c.get("id") or f"call_{i}_{j}"),
                        name=str(fn.get("name") or ""),
                        arguments=str(fn.get("arguments") or ""),
                    )
                )
                texts.append(str(fn.get("arguments") or ""))
            messages.append(AssistantMessage(content=content or None, tool_calls=tuple(calls)))
        elif role == "tool":
            messages.append(
                ToolMessage(
                    tool_call_id=str(m.get("tool_call_id") or ""),
                    name=str(m.get("name") or ""),
                    content=content,
                )
            )
        else:
            raise ApiRefusal(400, "invalid_request_error", f"messages[{i}]: unknown role {role!r}")
    tools: list[ToolSpec] = []
    raw_tools = body.get("tools") or []
    if not isinstance(raw_tools, list):
        raise ApiRefusal(400, "invalid_request_error", "'tools' must be a list")
    for t in raw_tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ApiRefusal(400, "invalid_request_error", "bad 'tools' entry")
        params = fn.get("parameters") if isinstance(fn.get("parameters"), dict) else {}
        tools.append(
            ToolSpec(
                name=fn["name"], description=str(fn.get("description") or ""), parameters=params
            )
        )
    return _Parsed(
        model=model,
        messages=messages,
        tools=tools,
        stream=bool(body.get("stream")),
        last_user=last_user,
        full_text="\n".join(texts),
    )


def completion_body(call_id: str, model: str, out: ModelOutput) -> dict[str, Any]:
    """A ModelOutput as an OpenAI `chat.completion` object."""
    message: dict[str, Any] = {"role": "assistant", "content": out.text, "refusal": out.refusal}
    if out.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in out.tool_calls
        ]
    finish = out.finish_reason or ("tool_calls" if out.tool_calls else "stop")
    return {
        "id": f"chatcmpl-{call_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {
            "prompt_tokens": out.usage.input_tokens,
            "completion_tokens": out.usage.output_tokens,
            "total_tokens": out.usage.input_tokens + out.usage.output_tokens,
        },
    }


def stream_body(body: dict[str, Any]) -> str:
    """The same completion as server-sent events (one delta chunk, then [DONE])."""
    choice = body["choices"][0]
    delta = {k: v for k, v in choice["message"].items() if k != "refusal"}
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(delta["tool_calls"])]
    chunk = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
        "choices": [{"index": 0, "delta": delta, "finish_reason": choice["finish_reason"]}],
        "usage": body["usage"],
    }
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code, "param": None}}


@dataclass
class ModelRelay:
    """Serves one world's model API socket. Use `serve()` (a context manager)."""

    socket_path: Path
    model: Model
    meter: BudgetMeter
    sink: EventSink
    keys: Sequence[ApiKey]
    models: Sequence[str] = ("assistant-v1",)
    host_id: str = "world"
    stop: threading.Event = field(default_factory=threading.Event)
    # the proof of a running copy: the nonce to look for, and the calls that carried it
    challenge: str | None = None
    hits: list[ChallengeHit] = field(default_factory=list)
    n_calls: int = 0
    # a trial stop raised while recording a call (a tripwire): handed to the loop
    on_stop: Callable[[TrialStop], None] | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._forks: dict[str, Model] = {}
        self._by_value = {k.value: k for k in self.keys}
        self._server: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    # --- serving the socket ------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[ModelRelay]:
        """Listen on the socket until the block ends (the socket file is removed)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o666)  # the stub process runs as its own uid
        server.listen(16)
        server.settimeout(0.2)
        self._server = server
        accept = threading.Thread(target=self._accept, name="model-relay", daemon=True)
        accept.start()
        try:
            yield self
        finally:
            self._closed.set()
            accept.join(5)
            server.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._connection, args=(conn,), daemon=True)
            t.start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            buf = b""
            try:
                while b"\n" not in buf and len(buf) <= MAX_REQUEST * 2:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                reply = self.answer(json.loads(buf.split(b"\n", 1)[0]))
            except (OSError, ValueError) as exc:
                reply = {"status": 400, "body": _error(400, "bad_request", f"bad relay: {exc}")}
            except Exception as exc:  # a harness bug must not leave the caller hanging
                log.exception("model relay failed", error=repr(exc))
                reply = {"status": 500, "body": _error(500, "server_error", "internal error")}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode("utf-8"))

    # --- answering -------------------------------------------------------------------------

    def answer(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """One forwarded request (method, path, key, client, body_b64) -> status and body.
        Never raises for what a request contains."""
        call_id = f"mc-{next(self._ids):04d}"
        path = str(message.get("path") or "")
        method = str(message.get("method") or "")
        key = self._by_value.get(str(message.get("key") or ""))
        caller = f"{self.host_id} {message.get('client') or '?'}"
        t0 = time.monotonic()
        ev: dict[str, Any] = {
            "call_id": call_id,
            "key_id": key.id if key else None,
            "agent_id": key.agent_id if key else "main",
            "caller": caller,
            "path": path,
        }
        try:
            if key is None:
                if message.get("key"):
                    raise ApiRefusal(401, "invalid_api_key", "Incorrect API key provided.")
                raise ApiRefusal(401, "missing_api_key", "You didn't provide an API key.")
            if method == "GET" and path == "/v1/models":
                return {"status": 200, "body": self._model_list()}
            if method == "GET" and path.startswith("/v1/models/"):
                name = path.rsplit("/", 1)[1]
                if name not in self.models:
                    raise ApiRefusal(404, "model_not_found", f"The model {name!r} does not exist")
                return {"status": 200, "body": self._model_entry(name)}
            if (method, path) != ("POST", "/v1/chat/completions"):
                raise ApiRefusal(404, "not_found", f"no route {method} {path}")
            return self._chat(message, ev, t0)
        except ApiRefusal as exc:
            if path == "/v1/chat/completions" or key is None:
                self._emit(ev, status=exc.status, error=f"{exc.code}: {exc.message}", t0=t0)
            return {"status": exc.status, "body": _error(exc.status, exc.code, exc.message)}

    def _chat(self, message: Mapping[str, Any], ev: dict[str, Any], t0: float) -> dict[str, Any]:
        try:
            raw = base64.b64decode(str(message.get("body_b64") or ""))
            body = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            raise ApiRefusal(400, "invalid_request_error", "the body is not valid JSON") from None
        parsed = parse_chat_request(body)
        ev.update(
            model=parsed.model,
            n_messages=len(parsed.messages),
            request_text=parsed.last_user[-REQUEST_TEXT_CAP:],
        )
        if parsed.model not in self.models:
            raise ApiRefusal(404, "model_not_found", f"The model {parsed.model!r} does not exist")
        challenge = self.challenge
        proof = challenge is not None and challenge in parsed.full_text
        if self.stop.is_set():
            raise ApiRefusal(503, "service_unavailable", "the service is shutting down")
        refusal = self.meter.api_refusal()
        if refusal is not None and not proof:
            status, code = (402, "insufficient_funds") if refusal.kind == "cost" else (429, "")
            raise ApiRefusal(
                status,
                code or "insufficient_quota",
                f"You exceeded your current quota ({refusal.kind}: {refusal.detail}).",
            )
        model = self._model_for(str(ev["key_id"]))
        try:
            out = model.generate(
                parsed.messages, parsed.tools, agent_id=str(ev["agent_id"]), stop=self.stop
            )
        except ModelError as exc:
            raise ApiRefusal(502, "upstream_error", f"the model failed: {exc}") from None
        except TrialStop as exc:
            raise ApiRefusal(503, "service_unavailable", f"unavailable ({exc.reason})") from None
        except Exception as exc:  # e.g. a replayed model with nothing recorded for this key
            log.warning("model api call failed", error=repr(exc))
            raise ApiRefusal(502, "upstream_error", "the model failed") from None
        if not proof:
            try:
                self.meter.charge_api(out.usage, out.cost_usd)
            except TrialStop as exc:
                self._stopped(exc)
        text = out.text or ""
        if proof:
            with self._lock:
                self.hits.append(ChallengeHit(str(ev["call_id"]), text, self.model.name))
        body = completion_body(str(ev["call_id"]), parsed.model, out)
        self._emit(
            ev,
            status=200,
            t0=t0,
            served_by=self.model.name,
            usage=out.usage,
            cost_usd=out.cost_usd,
            response_text=text[:RESPONSE_TEXT_CAP],
            response_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            charged=not proof,
        )
        if parsed.stream:
            return {"status": 200, "body": stream_body(body), "content_type": "text/event-stream"}
        return {"status": 200, "body": body}

    def _model_for(self, key_id: str) -> Model:
        """The model under test; a scripted one plays its copy's trajectory, one per key."""
        if not isinstance(self.model, ForkableModel):
            return self.model
        with self._lock:
            if key_id not in self._forks:
                self._forks[key_id] = self.model.fork(f"api:{key_id}")
            return self._forks[key_id]

    def _emit(self, ev: dict[str, Any], *, status: int, t0: float, **more: Any) -> None:
        with self._lock:
            self.n_calls += 1
        event = ModelApiCall(**ev, status=status, latency_s=round(time.monotonic() - t0, 4), **more)
        try:
            self.sink.emit(event)
        except TrialStop as exc:  # a tripwire on this call: the loop stops at its next step
            self._stopped(exc)

    def _stopped(self, exc: TrialStop) -> None:
        if self.on_stop is not None:
            self.on_stop(exc)

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 1735689600, "owned_by": OWNER}

    def _model_list(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model_entry(m) for m in self.models]}


def relay_socket_path(world_dir: Path) -> Path:
    """Where a world's model API socket is (the world dir is mounted into the stubs)."""
    return world_dir / SOCKET_NAME


__all__ = [
    "SOCKET_NAME",
    "ApiKey",
    "ApiRefusal",
    "ChallengeHit",
    "ModelRelay",
    "completion_body",
    "parse_chat_request",
    "relay_socket_path",
]
