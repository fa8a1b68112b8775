"""Blueprint "health": /healthz (the process is up) and /readyz (store and backend reachable) for load balancers."""

from __future__ import annotations

import time

import requests
from flask import Blueprint, current_app

from chatbot.chat.reply_settings import settings_from_config
from chatbot.local_model.status import ModelStatus
from chatbot.services.errors import public_url
from chatbot.services.remembered import Remembered
from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import store

bp = Blueprint("health", __name__)


PROBE_SECONDS = 5.0  # a backend's answer is taken as it is this long: /readyz never floods the model's server
_probes: Remembered[str, tuple[float, str]] = Remembered()  # backend URL -> (when it was asked, what was wrong)


def _backend_problem(url: str, timeout: float) -> str:
    """Why the backend's server does not answer HTTP at all ("" when it does), asked at most every 5 s."""
    with _probes.lock:
        known = _probes.get(url)
    if known and time.monotonic() - known[0] < PROBE_SECONDS:
        return known[1]
    try:
        requests.get(url, timeout=timeout)
        problem = ""
    except requests.RequestException as error:
        problem = f"{public_url(url)} does not answer: {type(error).__name__}"
    with _probes.lock:
        _probes[url] = (time.monotonic(), problem)
    return problem


@bp.get("/healthz")
def healthz():
    return {"ok": True}


@bp.get("/readyz")
def readyz():
    """Ready when the store answers and the backend's server answers HTTP at all (any status)."""
    problems = {}
    try:
        store().ping()
    except StoreUnavailable as error:
        problems["store"] = str(error)
    backend = settings_from_config(current_app.config).backend
    local_model = current_app.config.get("LOCAL_MODEL_STATUS")
    status = ModelStatus.load(local_model) if local_model else None
    if local_model and (status is None or status.reason()):
        problems["backend"] = status.reason() if status else "the built-in model's supervisor is not running"
    elif problem := _backend_problem(backend.url, min(backend.connect_timeout, 3.0)):
        problems["backend"] = problem
    if problems:
        return {"ready": False, **problems}, 503
    return {"ready": True}
