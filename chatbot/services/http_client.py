"""The HTTP client that asks a model server for an answer: one POST, its response as it arrives, on connections
kept alive and used again.

requests made a Session, looked up proxies and ~/.netrc, and sent the headers and the body in two writes for every
answer: 6-8 ms before the server's first byte, against under 1 ms for http.client on a new connection and 0.15 ms
on one kept alive. This is http.client with what the chat needs of requests around it:

- connections kept per (scheme, host, port, proxy), at most IDLE_PER_SERVER idle each, shared by every thread and
  greenlet; one is used again only when its last response was read to its clean end (`Response.ended`), and one
  the server closed while it was idle is dropped, not used;
- the request line, headers and body in one write (http.client joins a body of bytes to its headers);
- HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (upper or lower case, as requests reads them: NO_PROXY takes
  host names and their domains, `*`, addresses and CIDR blocks, each with or without a port); an https server
  behind a proxy is reached through a CONNECT tunnel, an http one by its full URL; `user:password@` in a proxy's
  URL is sent as Basic Proxy-Authorization;
- TLS verified against REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE (a file or a folder), else certifi's
  bundle;
- a connect timeout for the connection (and the proxy's tunnel and the TLS handshake), a read timeout for every
  read after.

Failures are raised as ConnectTimeout, socket.timeout (TimeoutError) while waiting for the response, and
OSError or http.client.HTTPException for the rest; chatbot/services/inference.py says them in words.
"""

from __future__ import annotations

import atexit
import base64
import functools
import http.client
import ipaddress
import os
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import certifi
from requests.structures import CaseInsensitiveDict

IDLE_PER_SERVER = 8  # idle connections kept for one server: more answers at once open more, then close them
ERROR_BODY_LIMIT = 1 << 20  # bytes of a response read whole (an error's body, a JSON answer)
DEFAULT_PORTS = {"http": 80, "https": 443}
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
# Linux: acknowledge the response's first segments at once. A server that writes its headers and first event apart
# without TCP_NODELAY holds the event until the headers are acknowledged, and on a connection used again Linux
# delays that by 40 ms (a new connection starts in this mode).
QUICK_ACK = getattr(socket, "TCP_QUICKACK", None)


class ConnectTimeout(TimeoutError):
    """The server (or its proxy) did not take the connection within the connect timeout."""


Key = tuple[str, str, int, str]  # scheme, host, port, proxy URL ("" for none)


class Pool:
    """Idle connections by server, at most IDLE_PER_SERVER each; safe across threads and greenlets."""

    def __init__(self) -> None:
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()  # never held across a blocking call: a greenlet never waits on it long

    def take(self, key: Key) -> http.client.HTTPConnection | None:
        """An idle connection to this server that is still open, or None."""
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                connection = idle.pop()
            if _still_open(connection):
                return connection
            connection.close()

    def give_back(self, key: Key, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < IDLE_PER_SERVER:
                idle.append(connection)
                return
        connection.close()

    def clear(self) -> None:
        """Close every idle connection."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


POOL = Pool()
atexit.register(POOL.clear)  # the idle connections closed as the process ends, not left to the collector


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can take a request: the server has neither closed it nor sent anything on it
    (poll, not select: a worker may hold more than select's 1,024 descriptors)."""
    stream = connection.sock
    if stream is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(stream, select.POLLIN)
            return not poller.poll(0)
        return not select.select([stream], [], [], 0)[0]
    except (OSError, ValueError):
        return False


class Response:
    """A response as it arrives: `status`, `headers`, and the body through `raw` (http.client's, whose `fp` is the
    socket's buffered reader). Close it (or use it in `with`): its connection goes back to the pool only when
    `ended()` said the body was read to its clean end."""

    def __init__(self, key: Key, connection: http.client.HTTPConnection, raw: http.client.HTTPResponse) -> None:
        self.key = key
        self.connection = connection
        self.raw = raw
        self.stream = connection.sock  # taken now: http.client lets it go when the response will close it
        self.status = raw.status
        self.headers = CaseInsensitiveDict(raw.getheaders())
        self._clean = False

    def ended(self) -> None:
        """The body was read to its end, and nothing past it: the connection may serve another request."""
        self._clean = True

    def text(self) -> str:
        """The whole body (at most ERROR_BODY_LIMIT bytes), decoded by its charset, else as UTF-8."""
        data = self.raw.read(ERROR_BODY_LIMIT)
        if self.raw.isclosed():  # http.client read it to its end
            self.ended()
        charset = self.raw.headers.get_content_charset() or "utf-8"
        try:
            return data.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return data.decode("utf-8", errors="replace")

    def close(self) -> None:
        reusable = self._clean and not self.raw.will_close
        self.raw.close()
        if reusable:
            POOL.give_back(self.key, self.connection)
        else:
            self.connection.close()
            if self.stream is not None:
                self.stream.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def post(url: str, body: bytes, headers: Mapping[str, str], connect_timeout: float, read_timeout: float) -> Response:
    """POST `body` to `url` and return its response once its headers have arrived. A connection kept alive that
    turns out closed before any of the response came is replaced once, on a new connection."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    if scheme not in DEFAULT_PORTS or not host:
        raise http.client.InvalidURL(f"not an http or https URL: {url}")
    port = parts.port or DEFAULT_PORTS[scheme]
    proxy = proxy_for(scheme, host, port)
    key = (scheme, host, port, proxy)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if proxy and scheme == "http":  # the proxy is asked for the whole URL, without its user name and password
        target = f"http://{parts.netloc.rsplit('@', 1)[-1]}{target}"
    sent = dict(headers)
    if parts.username is not None and "Authorization" not in sent:
        sent["Authorization"] = _basic(parts.username, parts.password)
    if proxy and scheme == "http" and (proxy_user := urlsplit(proxy)).username is not None:
        sent["Proxy-Authorization"] = _basic(proxy_user.username or "", proxy_user.password)
    while (connection := POOL.take(key)) is not None:
        connection.sock.settimeout(read_timeout)
        try:
            return Response(key, connection, _exchange(connection, target, body, sent))
        except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
            connection.close()  # closed by the server as it was taken: the request never reached it
        except BaseException:
            connection.close()
            raise
    connection = _connect(scheme, host, port, proxy, connect_timeout, read_timeout)
    try:
        return Response(key, connection, _exchange(connection, target, body, sent))
    except BaseException:
        connection.close()
        raise


def _exchange(
    connection: http.client.HTTPConnection, target: str, body: bytes, headers: Mapping[str, str]
) -> http.client.HTTPResponse:
    connection.request("POST", target, body, dict(headers))
    if QUICK_ACK is not None and connection.sock is not None:  # see QUICK_ACK
        connection.sock.setsockopt(socket.IPPROTO_TCP, QUICK_ACK, 1)
    return connection.getresponse()


def _connect(
    scheme: str, host: str, port: int, proxy: str, connect_timeout: float, read_timeout: float
) -> http.client.HTTPConnection:
    """A new connection, made (TCP, the proxy's tunnel, TLS) within `connect_timeout`, reading within
    `read_timeout` after."""
    connection: http.client.HTTPConnection
    address = urlsplit(proxy) if proxy else None
    if address is not None and address.scheme not in DEFAULT_PORTS:
        raise http.client.InvalidURL(f"a proxy of a scheme the chat does not speak: {address.scheme}://")
    at = (address.hostname or "", address.port or DEFAULT_PORTS[address.scheme]) if address else (host, port)
    if scheme == "https":
        connection = http.client.HTTPSConnection(*at, timeout=connect_timeout, context=tls_context())
        if address is not None:
            tunnel = {"Proxy-Authorization": _basic(address.username, address.password)} if address.username else {}
            connection.set_tunnel(host, port, headers=tunnel)
    else:
        connection = http.client.HTTPConnection(*at, timeout=connect_timeout)
    try:
        connection.connect()
    except TimeoutError as error:
        connection.close()
        raise ConnectTimeout(f"no connection to {at[0]}:{at[1]} within {connect_timeout:g} s") from error
    except BaseException:
        connection.close()
        raise
    connection.sock.settimeout(read_timeout)
    return connection


def _basic(user: str | None, password: str | None) -> str:
    pair = f"{unquote(user or '')}:{unquote(password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def tls_context() -> ssl.SSLContext:
    """The context that verifies servers: against the bundle the environment names, else certifi's."""
    named = next((path for name in CA_BUNDLE_VARIABLES if (path := os.environ.get(name))), None)
    return _context(named or certifi.where())


@functools.lru_cache(maxsize=8)
def _context(bundle: str) -> ssl.SSLContext:
    """One context a bundle (loading one takes milliseconds): made once, shared by every connection."""
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def proxy_for(scheme: str, host: str, port: int) -> str:
    """The proxy's URL for a request to this server, as the environment says (read as requests reads it: the
    lower-case name first), or ""."""
    proxies = urllib.request.getproxies_environment()
    if _bypassed(host, port, proxies.get("no", "")):
        return ""
    proxy = proxies.get(scheme) or proxies.get("all", "")
    return proxy if not proxy or "://" in proxy else f"http://{proxy}"


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY names this host (or a domain it is in, or a network its address is in)."""
    host = host.lower().strip("[]")
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]")
        if address is not None:
            try:
                if address in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False
