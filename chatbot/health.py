"""Blueprint "health": /healthz (the process is up) and /readyz (store and backend reachable) for load balancers."""

from __future__ import annotations

import requests
from flask import Blueprint, current_app

from chatbot.generation import settings_from_config
from chatbot.local_model.status import ModelStatus
from chatbot.pages import store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return {"ok": True}


@bp.get("/readyz")
def readyz():
    """Ready when the store answers and the backend's server answers HTTP at all (any status)."""
    problems = {}
    try:
        store().ping()
    except Exception as error:  # any store failure means: not ready
        problems["store"] = f"the store does not answer: {error}"
    backend = settings_from_config(current_app.config).backend
    local_model = current_app.config.get("LOCAL_MODEL_STATUS")
    status = ModelStatus.load(local_model) if local_model else None
    if local_model and (status is None or status.reason()):
        problems["backend"] = status.reason() if status else "the built-in model's supervisor is not running"
    else:
        try:
            requests.get(backend.url, timeout=min(backend.connect_timeout, 3.0))
        except requests.RequestException as error:
            problems["backend"] = f"{backend.url} does not answer: {type(error).__name__}"
    if problems:
        return {"ready": False, **problems}, 503
    return {"ready": True}
