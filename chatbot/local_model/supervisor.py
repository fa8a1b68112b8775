"""Keeps the built-in model running: notices when its server exits, logs why, and starts it again.

A thread waits on the server process. When it exits unexpectedly (a crash, a signal, the OOM killer) the
supervisor writes its last lines of output to the app's log, marks the model "restarting" in the status file
and starts it again on the same port after a backoff (0.5 s, doubling); at most MAX_STARTS_PER_MINUTE starts
in any minute, so a model that keeps crashing is tried again once a slot frees up, not in a tight loop.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from chatbot.local_model.server import LocalModelServer, describe_exit
from chatbot.local_model.status import ModelStatus

MAX_STARTS_PER_MINUTE = 5
FIRST_BACKOFF = 0.5
LONGEST_BACKOFF = 30.0


def backoff(crashes: Sequence[float], now: float) -> float:
    """Seconds to wait before the next start, given the times of the crashes in the last minute."""
    delay = min(FIRST_BACKOFF * 2 ** (len(crashes) - 1), LONGEST_BACKOFF)
    if len(crashes) >= MAX_STARTS_PER_MINUTE:  # the next start would be one too many in this minute
        delay = max(delay, 60 - (now - crashes[-MAX_STARTS_PER_MINUTE]))
    return delay


class Supervisor:
    """Runs `server` and keeps it running until stop(); `status_path` tells the app's workers how it is."""

    def __init__(self, server: LocalModelServer, status_path: Path, say: Callable[[str], None] = print) -> None:
        self.server = server
        self.status_path = status_path
        self.say = say
        self.crashes: collections.deque[float] = collections.deque()  # when each crash happened (monotonic)
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Supervisor:
        """Start the model and watch it; RuntimeError if it cannot start at all (the first time)."""
        self._write("starting")
        try:
            self.server.start()
        except RuntimeError:
            self._write("stopped", exit="it did not start")
            raise
        self._write("running")
        self._watcher = threading.Thread(target=self._watch, name="local-model-supervisor", daemon=True)
        self._watcher.start()
        return self

    def stop(self) -> None:
        """Stop watching and stop the server, also one that a restart under way is starting."""
        self._stopping.set()
        while True:
            self.server.stop()
            if not self._watcher or not self._watcher.is_alive():
                break
            self._watcher.join(0.2)
        self._write("stopped")

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self, state: str, exit: str = "", retry_at: float | None = None) -> None:
        status = ModelStatus(state, str(self.server.log), exit, len(self.crashes), retry_at)
        status.save(self.status_path)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self.server.process is not None  # started before it is watched
            code = self.server.process.wait()
            if self._stopping.is_set():
                return
            self._restart(describe_exit(code))

    def _restart(self, exit: str) -> None:
        """Start the server again after a crash, waiting as the backoff and the per-minute bound say."""
        while not self._stopping.is_set():
            now = time.monotonic()
            self.crashes.append(now)
            while self.crashes and now - self.crashes[0] > 60:
                self.crashes.popleft()
            delay = backoff(self.crashes, now)
            self.say(
                f"The built-in model exited unexpectedly ({exit}); {len(self.crashes)} crash(es) in the last "
                f"minute; starting it again in {delay:.1f} s. Its last lines ({self.server.log}):\n"
                + "\n".join(f"  | {line}" for line in self.server.last_lines().splitlines())
            )
            self._write("restarting", exit, time.time() + delay)
            if self._stopping.wait(delay):
                return
            try:
                self.server.start()
            except RuntimeError:
                code = self.server.process.returncode if self.server.process else None
                exit = describe_exit(code) if code is not None else "it did not answer after starting"
                continue
            self._write("running", exit)
            self.say(f"The built-in model is answering again at {self.server.url}.")
            return
