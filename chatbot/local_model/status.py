"""What the supervisor knows of the built-in model, in a small JSON file the app's workers read.

The supervisor (in `flask serve`) writes it on every change; a worker reads it when an answer from the
built-in model fails, to say what happened in words (never "check API_URL" for a model nobody configured),
and /readyz reads it to say whether the model is up.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from chatbot.local_model.server import MODEL_NAME
from chatbot.services.errors import InferenceError

MODEL_FAULTS = {"unreachable", "truncated", "timeout", "server", "generation", "malformed", "empty"}
NOTICE_SECONDS = 2.0  # how long a worker waits for the supervisor to notice that the model has gone
KEEPS_CRASHING = 3  # crashes within a minute from which the chat says that it keeps crashing


@dataclass(frozen=True)
class ModelStatus:
    """ "starting", "running", "restarting" (after a crash) or "stopped"; how the last run ended; crashes in the
    last minute; when the next start is due (wall clock); where the model's output is."""

    state: str
    log: str
    exit: str = ""
    crashes: int = 0
    retry_at: float | None = None
    updated: float = dataclasses.field(default_factory=time.time)

    def save(self, path: Path) -> None:
        """Write the file whole or not at all: a reader never sees half of it."""
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(dataclasses.asdict(self)), encoding="utf-8")
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path) -> ModelStatus | None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def reason(self) -> str:
        """Why the model is not answering, in words; empty while it runs."""
        if self.state == "running":
            return ""
        if self.state == "starting":
            return f"The built-in model ({MODEL_NAME}) is starting."
        if self.state == "stopped":
            return f"The built-in model ({MODEL_NAME}) has been stopped."
        if self.crashes >= KEEPS_CRASHING:
            return (
                f"The built-in model ({MODEL_NAME}) keeps crashing: {self.crashes} times in the last minute, "
                f"the last with {self.exit}."
            )
        return f"The built-in model ({MODEL_NAME}) stopped unexpectedly ({self.exit}) and is restarting."


def explain(error: InferenceError, status_path: str) -> InferenceError:
    """The failure of an answer from the built-in model, told from what the supervisor knows."""
    if error.kind not in MODEL_FAULTS:
        return error
    status = ModelStatus.load(status_path)
    deadline = time.monotonic() + NOTICE_SECONDS
    while status and status.state == "running" and error.kind != "empty" and time.monotonic() < deadline:
        time.sleep(0.1)  # the model may have died this instant: give the supervisor a moment to say so
        status = ModelStatus.load(status_path)
    if status is None:
        return error
    log = status.log
    if status.state == "running":
        message = f"The built-in model ({MODEL_NAME}) did not answer as expected: {error.message}"
        hint = f"Send again; if it keeps failing, run `make doctor`, which checks it. Its output is in {log}."
        if error.kind == "empty":
            message, hint = error.message, error.hint
    elif status.crashes >= KEEPS_CRASHING:
        wait = (
            f" It tries again by itself in about {max(1, round(status.retry_at - time.time()))} s."
            if (status.retry_at and status.retry_at > time.time())
            else ""
        )
        message = status.reason()
        hint = (
            f"Its output is in {log}; `make doctor` checks it.{wait} For another model, set HF_API_TOKEN or "
            "API_URL in .env."
        )
    else:
        message, hint = status.reason(), "Send again in a few seconds."
    return InferenceError("local_model", message, hint, url=error.url, status=error.status)
