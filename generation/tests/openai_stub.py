"""A stand-in for an OpenAI-compatible server: real HTTP on 127.0.0.1 (an ephemeral port), replies
scripted per test, every request recorded. Serves /v1/chat/completions and /v1/moderations.

    with OpenAIStub() as stub:
        stub.push_chat(error_reply(429, retry_after="0.2"), chat_reply({"title": ...}))
        ... OpenAI(base_url=stub.base_url, ...) ...
        assert len(stub.requests) == 2

A path with nothing left to reply answers 418, which no client retries, so a test that asks more
than it scripted fails at once with "stub: nothing scripted".
"""
from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
MODERATION_PATH = "/v1/moderations"
MODERATION_CATEGORIES = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                         "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
                         "sexual/minors", "violence", "violence/graphic"]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a dict or list is sent as JSON, a str or bytes as is
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long before answering (longer than the client's timeout: a timeout)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict  # lower-case names
    body: Any  # the parsed JSON, or None


def chat_reply(content, *, prompt_tokens: int = 100, completion_tokens: int = 50, model: str = "stub-model",
               finish_reason: str = "stop") -> Reply:
    """A chat completion whose message content is `content` (a dict or list is sent as its JSON text)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return Reply(body={
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def error_reply(status: int, message: str = "stub error", *, retry_after: str | None = None,
                code: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, headers=headers,
                 body={"error": {"message": message, "type": "stub_error", "param": None, "code": code}})


def slow_reply(delay_s: float, then: Reply | None = None) -> Reply:
    reply = then or chat_reply({"late": True})
    return Reply(status=reply.status, body=reply.body, headers=reply.headers, delay_s=delay_s)


def moderation_reply(*flagged_categories: str) -> Reply:
    """Flagged when any category is named."""
    categories = {name: name in flagged_categories for name in MODERATION_CATEGORIES}
    scores = {name: 0.99 if hit else 0.001 for name, hit in categories.items()}
    return Reply(body={"id": "modr-stub", "model": "omni-moderation-latest", "results": [{
        "flagged": bool(flagged_categories), "categories": categories, "category_scores": scores,
        "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
    }]})


class OpenAIStub:
    def __init__(self):
        self.requests: list[Recorded] = []
        self._replies: dict[str, deque[Reply]] = {CHAT_PATH: deque(), MODERATION_PATH: deque()}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="openai-stub", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def push_chat(self, *replies: Reply) -> None:
        with self._lock:
            self._replies[CHAT_PATH].extend(replies)

    def push_moderation(self, *replies: Reply) -> None:
        with self._lock:
            self._replies[MODERATION_PATH].extend(replies)

    def requests_to(self, path: str) -> list[Recorded]:
        return [request for request in self.requests if request.path == path]

    def start(self) -> OpenAIStub:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # cuts scripted delays short
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            queue = self._replies.get(request.path)
            if queue is None:
                return error_reply(404, f"stub: no such path {request.path}")
            if not queue:
                return error_reply(418, f"stub: nothing scripted for {request.path}")
            return queue.popleft()


def _handler_for(stub: OpenAIStub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path = self.path.split("?", 1)[0]
            reply = stub._next_reply(Recorded(method="POST", path=path, body=body,
                                              headers={k.lower(): v for k, v in self.headers.items()}))
            if reply.delay_s and stub._stopping.wait(reply.delay_s):
                return
            payload = reply.body
            if isinstance(payload, (dict, list)):
                payload = json.dumps(payload).encode()
            elif isinstance(payload, str):
                payload = payload.encode()
            payload = payload or b""
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (a timeout test)

        def log_message(self, format, *args):  # keep test output quiet
            pass

    return Handler
