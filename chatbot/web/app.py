"""The chat app: create_app() builds it from the environment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask

from chatbot.services.settings import load_settings

MAX_BODY_BYTES = 10 * 1024 * 1024


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints and the store."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder="../../templates",
        static_folder="../../static",
    )
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.config.update(load_settings(overrides=overrides))
    from chatbot.web import security

    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = security.secret_key(app.instance_path)
    files_bytes = int(app.config["ATTACHMENT_MAX_MB"] * 1024 * 1024) * app.config["MAX_ATTACHMENTS"]
    # Flask's own defaults already hold these keys (None, None, 31 days), so setdefault would keep them.
    limits = {
        "PERMANENT_SESSION_LIFETIME": timedelta(days=app.config["SESSION_IDLE_DAYS"]),
        "SESSION_COOKIE_SAMESITE": "Lax",
        # an import file or a form with its attached files, at most; larger ones get 413 unread
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES + files_bytes,
        "SOCK_SERVER_OPTIONS": {"ping_interval": 25, "max_message_size": 1 << 20},
    }
    app.config.update({key: value for key, value in limits.items() if key not in (overrides or {})})

    if app.config["PROXY_COUNT"]:  # behind nginx: trust its X-Forwarded-For/Proto/Host, that many hops
        app.wsgi_app = security.FromTrustedProxies(  # type: ignore[method-assign]  # how Flask adds WSGI middleware
            app.wsgi_app, app.config["PROXY_COUNT"], app.config["TRUSTED_PROXY_ADDRESSES"]
        )

    from chatbot.stores import check_it_keeps_data, open_store

    idle_seconds = app.config["SESSION_IDLE_DAYS"] * 86400
    accept_nothing = app.config["REDIS_KEEPS_NOTHING"] == "accept"
    check_it_keeps_data(app.config.get("CHAT_STORE_URL"), accept_nothing, app.logger.warning)
    app.extensions["chat_store"] = open_store(app.config.get("CHAT_STORE_URL"), app.instance_path, idle_seconds)

    from chatbot.web import admin, auth, cli, errors, files, health, oidc, pages, shares, socket, templating
    from chatbot.web.extensions import sock

    security.init_app(app)
    templating.init_app(app)
    errors.init_app(app)
    oidc.init_app(app)
    sock.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(shares.bp)
    app.register_blueprint(files.bp)
    app.register_blueprint(socket.bp)
    app.register_blueprint(health.bp)
    cli.init_app(app)
    auth.announce_setup_code_at_start(app)
    return app
