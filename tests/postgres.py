"""PostgreSQL for tests: a database of this checkout's own on the machine's server (TEST_PG_DB, made and dropped by
the tests), a schema of its own per test, and a private server (initdb, pg_ctl) that a test may stop."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from urllib.parse import quote

import psycopg

from chatbot.local_model.server import free_port

SERVER = os.environ.get("TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")  # `make postgres` starts it
DATABASE = os.environ.get("TEST_PG_DB", "chatbot_test")  # one per checkout running tests


def url(database: str = DATABASE, server: str = SERVER) -> str:
    return f"{server}/{database}"


@contextlib.contextmanager
def new_database(name: str = DATABASE, server: str = SERVER) -> Iterator[str]:
    """A database made empty for the block (one left by a test run that was killed is dropped first), dropped
    after; its URL."""
    with psycopg.connect(url("postgres", server=server), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url(name, server=server)
    finally:
        with psycopg.connect(url("postgres", server=server), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def new_schema(name: str, database_url: str) -> Iterator[str]:
    """A schema of the database for the block, dropped with all it holds after; the URL that keeps tables in it."""
    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield f"{database_url}?options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(database_url, autocommit=True) as db:
            db.execute(f'DROP SCHEMA "{name}" CASCADE')


def _binaries() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL's initdb is not installed: `make postgres` installs it"
    return os.path.dirname(found[-1])


class PrivateServer:
    """A PostgreSQL server of the test's own, in a folder of its own on a free port, that it may stop and start
    again without touching the machine's. Run as the `postgres` user when the tests run as root (initdb refuses
    root)."""

    def __init__(self) -> None:
        self.bin = _binaries()
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="chat-test-pg-")
        self.data = os.path.join(self.folder, "data")
        self.log = os.path.join(self.folder, "server.log")
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, tool: str, *arguments: str) -> None:
        command = [*self.as_owner, os.path.join(self.bin, tool), *arguments]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop it at once, as a crash or a restart of its host would (every connection dropped)."""
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")

    def wait_until_it_answers(self, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with psycopg.connect(url("postgres", server=self.url), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the test's PostgreSQL did not start"
                time.sleep(0.1)

    def __enter__(self) -> PrivateServer:
        self.start()
        self.wait_until_it_answers()
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
