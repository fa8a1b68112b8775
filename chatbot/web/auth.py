"""Blueprint "auth": who is chatting. AUTH=local: sign-up, sign-in and sign-out with accounts in the store;
AUTH=oidc: an OpenID Connect provider signs people in (chatbot/web/oidc.py); AUTH=header: the user a trusted proxy
names in AUTH_HEADER; AUTH=none: nobody signs in (a browser's session owns its chats). Every request is checked
before any page or socket sees it (`g.account`)."""

from __future__ import annotations

import time

from flask import Blueprint, Flask, abort, current_app, g, redirect, render_template, request, session, url_for
from werkzeug.exceptions import SecurityError

from chatbot.chat import accounts
from chatbot.chat.limits import address_key
from chatbot.stores.failures import StoreUnavailable
from chatbot.web import oidc
from chatbot.web.common import runs_the_chat, store

bp = Blueprint("auth", __name__)
PUBLIC = {
    "static",
    "health.healthz",
    "health.readyz",
    "auth.sign_in",
    "auth.sign_up",
    "auth.join",
    "auth.oidc_start",
    "auth.oidc_callback",
    "shares.view",  # a shared snapshot is for whoever has its link
    "shares.shared_file",  # and the files its owner included
}
SIGN_IN_WINDOW = 900  # sign-in attempts are counted per 15 minutes
SIGN_INS_PER_ACCOUNT, SIGN_INS_PER_ADDRESS = 10, 50  # per account from one address; per address in all
# Wrong passwords for one account from anywhere in the window, after which each try at it waits: an attacker
# with many addresses is slowed, and the owner, from any address of theirs, still gets in.
FAILURES_BEFORE_SLOWER, SLOWER_SECONDS = 10, 1.0
SIGN_UPS_PER_ADDRESS = 10
WRONG = (
    "That username and password do not match an account that may sign in (a new account can once an admin has "
    "let it in)."
)


@bp.before_app_request
def who_is_chatting():
    """Set g.account (None when nobody signs in); send a visitor who must sign in to the sign-in page."""
    g.account = None
    if isinstance(request.routing_exception, SecurityError):  # a Host name the chat does not serve: 400 follows
        return None
    mode = current_app.config["AUTH"]
    if mode == "header":
        g.account = proxy_account()
    elif mode in ("local", "oidc") and "account" in session:
        g.account = accounts.signed_in(store(), session["account"], session.get("sid", ""))
        if g.account is None:  # signed out elsewhere, or disabled: this session has ended
            session.pop("account", None)
            session.pop("sid", None)
    if mode != "none" and g.account is None and request.endpoint not in PUBLIC:
        if mode == "header" or request.endpoint == "chat.conversation_socket" or request.method != "GET":
            abort(401)
        first_visit = mode == "local" and accounts.none_yet(store())  # nobody to sign in: the first one signs up
        return redirect(url_for("auth.sign_up" if first_visit else "auth.sign_in"))
    return None


@bp.app_errorhandler(401)
def not_signed_in(_error):
    if current_app.config["AUTH"] == "header":
        reason = "This chat is for people its sign-in proxy lets in, and this request did not come through it."
    else:
        reason = "You are not signed in (or were signed out): sign in again."
    return render_template("problem.html", heading="Sign in first", reason=reason, sending=False), 401


def proxy_account() -> accounts.Account | None:
    """The account the trusted proxy names, made on its first visit; None when the request did not come
    through that proxy (a client that reaches the app directly cannot name anyone)."""
    direct = request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR", request.remote_addr)
    name = request.headers.get(current_app.config["AUTH_HEADER"], "").strip().lower()
    if not name or direct not in current_app.config["TRUSTED_PROXY_ADDRESSES"]:
        return None
    account = named_account(name)
    return account if account and account.status == "active" else None


def named_account(name: str) -> accounts.Account | None:
    """The account a proxy or a provider signed in, made on its first visit; None for a name it cannot take."""
    account = accounts.load(store(), name)
    if account is None:
        admin = name in current_app.config["ADMINS"]
        try:
            account = accounts.create(store(), name, None, status="active", admin=admin, first=admin_by_arrival())
        except accounts.SignUpProblem:
            account = accounts.load(store(), name)  # made meanwhile by another request, or a name it cannot take
    return named_admin(account)


def admin_by_arrival() -> bool:
    """Whether the first account becomes the admin by arriving first: only without ADMINS, on a chat that this
    machine alone reaches (from elsewhere, the admin signs up with the setup code)."""
    return not current_app.config["ADMINS"] and not current_app.config["REACHABLE"]


def named_admin(account: accounts.Account | None) -> accounts.Account | None:
    """An active account that ADMINS names is an admin when it signs in. One still waiting for approval is not:
    anyone may have signed up that name before it was put in ADMINS (`flask create-admin` gives it to its owner)."""
    if account and account.username in current_app.config["ADMINS"] and account.status == "active":
        if not account.admin:
            accounts.make_admin(account)
            accounts.save(store(), account)
    return account


def admins_to_come() -> bool:
    """Whether an admin may still sign up with the setup code: AUTH=local on a chat reachable from elsewhere,
    with a name in ADMINS that has no account yet, or without ADMINS no admin yet."""
    config = current_app.config
    if config["AUTH"] != "local" or not config["REACHABLE"]:
        return False
    if config["ADMINS"]:
        return any(accounts.load(store(), name) is None for name in config["ADMINS"])
    return accounts.no_admin_yet(store())


def announce_setup_code_at_start(app: Flask) -> None:
    """The setup code in the log at start while an admin may sign up with it; a store that does not answer now
    is left for the sign-up page, which prints the code when it makes one."""
    with app.app_context():
        try:
            if admins_to_come():
                announce_setup_code()
        except StoreUnavailable as error:
            app.logger.warning("Could not read the accounts at start: %s", error)


def needs_setup_code(username: str) -> bool:
    """Whether signing up this name makes an admin on a chat reachable from elsewhere: a name in ADMINS or,
    without ADMINS, anyone while there is no admin."""
    config = current_app.config
    if not config["REACHABLE"]:
        return False
    return username in config["ADMINS"] if config["ADMINS"] else accounts.no_admin_yet(store())


def announce_setup_code(made_only: bool = False) -> None:
    """Print the setup code in the log for whoever runs the chat (as Jupyter prints its token): at start while
    an admin may sign up with it, and whenever a new one is made."""
    code, made = accounts.setup_code(store())
    if made or not made_only:
        current_app.logger.warning(
            "An admin has yet to sign up. Sign up at /sign-up with the setup code %s (it works once), or run "
            "`flask --app wsgi create-admin NAME` on this server.",
            code,
        )


@bp.app_context_processor
def account_in_templates() -> dict:
    """Who reads the page (a socket's fragments say it themselves: they are rendered outside the request)."""
    account, config = g.get("account"), current_app.config
    return {
        "account": account,
        "auth": config["AUTH"],
        "runs_the_chat": runs_the_chat(account, config),
        "waiting_for_approval": waiting_for_approval,
    }


def waiting_for_approval() -> int:
    """How many accounts wait for approval, for an admin reading the page (the badge by the admin page's link);
    0 for anyone else. Read only where a template asks."""
    account = g.get("account")
    return accounts.waiting(store()) if account is not None and account.admin else 0


def begin_session(account: accounts.Account):
    """Sign the browser in: its chats made before move to the account; the cookie gets a new session. None when
    an admin changed the account meanwhile (disabled it, or reset its password)."""
    session_id = accounts.start_session(store(), account)
    if session_id is None:
        return None
    browser_owner = session.get("owner")
    if browser_owner:
        store().move_conversations(browser_owner, account.owner)
    session.clear()
    session["account"] = account.username
    session["sid"] = session_id
    session.permanent = True
    if notice := accounts.notice_for_owner(store(), account.username):
        session["notice"] = notice  # shown once, on the next chat page
    return redirect(url_for("pages.index"))


def too_many(kind: str, username: str, per_account: int, per_address: int) -> bool:
    """Count one sign-in (or sign-up) try for the name, however it is written, from this address, and one for
    the address: a try at an account from elsewhere is never refused for these."""
    address = address_key(request.remote_addr)
    counts = (
        (f"{kind}:account:{counted_name(username)}:from:{address}", per_account),
        (f"{kind}:address:{address}", per_address),
    )
    return any(store().add_to_count(key, 1, SIGN_IN_WINDOW) > allowed for key, allowed in counts)


def counted_name(username: str) -> str:
    """The name a try is counted under: a name that is no username is nobody's account."""
    return username if not accounts.username_problem(username) else "(not a username)"


def failures_of(username: str, adding: int = 0) -> int:
    """Wrong passwords for this account from anywhere in the window (adding 0: only read)."""
    return store().add_to_count(f"sign-in:failures:{counted_name(username)}", adding, SIGN_IN_WINDOW)


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    if current_app.config["AUTH"] == "oidc":
        return oidc.sign_in_page()
    if current_app.config["AUTH"] != "local":
        abort(404)
    if request.method == "GET":
        return render_template("auth/sign_in.html")
    username = accounts.normalized(request.form.get("username", ""))
    if too_many("sign-in", username, SIGN_INS_PER_ACCOUNT, SIGN_INS_PER_ADDRESS):
        problem = "Too many sign-in attempts from your network address: wait 15 minutes, then try again."
        return render_template("auth/sign_in.html", problem=problem, username=username), 429
    if failures_of(username) >= FAILURES_BEFORE_SLOWER:
        time.sleep(SLOWER_SECONDS)  # someone is guessing this account's password: slow every try, refuse none
    account = named_admin(accounts.check_password(store(), username, request.form.get("password", "")))
    if account is None or account.status != "active":  # a waiting account counts as a wrong password: it reads as one
        failures_of(username, 1)
    if account is None or account.status != "active" or (started := begin_session(account)) is None:
        return render_template("auth/sign_in.html", problem=WRONG, username=username), 401
    return started


@bp.get("/sign-in/oidc")
def oidc_start():
    if current_app.config["AUTH"] != "oidc":
        abort(404)
    return oidc.start_sign_in()


@bp.get("/sign-in/callback")
def oidc_callback():
    """The provider sends the person back here with a code; the account is their verified e-mail address."""
    if current_app.config["AUTH"] != "oidc":
        abort(404)
    email, problem = oidc.verified_email()
    if email is None:
        return oidc.sign_in_page(problem, 403)
    account = named_account(email)
    if account is None or account.status != "active":
        return oidc.sign_in_page("This account is disabled: ask the chat's admin.", 403)
    return begin_session(account) or oidc.sign_in_page("This account is disabled: ask the chat's admin.", 403)


@bp.route("/sign-up", methods=["GET", "POST"])
def sign_up():
    """A new account: the admin (the first here, or with the setup code); later ones wait for approval, or need
    an invitation."""
    if current_app.config["AUTH"] != "local":
        abort(404)
    first = admin_by_arrival() and accounts.no_admin_yet(store())
    setup = admins_to_come()
    invitation_only = accounts.site_settings(store(), current_app.config)["signups"] == "invitation" and not first
    if request.method == "GET" or invitation_only:
        status = 403 if invitation_only and request.method == "POST" else 200
        page = render_template("auth/sign_up.html", first=first, setup=setup, invitation_only=invitation_only)
        return page, status
    return made_account(request.form, status="pending", token="")


@bp.route("/join/<token>", methods=["GET", "POST"])
def join(token: str):
    """Sign up with an invitation: the account is active at once."""
    if current_app.config["AUTH"] != "local" or not accounts.invitation_valid(store(), token):
        abort(404)
    if request.method == "GET":
        return render_template("auth/sign_up.html", token=token)
    return made_account(request.form, status="active", token=token)


def made_account(form, status: str, token: str):
    """Make the account (an invitation is used up only by an account made with it; the setup code by the admin's
    account on a chat reachable from elsewhere, which an invitation, made by an admin, stands in for)."""
    username, password = accounts.normalized(form.get("username", "")), form.get("password", "")
    page = {"username": username, "token": token, "setup": not token and admins_to_come()}
    if too_many("sign-up", username, SIGN_INS_PER_ACCOUNT, SIGN_UPS_PER_ADDRESS):
        problem = "Too many sign-ups from your network address: wait 15 minutes, then try again."
        return render_template("auth/sign_up.html", problem=problem, **page), 429
    try:
        accounts.check_new(store(), username, password)
        coded = not token and needs_setup_code(username)
        if coded and not accounts.use_setup_code(store(), form.get("setup_code", "")):
            announce_setup_code(made_only=True)
            return render_template("auth/sign_up.html", problem=setup_code_problem(username), **page), 403
        if token and not accounts.use_invitation(store(), token):
            abort(404)
        admin = coded or username in current_app.config["ADMINS"]
        account = accounts.create(store(), username, password, status, admin=admin, first=admin_by_arrival())
    except accounts.NameTaken as problem:
        if token:  # an invited person may hear it: the link is their admin's, for one account
            return render_template("auth/sign_up.html", problem=str(problem), **page), 400
        accounts.asked_for_taken_name(store(), username, password)
        return render_template("auth/sign_up.html", waiting=True), 202  # as a new account: names are not listed
    except accounts.SignUpProblem as problem:
        return render_template("auth/sign_up.html", problem=str(problem), **page), 400
    if account.status == "active":
        return begin_session(account) or redirect(url_for("auth.sign_in"))
    return render_template("auth/sign_up.html", waiting=True), 202


def setup_code_problem(username: str) -> str:
    where = "the setup code printed in the chat's log (whoever runs the chat has it)"
    if current_app.config["ADMINS"]:
        return f"{username} is one of this chat's admins (ADMINS): signing up as {username} takes {where}."
    return f"This chat has no admin yet: its admin signs up first, with {where}. Then sign up again."


@bp.post("/sign-out")
def sign_out():
    if g.account is not None and current_app.config["AUTH"] != "header":
        accounts.end_sessions(store(), g.account, only=session.get("sid"))
    session.clear()
    return redirect(url_for("auth.sign_in") if current_app.config["AUTH"] != "header" else url_for("pages.index"))


@bp.post("/sign-out-everywhere")
def sign_out_everywhere():
    if g.account is not None:
        accounts.end_sessions(store(), g.account)
    session.clear()
    return redirect(url_for("auth.sign_in"))
