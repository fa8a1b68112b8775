"""The error pages: a conversation that is not yours, the store down, an upload too large."""

from __future__ import annotations

from flask import Flask, current_app, render_template

from chatbot.stores.failures import StoreUnavailable
from chatbot.web.common import problem_page


def init_app(app: Flask) -> None:
    app.register_error_handler(404, not_found)
    app.register_error_handler(StoreUnavailable, store_unavailable)
    app.register_error_handler(413, too_large)


def not_found(_error):
    """Someone else's id, a deleted chat and an expired one look the same: nothing is revealed."""
    days = current_app.config["SESSION_IDLE_DAYS"]
    return render_template("not_found.html", days=days), 404


def store_unavailable(error: StoreUnavailable):
    current_app.logger.error("the store failed: %s", error.__cause__ or error)
    page, status = problem_page("The chat cannot read or save conversations right now", str(error), 503)
    return page, status, {"Retry-After": "10"}


def too_large(_error):
    limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return (
        f"That upload is larger than {limit} MB. Go back and choose a smaller file.",
        413,
        {"Content-Type": "text/plain; charset=utf-8"},
    )
