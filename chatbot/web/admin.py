"""Blueprint "admin": the accounts (approve, disable, make admin, reset a password, sign out, the models and MCP
servers each may use), today's use per account, the MCP servers and whether they answered (asked again after
STATUS_SECONDS, or at once with "Check again"), the limits for accounts and how new accounts get in.
Server-rendered forms; admins only (403)."""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from chatbot.chat import accounts, limits, picker
from chatbot.services import tools
from chatbot.web.common import store
from config import SETTINGS

bp = Blueprint("admin", __name__, url_prefix="/admin")
CHECK_SECONDS = 3.0  # the most the page waits for an MCP server to list its tools
STATUS_SECONDS = 30.0  # what each said is shown this long before the page asks it again ("Check again": at once)
TRANSPORT_WORDS = {"http": "streamable HTTP", "sse": "HTTP+SSE", "stdio": "stdio (a program the chat starts)"}


@bp.before_request
def admins_only() -> None:
    if g.get("account") is None or not g.account.admin:
        abort(403)


@bp.get("/")
def dashboard(notice: str = "", status: int = 200):
    everyone = accounts.everyone(store())
    usage = {account.username: limits.usage_today(store(), account.owner) for account in everyone}
    return render_template(
        "admin.html",
        everyone=everyone,
        usage=usage,
        site=accounts.site_settings(store(), current_app.config),
        notice=notice,
        signups=accounts.SIGNUPS,
        models=[choice.name for choice in picker.choices(current_app.config)],
        servers=tools.check_servers(current_app.config["TOOL_SERVERS"], CHECK_SECONDS, STATUS_SECONDS),
        transports=TRANSPORT_WORDS,
    ), status


@bp.post("/accounts/<username>")
def change_account(username: str):
    """One of: approve, disable, enable, make-admin, remove-admin, reset-password, sign-out, models, servers."""
    account = accounts.load(store(), username)
    action = request.form.get("action", "")
    if account is None:
        abort(404)
    if action in ("disable", "remove-admin") and (problem := accounts.last_admin_problem(store(), account)):
        return dashboard(f"Nothing was changed: {problem}", 400)
    notice = f"{account.username}: done."
    if action in ("approve", "enable"):
        account.status = "active"
    elif action == "disable":
        account.status, account.sessions = "disabled", {}  # its sessions end at once, open sockets included
    elif action in ("make-admin", "remove-admin"):
        account.admin = action == "make-admin"
    elif action == "reset-password" and account.password_hash:
        password = secrets.token_urlsafe(12)
        accounts.set_password(account, password)
        notice = f"{account.username}'s new password is {password} (shown once: give it to them, they can sign in)."
    elif action == "sign-out":
        account.sessions = {}
    elif action == "models":
        names = [name.strip() for name in request.form.get("models", "").split(",") if name.strip()]
        known = {choice.name for choice in picker.choices(current_app.config)}
        if unknown := [name for name in names if name not in known]:
            return dashboard(f"Nothing was changed: {', '.join(unknown)} is not a model this chat offers.", 400)
        account.models = names
        notice = f"{account.username} may pick {', '.join(names) if names else 'every model'}."
    elif action == "servers":  # every one ticked: every server, those added later too
        every = [server.name for server in current_app.config["TOOL_SERVERS"]]
        ticked = [name for name in every if name in request.form.getlist("servers")]
        account.tool_servers = None if ticked == every else ticked
        allowed = "every tool server" if ticked == every else ", ".join(ticked) or "no tool server"
        notice = f"{account.username} may use {allowed}."
    else:
        abort(400)
    accounts.save(store(), account)
    return dashboard(notice)


@bp.post("/settings")
def change_settings():
    """The limits for accounts and how new accounts get in."""
    signups = request.form.get("signups", "")
    try:
        chosen = {
            "signups": signups if signups in accounts.SIGNUPS else accounts.SIGNUPS[0],
            "messages_per_minute": SETTINGS["MESSAGES_PER_MINUTE"][0](request.form.get("messages_per_minute", "")),
            "tokens_per_day": SETTINGS["TOKENS_PER_DAY"][0](request.form.get("tokens_per_day", "")),
        }
    except ValueError as error:
        return dashboard(f"Nothing was changed: the limits take {error}.", 400)
    accounts.save_site_settings(store(), chosen)
    return redirect(url_for("admin.dashboard"))


@bp.post("/servers/check")
def check_servers():
    """Ask every tool server for its tools now ("Check again"), not what it said up to STATUS_SECONDS ago."""
    tools.check_servers(current_app.config["TOOL_SERVERS"], CHECK_SECONDS)
    return redirect(url_for("admin.dashboard", _anchor="tool-servers"))


@bp.post("/invitations")
def new_invitation():
    link = url_for("auth.join", token=accounts.invite(store()), _external=True)
    days = accounts.INVITATION_SECONDS // 86400
    current_app.logger.info("an admin made an invitation")
    return dashboard(f"Invitation link (one account, {days} days): {link}")
