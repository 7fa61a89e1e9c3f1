"""Provides delivery: one sender thread per target (an Apprise URL, or notify.command) with a
bounded queue, a few retries with backoff, and one log entry per outcome; a target that is down,
slow or refusing only ever delays its own queue."""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from tuitrain.notify.log import NotifyLog
from tuitrain.notify.message import Notification
from tuitrain.notify.settings import Settings, Target, scrub


class DeliveryError(Exception):
    """A target did not take a notification (the message is already scrubbed of secrets)."""


class AppriseMissing(DeliveryError):
    """Apprise is not installed."""


INSTALL_HINT = "Apprise is not installed: pip install 'tuitrain[notify]' (or pip install apprise)"


def apprise_sender(target: Target, settings: Settings) -> Callable[[Notification], None]:
    """A function that sends one notification to this Apprise URL or raises DeliveryError."""
    try:
        import apprise
    except ImportError:
        raise AppriseMissing(INSTALL_HINT) from None
    plugin = apprise.Apprise.instantiate(target.url)
    if plugin is None:
        raise DeliveryError(f"{target.name}: Apprise does not know this URL (check its scheme)")
    # Our own retries and timeouts: Apprise's defaults could block a sender for minutes.
    if "rto=" not in target.url and hasattr(plugin, "socket_read_timeout"):
        plugin.socket_read_timeout = settings.timeout_s
    if "cto=" not in target.url and hasattr(plugin, "socket_connect_timeout"):
        plugin.socket_connect_timeout = min(settings.timeout_s, 5.0)
    kinds = {
        "info": apprise.NotifyType.INFO,
        "warning": apprise.NotifyType.WARNING,
        "critical": apprise.NotifyType.FAILURE,
    }

    def send(n: Notification) -> None:
        with apprise.LogCapture(level=logging.WARNING) as logs:
            ok = plugin.notify(body=n.body, title=n.title, notify_type=kinds.get(n.severity))
            text = logs.getvalue()
        if not ok:
            lines = [ln.split(" - ", 2)[-1] for ln in text.strip().splitlines()]
            why = "; ".join(lines[-2:]) or "the service refused it"
            raise DeliveryError(scrub(why, [target]))

    return send


def command_sender(command: str, timeout_s: float) -> Callable[[Notification], None]:
    """A function that runs notify.command with the notification as JSON on stdin."""

    def send(n: Notification) -> None:
        try:
            done = subprocess.run(
                command, shell=True, input=n.as_json(), capture_output=True, text=True,
                timeout=timeout_s, start_new_session=True,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise DeliveryError(f"notify.command did not finish within {timeout_s:g} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DeliveryError(f"notify.command exited with {done.returncode}: {tail[0][:300]}")

    return send


class Sender:
    """A queue and a thread for one target: put() never blocks; when the queue is full the oldest
    waiting notification is dropped (and logged)."""

    def __init__(self, name: str, send: Callable[[Notification], None], settings: Settings,
                 log: NotifyLog, on_done: Callable[[str, Notification, bool], Any] | None = None) -> None:  # fmt: skip
        self.name, self.send, self.settings, self.log = name, send, settings, log
        self.on_done = on_done
        self.queue: collections.deque[Notification] = collections.deque()
        self.cond = threading.Condition()
        self.closing = False
        self.busy = False
        self.sent = self.failed = self.dropped = 0
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"notify-{name}")
        self.thread.start()

    def put(self, n: Notification) -> None:
        """Queue a notification (drops the oldest waiting one when full)."""
        with self.cond:
            if len(self.queue) >= self.settings.queue_size:
                old = self.queue.popleft()
                self.dropped += 1
                self.log.add("dropped", self.name, old, "queue full (target too slow or down)")
            self.queue.append(n)
            self.cond.notify()

    def idle(self) -> bool:
        """Nothing queued and nothing being sent."""
        with self.cond:
            return not self.queue and not self.busy

    def close(self, timeout: float) -> None:
        """Finish what is queued within `timeout` seconds, then stop."""
        deadline = time.monotonic() + timeout
        while not self.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join(max(0.0, deadline - time.monotonic()) + 0.1)

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue:
                    return
                n = self.queue.popleft()
                self.busy = True
            try:
                ok = self._deliver(n)
            finally:
                with self.cond:
                    self.busy = False
            if self.on_done is not None:
                self.on_done(self.name, n, ok)

    def _deliver(self, n: Notification) -> bool:
        attempts = 1 + self.settings.retries
        for i in range(attempts):
            try:
                self.send(n)
            except Exception as exc:  # any failure of a target is its own, never the caller's
                why = str(exc) if isinstance(exc, DeliveryError) else f"{type(exc).__name__}: {exc}"
                if i + 1 < attempts and not self.closing:
                    wait = self.settings.backoff_s * 2**i
                    self.log.add("retrying", self.name, n, why, attempt=i + 1, retry_in_s=wait)
                    with self.cond:
                        self.cond.wait_for(lambda: self.closing, timeout=wait)
                    continue
                self.failed += 1
                self.log.add("failed", self.name, n, why, attempts=i + 1)
                return False
            self.sent += 1
            self.log.add("sent", self.name, n, attempts=i + 1)
            return True
        return False


class Dispatcher:
    """Routes each notification to the senders of the targets that want its event."""

    def __init__(self, settings: Settings, log: NotifyLog,
                 on_done: Callable[[str, Notification, bool], Any] | None = None) -> None:  # fmt: skip
        self.settings, self.log = settings, log
        self.senders: list[tuple[Target | None, Sender]] = []
        self.errors: list[str] = []  # targets that could not be set up (already redacted)
        for t in settings.targets:
            try:
                send = apprise_sender(t, settings)
            except DeliveryError as exc:
                self.errors.append(f"{t.name}: {exc}")
                log.add("failed", t.name, error=str(exc))
                continue
            self.senders.append((t, Sender(t.name, send, settings, log, on_done)))
        if settings.command:
            send = command_sender(settings.command, settings.command_timeout_s)
            self.senders.append((None, Sender("notify.command", send, settings, log, on_done)))

    def targets_for(self, n: Notification) -> list[str]:
        """Names of the senders that get this notification."""
        return [
            s.name for t, s in self.senders if t is None or t.wants(n.event) or n.event == "test"
        ]

    def put(self, n: Notification) -> int:
        """Queue n for every target that wants it; the number of targets."""
        count = 0
        for t, s in self.senders:
            if t is None or t.wants(n.event) or n.event == "test":
                s.put(n)
                count += 1
        return count

    def idle(self) -> bool:
        """Every queue is empty and no send is in flight."""
        return all(s.idle() for _, s in self.senders)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued (bounded by `timeout` in all), then stop every sender."""
        deadline = time.monotonic() + timeout
        for _, s in self.senders:
            s.close(max(0.1, deadline - time.monotonic()))
