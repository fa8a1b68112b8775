"""Blueprint "chat": the WebSocket of one conversation and its message protocol.

The browser (htmx ws-send) sends JSON: {"action": "send", "message": "...", "after": "<the last message the
tab shows>"}, "edit", "regenerate", "continue", "pick" (a model), "switch" (to another branch) or "stop". The
server sends HTML fragments that htmx swaps out of band, and the header anew when another tab changed the chat.
The origin and the owner are checked before the socket is accepted.

connection.py reads the actions and does them (chatbot/chat/actions.py), view.py keeps what the tab shows and
sends the fragments (fragments.py, from templates), follower.py shows answers written elsewhere.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, render_template, request, session, url_for

from chatbot.web.common import store
from chatbot.web.extensions import sock
from chatbot.web.open_sockets import OpenSockets
from chatbot.web.security import owner_id
from chatbot.web.socket.connection import FULL_CLOSE, REFUSED_CLOSE, ChatSocket

bp = Blueprint("chat", __name__)
log = logging.getLogger(__name__)
OPEN_SOCKETS = OpenSockets()  # this worker's


@bp.before_request
def check_origin_and_owner() -> None:
    """Refuse cross-site pages (403) and other sessions' conversations (404) before the handshake."""
    origin = (request.headers.get("Origin") or "").rstrip("/")
    if origin not in allowed_origins():
        log.warning("refused a chat socket from origin %r", origin)
        abort(403)
    owner = owner_id(create=False)
    # view_args, None before routing, are the route's by the time its before_request runs
    conversation = store().get_conversation(owner, request.view_args["conversation_id"]) if owner else None  # type: ignore[index]
    if conversation is None:
        abort(404)
    g.conversation = conversation


def allowed_origins() -> set[str]:
    """The app's own origin as the browser sees it, and any configured in ALLOWED_ORIGINS."""
    scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)
    return {f"{scheme}://{request.host}", *current_app.config["ALLOWED_ORIGINS"]}


def socket_path(conversation_id: str) -> str:
    """The socket's path, for ws-connect (url_for builds a ws:// URL that ignores a proxy's https)."""
    return urlsplit(url_for("chat.conversation_socket", conversation_id=conversation_id)).path


@bp.app_context_processor
def socket_path_in_templates() -> dict:
    return {"socket_path": socket_path}


@sock.route("/c/<conversation_id>/socket", bp=bp)
def conversation_socket(ws, conversation_id: str) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # the app behind the proxy, for threads
    with OPEN_SOCKETS.held(app.config, g.conversation.owner, request.remote_addr) as refused:
        if refused:
            ws.send(render_template("chat/_notice.html", text=refused.text, oob=True))
            ws.close(FULL_CLOSE if refused.try_again else REFUSED_CLOSE, "too many open")
            return
        if request.args.get("again"):  # a tab that was refused and tried again: the refusal it shows is over
            ws.send(render_template("chat/_notice.html", text="", oob=True))
        account, session_id = g.get("account"), session.get("sid", "")
        ChatSocket(ws, app, g.conversation, request.remote_addr, account, session_id).serve()
