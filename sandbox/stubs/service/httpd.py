"""The HTTP front door on port 80: routes by Host header to a service, or to the sink."""

from __future__ import annotations

import itertools
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .base import World
from .core import MAX_BODY, Journal, Request, Response, StubError, clip, error, scan_request, sha256

SINK_PAGE = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_rids = itertools.count(1)


class StubHTTPServer(ThreadingHTTPServer):
    """Holds the world and the journal for its handlers."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], world: World, journal: Journal) -> None:
        super().__init__(addr, Handler)
        self.world = world
        self.journal = journal


class Handler(BaseHTTPRequestHandler):
    server: StubHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    timeout = 30
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: every request is journaled as an event instead."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline(100).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline(100)
                    break
                total += size
                if total > MAX_BODY:
                    raise StubError(413, "payload_too_large", "body over 8 MiB")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(100)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise StubError(413, "payload_too_large", "body over 8 MiB")
        return self.rfile.read(length) if length > 0 else b""

    def _request(self) -> Request:
        url = urlsplit(self.path)
        host = (self.headers.get("Host") or url.hostname or "").split(":")[0].lower().rstrip(".")
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._body()
        req = Request(
            self.command,
            host,
            url.path or "/",
            dict(parse_qsl(url.query)),
            headers,
            body,
            self.client_address[0],
        )
        stripped = body.lstrip()[:1]
        if stripped in (b"{", b"["):
            try:
                req.json = json.loads(body)
            except ValueError:
                if "json" in headers.get("content-type", ""):
                    raise StubError(400, "bad_json", "the body is not valid JSON") from None
        elif "x-www-form-urlencoded" in headers.get("content-type", "") and b"=" in body:
            try:
                req.form = dict(parse_qsl(body.decode("utf-8"), strict_parsing=True))
            except ValueError:
                req.form = {}
        return req

    def _handle(self) -> None:
        try:
            req = self._request()
        except (StubError, ValueError) as exc:
            status, code = (
                (exc.status, exc.code) if isinstance(exc, StubError) else (400, "bad_request")
            )
            self._send(error(status, code, str(exc)))
            self.close_connection = True
            return
        world, journal = self.server.world, self.server.journal
        svc = world.service_for(req.host)
        rid = next(_rids)
        early: tuple[str, Response] | None = None
        if svc is not None and svc.name in world.enabled and getattr(svc, "unlocked", False):
            early = svc.handle(req)  # slow services (the model API) answer outside the lock
        with world.lock:
            if svc is None or svc.name not in world.enabled:
                address = _local_address(self.connection)
                where = f"sink:{req.host or '?'}"
                world.egress.append({"protocol": "http", "host": req.host, "path": req.path[:200]})
                journal.emit(
                    {
                        "kind": "egress_attempt",
                        "protocol": "http",
                        "host": req.host or address or "?",
                        "port": self.server.server_address[1],
                        "address": address,
                        "answered": True,
                        "first_bytes": self.requestline[:200],
                        "detail": f"{req.method} {req.path[:300]}",
                        "_rid": rid,
                    }
                )
                resp = Response(404, SINK_PAGE, "text/html")
            else:
                where = svc.name
                action, resp = early if early is not None else svc.handle(req)
                where = f"{svc.name}:{action}"
                journal.emit(
                    {
                        "kind": "stub_request",
                        "service": svc.name,
                        "action": action,
                        "method": req.method,
                        "path": req.path[:500],
                        "host": req.host,
                        "args": clip({**req.query, **_args(req)}),
                        "credential": clip(req.key()),
                        "status": resp.status,
                        "response": clip(resp.body)
                        if isinstance(resp.body, dict)
                        else {"content_type": resp.content_type, "size": len(resp.encode())},
                        "body_sha256": sha256(req.body) if req.body else None,
                        "body_size": len(req.body),
                        "_rid": rid,
                    }
                )
            for tok, how in scan_request(req, world.tokens):
                world.honeytoken_hits.append({"token_id": tok.id, "how": how, "where": where})
                journal.emit(
                    {
                        "kind": "honeytoken_access",
                        "token_id": tok.id,
                        "how": how,
                        "where": where,
                        "_ref": rid,
                    }
                )
            journal.write_state(world.state())
        self._send(resp, head=req.method == "HEAD")

    def _send(self, resp: Response, *, head: bool = False) -> None:
        data = resp.encode()
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def _local_address(conn: Any) -> str:
    """The address the client dialled (every address is ours in the world's namespace)."""
    try:
        return str(conn.getsockname()[0])
    except (OSError, IndexError, TypeError):
        return ""


def _args(req: Request) -> dict[str, Any]:
    if isinstance(req.json, dict):
        return req.json
    if req.json is not None:
        return {"json": req.json}
    if req.form:
        return dict(req.form)
    if req.body:
        return {"body_preview": req.body[:200].decode("utf-8", "replace")}
    return {}
