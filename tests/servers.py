"""Real processes for tests: the app under gunicorn, and a chat client for its WebSocket."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests
import websocket

from chatbot.local_model.server import free_port

ROOT = Path(__file__).resolve().parent.parent
# This checkout's Redis databases on the machine's Redis (flushed by the tests that use them whole): one each per
# checkout running tests at once, so that none empties another's.
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_DB', '13')}"
REDIS_ACCOUNTS_URL = f"redis://127.0.0.1:6379/{os.environ.get('TEST_REDIS_ACCOUNTS_DB', '11')}"
# The fragment that ends an answer (a page or a refreshed list has such articles too, but not swapped out of band).
FINISHED = re.compile(r'<article id="msg-([\w-]+)" class="message assistant (done|error|stopped)" hx-swap-oob="true"')

# A fragment with more of the answer's text (templates/chat/_live.html: the open block replaced, or text added to it).
ANSWER_TEXT = re.compile(r'<div id="open-[\w-]+" hx-swap-oob="innerHTML">|hx-swap-oob="beforeend:#open-')
_SHOWN = re.compile(
    r'<div class="body markdown" id="text-[\w-]+">(?P<page_done>)'
    r'|<div hx-swap-oob="beforebegin:#open-[\w-]+">(?P<done>)'
    r'|<div id="open-[\w-]+" hx-swap-oob="innerHTML">(?P<open>)'
    r'|<div id="open-[\w-]+" hx-swap-oob="(?P<ended>delete)">'
    r'|<span hx-swap-oob="beforeend:#open-[\w-]+ .live-tail">(?P<tail>[^<]*)</span>'
    r'|(?P<call><details class="[^"]*" id="(?P<call_id>call-[\w-]+)") hx-swap-oob="true"(?P<block>>.*?</details>)',
    re.S,
)
# The body of a finished answer left as the tab shows it (templates/chat/_finished.html: only the rest was sent).
_KEPT = re.compile(r'<div class="body markdown" id="text-[\w-]+" hx-preserve></div>')
# Its reasoning, as it streamed: whole (a page, or the answer resumed), then text added; and left as it is at the end.
_REASONING = re.compile(
    r'<div class="plain" id="reasoning-[\w-]+">(?P<whole>[^<]*)</div>'
    r'|<span hx-swap-oob="beforeend:#reasoning-[\w-]+">(?P<added>[^<]*)</span>'
)
_KEPT_REASONING = re.compile(r'<div class="plain" id="reasoning-[\w-]+" hx-preserve></div>')
_DIV = re.compile(r"<div[\s>]|</div>")
_TAIL = '<span class="live-tail">'


# A test or benchmark client is 127.0.0.1 standing for many browsers: no limits per session or address.
UNLIMITED = {
    setting: "0"
    for setting in (
        "MESSAGES_PER_MINUTE",
        "MESSAGES_PER_MINUTE_PER_ADDRESS",
        "CONVERSATIONS_PER_HOUR",
        "CONVERSATIONS_PER_HOUR_PER_ADDRESS",
        "FILES_PER_HOUR",
        "FILES_PER_HOUR_PER_ADDRESS",
        "SOCKETS_PER_SESSION",
        "SOCKETS_PER_ADDRESS",
        "MAX_ANSWERS_AT_ONCE",
        "MAX_ANSWERS_AT_ONCE_PER_ADDRESS",
    )
}


def shown_answer(frames: list[str]) -> str:
    """The answer's HTML as a tab shows it after `frames` (a page or the resumed answer may come first): the
    complete blocks appended, then the open block as last replaced, with the text added to it since (none once the
    answer ended), and the tool calls' blocks as last changed."""
    done = shown = ""
    for frame in map(str, frames):  # a Markup frame would escape the plain ones added to it
        for part in _SHOWN.finditer(frame):
            if part["tail"] is not None:
                tail_end = shown.index("</span>", shown.index(_TAIL))
                shown = shown[:tail_end] + part["tail"] + shown[tail_end:]
            elif part["call"] is not None:
                block = re.compile(f'<details class="[^"]*" id="{part["call_id"]}">.*?</details>', re.S)
                done = block.sub(lambda _, part=part: part["call"] + part["block"], done, count=1)
            elif part["ended"] is not None:
                shown = ""
            elif part["page_done"] is not None:
                inside = _inside_the_div(frame, part.end())
                done = inside[: inside.index('<div class="live-open" id="open-')]
                shown = _inside_the_div(inside, inside.index(">", len(done)) + 1)
            elif part["done"] is not None:
                done += _inside_the_div(frame, part.end())
            else:
                shown = _inside_the_div(frame, part.end())
    return done + shown


def finished_answer(frames: list[str]) -> str:
    """The fragment that ended the answer (the last of `frames`) with the answer's body as the tab then shows it:
    the one sent with it, or the one the tab kept with what was sent for it (then put in it, not left before)."""
    last = str(frames[-1])
    kept = _KEPT.search(last)
    if kept is None:
        return last
    article = last.rindex("<article ", 0, kept.start())
    last = f'{last[article : kept.start()]}<div class="body markdown">{shown_answer(frames)}</div>{last[kept.end() :]}'
    reasoning = ""
    for frame in map(str, frames):
        for part in _REASONING.finditer(frame):
            reasoning = part["whole"] if part["whole"] is not None else reasoning + part["added"]
    return _KEPT_REASONING.sub(lambda _: f'<div class="plain">{reasoning}</div>', last)


def answer_body(html: str) -> str:
    """The body of the first finished answer in `html` (a page, or `finished_answer`'s fragment)."""
    start = '<div class="body markdown">'
    return _inside_the_div(html, html.index(start) + len(start))


def _inside_the_div(html: str, start: int) -> str:
    """What a div whose content starts at `start` holds, to its own closing tag (it may hold divs)."""
    depth = 1
    for tag in _DIV.finditer(html, start):
        depth += -1 if tag[0] == "</div>" else 1
        if depth == 0:
            return html[start : tag.start()]
    raise ValueError("a div without its end")


def act(ws: websocket.WebSocket, action: str, **fields: object) -> None:
    """Send one action over the chat socket, as the page's htmx would."""
    ws.send(json.dumps({"action": action, **fields}))


def read_until(ws: websocket.WebSocket, frames: list[str], until: str | re.Pattern, seconds: float = 90) -> list[str]:
    """Receive frames into `frames` until the last one contains `until` (text or pattern); never wait without end."""
    deadline = time.monotonic() + seconds
    while not frames or not (until.search(frames[-1]) if isinstance(until, re.Pattern) else until in frames[-1]):
        if time.monotonic() > deadline:
            raise AssertionError(f"no frame with {until!r} within {seconds:g} s; the last frames: {frames[-3:]}")
        frames.append(ws.recv())
    return frames


class GunicornApp:
    """`gunicorn wsgi:app` with gunicorn.conf.py, on a free port, with the given environment."""

    def __init__(self, environment: dict[str, str], workers: int = 2, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = {**os.environ, **environment, "WEB_CONCURRENCY": str(workers)}
        self.process: subprocess.Popen | None = None
        self.log = log  # where gunicorn's output goes (nowhere by default)

    def start(self) -> GunicornApp:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{self.port}",
            "wsgi:app",
        ]
        output = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.environment, stdout=output, stderr=output)
        if self.log:
            output.close()  # gunicorn has its own copy
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                requests.get(self.url + "/static/css/chat.css", timeout=2)
                return self
            except requests.RequestException:  # not listening yet, or no worker has booted to answer
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start within 30 s (exit code {self.process.returncode})")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:  # never leave a server behind
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> GunicornApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ChatClient:
    """A browser session: a cookie, a conversation, and its WebSocket."""

    def __init__(self, base_url: str, http: requests.Session | None = None) -> None:
        """A new browser session, or `http`'s (one that has signed in, say), on its newest conversation."""
        self.base_url = base_url
        self.http = http or requests.Session()
        page = self.http.get(base_url + "/", timeout=30)
        page.raise_for_status()
        self.page_url = page.url
        self.conversation_id = page.url.rstrip("/").rsplit("/", 1)[-1]
        self.socket_url = base_url.replace("http", "ws", 1) + f"/c/{self.conversation_id}/socket"

    def via(self, base_url: str) -> ChatClient:
        """The same session and conversation, through another instance (another host behind the balancer)."""
        other = copy.copy(self)
        other.base_url = base_url
        other.page_url = self.page_url.replace(self.base_url, base_url)
        other.socket_url = self.socket_url.replace(self.base_url.split("//")[1], base_url.split("//")[1])
        return other

    def connect(self, origin: str | None = None, again: bool = False) -> websocket.WebSocket:
        """Open the chat's socket, as the page does (`again`: as a tab trying again after a full worker)."""
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        headers = [f"Cookie: {cookie}"]
        if self.http.auth:  # a proxy's basic auth (the deployment test's nginx)
            headers.append("Authorization: Basic " + base64.b64encode(":".join(self.http.auth).encode()).decode())
        url = self.socket_url + ("?again=1" if again else "")
        # Each text frame is still decoded as UTF-8 (an invalid one raises); the library's own check before that is
        # pure Python, 7.6 ms for a 69 kB frame, which a browser does natively: a benchmark would time the client.
        return websocket.create_connection(
            url, header=headers, origin=origin or self.base_url, timeout=60, skip_utf8_validation=True
        )

    def exchange(self, text: str, ws: websocket.WebSocket | None = None) -> list[str]:
        """Send a message; return every frame up to the finished answer."""
        own = ws is None
        ws = ws or self.connect()
        try:
            act(ws, "send", message=text, HEADERS={"HX-Request": "true"})
            return read_until(ws, [], FINISHED)
        finally:
            if own:
                ws.close()

    def page(self) -> str:
        return self.http.get(self.page_url, timeout=30).text

    def post_form(self, path: str, **fields: str) -> requests.Response:
        """Post one of the conversation's forms (path after /c/<id>), with its CSRF token, as the browser would."""
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.page()).group(1)
        return self.http.post(self.page_url + path, data={"csrf_token": token, **fields}, timeout=30)
