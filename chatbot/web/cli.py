"""flask commands: `serve` (what `make run` runs), `local-model`, `doctor`, `create-admin`, `backup` and `restore`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from chatbot.chat import accounts, backup
from chatbot.chat.doctor import diagnose
from chatbot.local_model.server import MODEL_NAME, RECOMMENDED, LocalModelServer
from chatbot.local_model.supervisor import Supervisor
from chatbot.stores.failures import StoreUnavailable


def needs_local_model(config: dict) -> bool:
    """With no token and no API_URL there is nothing to talk to but the embedded model."""
    return not config.get("HF_API_TOKEN") and not config.get("API_URL")


def supervised_local_model(folder: Path, port: int | None = None) -> Supervisor:
    """The built-in model, started and kept running; its output and status files are kept in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    server = LocalModelServer(port, log=folder / "local-model.log")
    return Supervisor(server, folder / "local-model.json", say=lambda text: click.echo(text, err=True)).start()


def _stop_on_signals() -> None:
    """Ctrl-C or a service manager's stop ends the chat and the model together."""

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


@click.command("serve")
@with_appcontext
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="Address for the chat.")
def serve_command(bind: str) -> None:
    """Run the chat under gunicorn, with the embedded local model when nothing else is set."""
    _stop_on_signals()
    environment = dict(os.environ)
    local = None
    try:
        if needs_local_model(current_app.config):
            click.echo(f"No HF_API_TOKEN and no API_URL in .env: starting the built-in model ({MODEL_NAME})...")
            local = supervised_local_model(Path(current_app.instance_path))
            environment.update(local.server.app_environment(), LOCAL_MODEL_STATUS=str(local.status_path))
            for name, value in RECOMMENDED.items():
                environment[name] = environment.get(name) or value
            click.echo(f"Local model ready at {local.server.url}")
        click.echo(f"Chat on http://{bind}  (Ctrl-C stops it)")
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", bind, "wsgi:app"]
        server = subprocess.Popen(command, env=environment)
        try:
            sys.exit(server.wait())
        except KeyboardInterrupt:
            server.terminate()
            server.wait(timeout=15)
    except (RuntimeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    finally:
        if local:
            local.stop()


@click.command("local-model")
@with_appcontext
@click.option("--port", default=8080, show_default=True)
def local_model_command(port: int) -> None:
    """Run only the built-in llama.cpp server (kept running), for API_URL=http://127.0.0.1:PORT/v1."""
    _stop_on_signals()
    try:
        local = supervised_local_model(Path(current_app.instance_path), port)
    except (RuntimeError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Local model {local.server.model_id} at {local.server.url}. Ctrl-C stops it.")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        local.stop()


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Check the configuration and reach every model; exit 1 when the chat would not work."""
    broken = False
    for finding in diagnose(current_app.config, current_app.instance_path):
        mark = "ok  " if finding.ok else "FAIL"
        click.echo(f"{mark} {finding.text}")
        if finding.hint:
            click.echo(f"     -> {finding.hint}")
        broken = broken or (not finding.ok and finding.fatal)
    if broken:
        sys.exit(1)


@click.command("create-admin")
@with_appcontext
@click.argument("name")
def create_admin_command(name: str) -> None:
    """Make NAME an admin: a username, or with AUTH=oidc an e-mail address. A new account under AUTH=local gets
    the password typed here (asked twice, hidden, as createsuperuser and htpasswd do: it is never shown or
    logged), and so does one still waiting for approval: anyone may have signed that name up, so whoever did
    cannot sign in with their password any more. An active account keeps its own."""
    store, mode = current_app.extensions["chat_store"], current_app.config["AUTH"]
    if mode == "none":
        raise click.ClickException("AUTH=none has no accounts: set AUTH=local, oidc or header first.")
    name = accounts.normalized(name)
    account = accounts.load(store, name)
    if account is not None and (account.status == "active" or mode != "local"):
        accounts.make_admin(account)
        accounts.save(store, account)
        click.echo(f"{name} is an admin now (its password is unchanged).")
        return
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True) if mode == "local" else None
    if account is not None and password:  # waiting for approval: the name goes to whoever runs this command
        if problem := accounts.password_problem(password):
            raise click.ClickException(problem)
        accounts.set_password(account, password)
        accounts.make_admin(account)
        accounts.save(store, account)
        click.echo(f"{name} is an admin: sign in as {name} with the password you typed (the old one no longer works).")
        return
    try:
        accounts.create(store, name, password, admin=True)
    except accounts.SignUpProblem as problem:
        raise click.ClickException(str(problem)) from None
    if password:
        click.echo(f"{name} is an admin: sign in as {name} with the password you typed.")
    else:
        click.echo(f"{name} is an admin: they sign in as usual.")


@click.command("backup")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def backup_command(file: str) -> None:
    """Write everything the chat keeps to FILE (gzip'd JSON lines), while it runs: accounts with their password
    hashes, conversations with all their branches, files, share links, the site's settings and limits."""
    try:
        written = backup.back_up(current_app.extensions["chat_store"], file)
    except (StoreUnavailable, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Backed up to {file}: {_counted(written)}.")


@click.command("restore")
@with_appcontext
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def restore_command(file: str) -> None:
    """Load FILE, made by `flask backup` with any store, into the store CHAT_STORE_URL names, which must be empty."""
    try:
        restored = backup.restore(current_app.extensions["chat_store"], file)
    except (StoreUnavailable, backup.ArchiveProblem) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Restored from {file}: {_counted(restored)}.")


def _counted(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {what}" for what, count in sorted(counts.items())) or "nothing"


def init_app(app: Flask) -> None:
    app.cli.add_command(doctor_command)
    app.cli.add_command(serve_command)
    app.cli.add_command(local_model_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
