"""Blueprint "health": /healthz (the process is up) and /readyz (store and backend reachable) for load balancers."""

from __future__ import annotations

import requests
from flask import Blueprint, current_app

from chatbot.generation import settings_from_config
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
    try:
        requests.get(backend.url, timeout=min(backend.connect_timeout, 3.0))
    except requests.RequestException as error:
        problems["backend"] = f"{backend.url} does not answer: {type(error).__name__}"
    if problems:
        return {"ready": False, **problems}, 503
    return {"ready": True}
