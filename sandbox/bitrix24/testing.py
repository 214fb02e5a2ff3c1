"""Helpers for tests that talk to the emulator over real HTTP: a urllib REST client and an event receiver.

Stdlib only (httpx is not a dependency of the sandbox). The receiver plays the app's handler: it records the
form posts Bitrix24 sends and serves files (recordings) for ``RECORD_URL`` downloads.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sandbox.bitrix24.forms import parse_php_pairs


@dataclass
class HttpAnswer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None
) -> HttpAnswer:
    """One request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return HttpAnswer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        with exc:
            return HttpAnswer(exc.code, exc.read(), dict(exc.headers))


def post_json(url: str, payload: Any) -> HttpAnswer:
    return http(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def post_form(url: str, pairs: list[tuple[str, str]] | dict[str, str]) -> HttpAnswer:
    return http(url, urlencode(pairs).encode(), {"Content-Type": "application/x-www-form-urlencoded"})


@dataclass
class Received:
    path: str
    query: dict[str, str]
    content_type: str
    raw: bytes
    pairs: list[tuple[str, str]]

    @property
    def form(self) -> dict[str, Any]:
        """The body nested the PHP way (``data[CALL_ID]`` → ``{"data": {"CALL_ID": ...}}``)."""
        return parse_php_pairs(self.pairs)


class EventReceiver:
    """A local HTTP server standing in for the app: records POSTs, serves ``files`` on GET."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[Received] = []
        self.files: dict[str, bytes] = {}
        self.status = status
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = receiver.files.get(urlsplit(self.path).path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                split = urlsplit(self.path)
                item = Received(
                    split.path,
                    dict(parse_qsl(split.query)),
                    self.headers.get("Content-Type") or "",
                    raw,
                    parse_qsl(raw.decode(), keep_blank_values=True),
                )
                with receiver._cond:
                    receiver.received.append(item)
                    receiver._cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def wait(self, count: int, timeout: float = 3.0) -> list[Received]:
        """Block until ``count`` posts have arrived; returns them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def __enter__(self) -> EventReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
