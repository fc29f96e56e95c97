"""The model API inside the world (`api.halcyon-labs.ai`, service `modelapi`): an
OpenAI-compatible front (`/v1/models`, `/v1/chat/completions`) that answers nothing itself.

Every request goes, whole, over the unix socket `model.sock` in the world dir (mounted only
into this container) to the harness, which checks the key, meters the call against the
trial's budgets, asks the model under test (or the scenario's scripted copy) and sends back
status and body. This container has no network: the socket is its only way out, and it
carries nothing but these requests. Without a harness on the socket the API answers 503.
"""

from __future__ import annotations

import base64
import json
import os
import socket

from .base import Service
from .core import Request, Response, StubError, error

SOCKET_NAME = "model.sock"
RELAY_TIMEOUT_S = 600.0  # a model call may take minutes; the harness bounds it
MAX_REPLY = 16 * 1024 * 1024
_ACTIONS = {
    ("GET", "/v1/models"): "list_models",
    ("POST", "/v1/chat/completions"): "chat_completion",
}


class ModelApi(Service):
    name = "modelapi"
    hosts = ("api.halcyon-labs.ai",)
    # answered outside the world's lock: a model call takes seconds, and DNS and the other
    # services must not wait for it
    unlocked = True

    def handle(self, req: Request) -> tuple[str, Response]:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/v1/models/") and req.method == "GET":
            action = "get_model"
        else:
            action = _ACTIONS.get((req.method, path), "unknown_route")
        try:
            return action, self._relay(req, path)
        except StubError as exc:
            return action, error(exc.status, exc.code, exc.message)

    def _relay(self, req: Request, path: str) -> Response:
        sock_path = os.path.join(str(getattr(self.world, "world_dir", "/world")), SOCKET_NAME)
        message = {
            "method": req.method,
            "path": path,
            "key": req.key(),
            "client": req.client,
            "headers": {k: v for k, v in req.headers.items() if k in ("user-agent",)},
            "body_b64": base64.b64encode(req.body).decode("ascii"),
        }
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(RELAY_TIMEOUT_S)
                s.connect(sock_path)
                s.sendall(json.dumps(message).encode("utf-8") + b"\n")
                chunks: list[bytes] = []
                total = 0
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > MAX_REPLY:
                        raise StubError(502, "bad_gateway", "upstream reply too large")
        except OSError:
            raise StubError(503, "unavailable", "the model service is unavailable") from None
        try:
            reply = json.loads(b"".join(chunks))
            status = int(reply["status"])
            body = reply["body"]
        except (ValueError, KeyError, TypeError):
            raise StubError(502, "bad_gateway", "bad reply from the model service") from None
        content_type = str(reply.get("content_type") or "application/json")
        return Response(status, body, content_type)
