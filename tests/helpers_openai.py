"""A scripted OpenAI-compatible Chat Completions server for tests.

Real sockets on 127.0.0.1 (stdlib http.server in a thread), so the real `openai`
client is exercised end to end. Each request takes the next scripted action:

    reply(text=..., calls=[("bash", {"command": "ls"}), ("bash", "not json")], usage=(10, 5))
    fail(429) / fail(500, retry_after=0)   an HTTP error with an OpenAI-style body
    slow(2.0)                             hold the request (the client's timeout fires)
    reset()                               close the connection abruptly (RST)

or a `responder(request_json) -> action` decides (for conversations that branch,
e.g. delegated copies). With nothing scripted it ends the turn with text "done".
Every request body is kept in `requests`.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sandbox.llm.openai_compat import OpenAICompatModel


@dataclass(frozen=True)
class Action:
    """What the server does with one request."""

    kind: str  # reply, fail, slow, reset
    body: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def reply(
    text: str | None = None,
    calls: Iterable[tuple[str, dict[str, Any] | str]] = (),
    *,
    usage: tuple[int, int] = (10, 5),
    finish_reason: str | None = None,
    refusal: str | None = None,
    reasoning: str | None = None,
    model: str = "test-model",
) -> Action:
    """A successful completion; a call's arguments are JSON-encoded unless given as a string."""
    tool_calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {
                "name": name,
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
        for i, (name, args) in enumerate(calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": refusal}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }
    return Action("reply", body=body)


def fail(status: int, *, retry_after: float | None = None, message: str = "scripted") -> Action:
    """An HTTP error response."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    body = {"error": {"message": message, "type": "test_error", "code": str(status)}}
    return Action("fail", body=body, status=status, headers=headers)


def slow(seconds: float, then: Action | None = None) -> Action:
    """Hold the request `seconds`, then answer with `then` (default: a text reply)."""
    return Action("slow", body=(then or reply("late")).body, delay_s=seconds)


def reset() -> Action:
    """Drop the connection without an answer (TCP reset)."""
    return Action("reset")


Responder = Callable[[dict[str, Any]], Action]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or close early are part of the script


class OpenAIStub:
    """The server. Use as a context manager; `base_url` points the client at it."""

    def __init__(self, actions: Iterable[Action] = (), responder: Responder | None = None):
        self.actions: deque[Action] = deque(actions)
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                data = json.loads(self.rfile.read(length) or b"{}")
                with stub.lock:
                    stub.requests.append(data)
                    if stub.actions:
                        action = stub.actions.popleft()
                    elif stub.responder is not None:
                        action = stub.responder(data)
                    else:
                        action = reply("done")
                stub._serve(self, action)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _serve(self, h: BaseHTTPRequestHandler, action: Action) -> None:
        if action.kind == "reset":
            # SO_LINGER 0: close() sends RST, the client sees a connection reset
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
            return
        if action.kind == "slow" and self.closing.wait(action.delay_s):
            return
        payload = json.dumps(action.body).encode()
        try:
            h.send_response(action.status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(payload)))
            for k, v in action.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(payload)
        except OSError:  # the client gave up (timeout) before we answered
            pass

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push(self, *actions: Action) -> None:
        """Script more actions."""
        with self.lock:
            self.actions.extend(actions)

    def __enter__(self) -> OpenAIStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextmanager
def openai_stub(
    actions: Iterable[Action] = (), responder: Responder | None = None
) -> Iterator[OpenAIStub]:
    """A running stub server."""
    with OpenAIStub(actions, responder) as stub:
        yield stub


_OPEN: list[OpenAICompatModel] = []


def client_model(base_url: str, api_model: str = "test-model", **kw: Any) -> OpenAICompatModel:
    """An OpenAICompatModel for `base_url`, closed after the test (see `close_models`)."""
    kw.setdefault("api_key", "k")
    m = OpenAICompatModel(api_model, base_url=base_url, **kw)
    _OPEN.append(m)
    return m


@pytest.fixture(autouse=True)
def close_models() -> Iterator[None]:
    """Close every model `client_model` made (import this fixture into the test module)."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def tool_messages(request: dict[str, Any]) -> list[str]:
    """Contents of the tool messages in one recorded request."""
    return [m["content"] for m in request.get("messages", []) if m.get("role") == "tool"]


__all__ = [
    "Action",
    "OpenAIStub",
    "client_model",
    "close_models",
    "fail",
    "openai_stub",
    "reply",
    "reset",
    "slow",
    "tool_messages",
]
