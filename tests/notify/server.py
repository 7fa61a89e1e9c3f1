"""Provides Hook: a local HTTP server on 127.0.0.1 that is a real `json://` Apprise target for
tests; it records what it receives and can answer 200, answer 500, or never answer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Hook:
    """`with Hook(mode) as hook:` hook.url is the Apprise URL; hook.received the JSON bodies."""

    def __init__(self, mode: str = "ok") -> None:
        assert mode in ("ok", "500", "hang")
        self.mode = mode
        self.received: list[dict[str, Any]] = []
        self.hits = 0  # requests seen, whatever the answer
        self.release = threading.Event()  # ends the hanging requests at close
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                size = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(size)
                hook.hits += 1
                if hook.mode == "hang":
                    hook.release.wait(60)
                    return
                if hook.mode == "500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"boom")
                    return
                body = json.loads(raw or b"{}")
                body["_received"] = time.time()
                hook.received.append(body)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, pred, timeout: float, what: str) -> list[dict[str, Any]]:
        """Poll until pred(received) is truthy; AssertionError with what was received otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [m for m in list(self.received) if pred(m)]
            if got:
                return got
            time.sleep(0.1)
        titles = [m.get("title") for m in self.received]
        raise AssertionError(f"no {what} within {timeout} s; received: {titles}")
