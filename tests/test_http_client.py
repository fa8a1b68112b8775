"""The client that asks model servers for answers (chatbot/services/http_client.py): connections kept alive and
used again only when clean, proxies, TLS, timeouts; against real servers on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatbot.services import http_client
from chatbot.services.errors import InferenceError
from chatbot.services.inference import Parameters, build_request, stream_chunks, stream_reply
from chatbot.services.protocols import Text
from tests.fakes.hf_server import TOKEN, FakeHuggingFace
from tests.test_inference import HELLO, answer, task_backend

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


@pytest.fixture(autouse=True)
def no_proxy_no_bundle_no_kept_connections(monkeypatch):
    for name in PROXY_VARIABLES + CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    http_client.POOL.clear()
    yield
    http_client.POOL.clear()


def test_an_answer_read_to_its_end_leaves_its_connection_to_the_next_answer(fake):
    backend = task_backend(fake)
    assert answer(backend) == "Hello there!"
    assert answer(backend) == "Hello there!"
    first, second = fake.requests[-2:]
    assert first.peer == second.peer  # one connection, kept alive


def test_on_a_kept_connection_the_first_token_is_not_held_by_a_server_that_writes_small_pieces(fake):
    """The fake writes its headers and each event apart, without TCP_NODELAY, as many servers do: on a connection
    used again, the first event waited 40 ms for the headers' delayed acknowledgement."""
    backend = task_backend(fake)
    answer(backend)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        chunks = stream_chunks(build_request(backend, Parameters(), HELLO), backend)
        next(chunk for chunk in chunks if isinstance(chunk, Text))
        times.append(time.perf_counter() - started)
        list(chunks)
    assert len({received.peer for received in fake.requests[-6:]}) == 1
    assert min(times) < 0.02  # the stall was there every time; a loaded machine may delay one or two


def test_an_answer_stopped_under_a_stalled_server_is_not_read_again_on_its_connection(fake):
    fake.reply(tokens=["First", " never"], delay=30)
    backend = task_backend(fake)
    cancel = threading.Event()
    chunks = stream_chunks(build_request(backend, Parameters(), HELLO), backend, cancel)
    assert next(chunk for chunk in chunks if isinstance(chunk, Text)) == Text("First")
    cancel.set()
    list(chunks)
    assert answer(backend) == "Hello there!"  # whole: nothing of the stopped answer's stream mixed in
    assert fake.requests[-1].peer != fake.requests[-2].peer


def test_an_answer_not_read_to_its_end_does_not_leave_its_connection_to_the_next(fake):
    fake.reply(tokens=["One", " two", " three"], delay=0.2)
    backend = task_backend(fake)
    tokens = stream_reply(build_request(backend, Parameters(), HELLO), backend)
    assert next(tokens) == "One"
    tokens.close()  # its reader went away (a tab closed, a failure above)
    assert answer(backend) == "Hello there!"
    assert fake.requests[-1].peer != fake.requests[-2].peer


def test_an_error_answer_read_whole_leaves_its_connection_to_the_next(fake):
    fake.reply(status=500, body={"error": "unknown error"})
    backend = task_backend(fake)
    with pytest.raises(InferenceError) as error:
        answer(backend)
    assert error.value.kind == "server"
    assert answer(backend) == "Hello there!"
    assert fake.requests[-1].peer == fake.requests[-2].peer


class OneAnswerAConnection(socketserver.ThreadingTCPServer):
    """A server that says it keeps connections alive, then drops each one after its first answer, as a server
    whose idle timeout has passed does."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, close_at_once: bool) -> None:
        self.requests = 0
        self.close_at_once = close_at_once  # True: closed as soon as answered; False: when the next request comes
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/generate"

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            server = self.server
            assert isinstance(server, OneAnswerAConnection)
            self._read_request()
            server.requests += 1
            body = b'{"generated_text": "Hello"}'
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            if not server.close_at_once and self._read_request():
                server.requests += 1  # read, and dropped without an answer

        def _read_request(self) -> bool:
            length = 0
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            return bool(self.rfile.read(length))


@pytest.mark.parametrize("close_at_once", [True, False])
def test_a_kept_connection_the_server_dropped_is_replaced_by_a_new_one(close_at_once):
    with OneAnswerAConnection(close_at_once) as server:
        for _ in range(3):
            with http_client.post(server.url, b"{}", {"Content-Type": "application/json"}, 5, 5) as response:
                assert response.status == 200 and response.text() == '{"generated_text": "Hello"}'
            time.sleep(0.1)  # the server has dropped it meanwhile
        assert server.requests == (3 if close_at_once else 5)  # dropped as it came: sent again once


def test_answers_at_once_in_threads_each_get_their_own_and_keep_at_most_the_idle_bound(fake, monkeypatch):
    monkeypatch.setattr(http_client, "IDLE_PER_SERVER", 2)
    for _ in range(24):
        fake.reply(tokens=["Hello", " there", "!"], delay=0.01)
    backend = task_backend(fake)
    texts: list[str] = []

    def ask() -> None:
        for _ in range(4):
            texts.append(answer(backend))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert texts == ["Hello there!"] * 24
    assert sum(len(idle) for idle in http_client.POOL._idle.values()) <= 2
    assert len({received.peer for received in fake.requests}) < 24  # connections used again


GREENLETS = """
from gevent import monkey; monkey.patch_all()
import sys
import gevent
from chatbot.services import http_client
from chatbot.services.inference import Backend, Parameters, build_request, stream_reply
backend = Backend(api="chat", url=sys.argv[1] + "/v1", model_id="m", token=sys.argv[2])
def ask():
    return ["".join(stream_reply(build_request(backend, Parameters(), [{"role": "user", "content": "Hi"}]), backend))
            for _ in range(4)]
jobs = [gevent.spawn(ask) for _ in range(5)]
gevent.joinall(jobs, raise_error=True)
print(sorted({text for job in jobs for text in job.value}), sum(map(len, http_client.POOL._idle.values())))
"""


def test_answers_at_once_in_greenlets_each_get_their_own_on_shared_connections(fake):
    for _ in range(20):
        fake.reply(tokens=["Hello", " there", "!"], delay=0.01)
    done = subprocess.run(
        [sys.executable, "-c", GREENLETS, fake.url, TOKEN], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    texts, idle = done.stdout.rsplit(" ", 1)
    assert texts == "['Hello there!']" and int(idle) <= http_client.IDLE_PER_SERVER
    assert len({received.peer for received in fake.requests}) < 20  # connections used again


class Proxy(socketserver.ThreadingTCPServer):
    """A forward proxy: a request for a full http URL is passed on, CONNECT opens a tunnel; each request line is
    kept in `seen`, with the Proxy-Authorization it came with."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline().decode()
            head = []
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                head.append(header)
            authorization = next(
                (h.split(b":", 1)[1].strip().decode() for h in head if h.lower().startswith(b"proxy-authorization")),
                None,
            )
            assert isinstance(self.server, Proxy)
            self.server.seen.append((line.strip(), authorization))
            method, target, version = line.split()
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                address = target.split("/", 3)
                host, port = address[2].rsplit(":", 1)
                upstream = socket.create_connection((host, int(port)))
                kept = [h for h in head if not h.lower().startswith(b"proxy-")]
                upstream.sendall(f"{method} /{address[3]} {version}\r\n".encode() + b"".join(kept) + b"\r\n")
            threading.Thread(target=self._pass, args=(self.rfile, upstream.sendall), daemon=True).start()
            self._pass(upstream.makefile("rb"), self.wfile.write)

        @staticmethod
        def _pass(source, write) -> None:  # type: ignore[no-untyped-def]
            try:
                while data := source.read1(65536):
                    write(data)
            except OSError:
                pass


def test_an_http_server_is_asked_through_the_proxy_the_environment_names_unless_no_proxy_names_it(fake, monkeypatch):
    with Proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("://", "://ada:s%40cret@"))
        assert answer(task_backend(fake)) == "Hello there!"
        assert proxy.seen == [(f"POST {fake.task_url()} HTTP/1.1", "Basic YWRhOnNAY3JldA==")]  # ada:s@cret
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
        assert answer(task_backend(fake)) == "Hello there!"
        assert len(proxy.seen) == 1


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypassed"),
    [
        ("api.example.org", 443, "example.org", True),
        ("api.example.org", 443, ".example.org", True),
        ("badexample.org", 443, "example.org", False),
        ("example.org", 8080, "example.org:8080", True),
        ("example.org", 443, "example.org:8080", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.4", False),
        ("anything", 80, "*", True),
        ("::1", 80, "::1", True),
    ],
)
def test_no_proxy_names_hosts_domains_ports_and_networks(monkeypatch, host, port, no_proxy, bypassed):
    monkeypatch.setenv("HTTPS_PROXY", "proxy.internal:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert (http_client.proxy_for("https", host, port) == "") is bypassed
    if no_proxy != "*":
        assert http_client.proxy_for("https", "elsewhere.net", 443) == "http://proxy.internal:3128"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(a CA's certificate, a certificate for 127.0.0.1 that it signed, that certificate's key)."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Chat test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_fake(certificates):
    """The fake HF API over TLS, with a certificate the CA of `certificates` signed."""
    ca, certificate, key = certificates
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    fake = FakeHuggingFace()
    fake._server.socket = context.wrap_socket(fake._server.socket, server_side=True)
    fake.url = fake.url.replace("http://", "https://")
    with fake:
        yield fake


def test_a_tls_server_is_trusted_through_the_ca_bundle_the_environment_names_and_not_without(
    tls_fake, certificates, monkeypatch
):
    with pytest.raises(InferenceError) as error:
        answer(task_backend(tls_fake))
    assert error.value.kind == "unreachable" and "its TLS certificate is not trusted" in error.value.message
    for variable in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        with monkeypatch.context() as environment:
            environment.setenv(variable, str(certificates[0]))
            assert answer(task_backend(tls_fake)) == "Hello there!"


def test_a_tls_server_behind_a_proxy_is_reached_through_a_tunnel(tls_fake, certificates, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates[0]))
    with Proxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        assert answer(task_backend(tls_fake)) == "Hello there!"
        assert answer(task_backend(tls_fake)) == "Hello there!"
        host = tls_fake.url.removeprefix("https://")
        assert proxy.seen == [(f"CONNECT {host} HTTP/1.0", None)]  # one tunnel, kept alive for the second
        assert tls_fake.requests[-1].headers["Authorization"].startswith("Bearer ")


def test_a_server_that_takes_no_connection_times_out_on_the_connect_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    waiting = []
    try:
        for _ in range(8):  # fill its queue: later connections wait for an accept that never comes
            stream = socket.socket()
            stream.setblocking(False)
            stream.connect_ex(listener.getsockname())
            waiting.append(stream)
        time.sleep(0.1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/generate"
        started = time.monotonic()
        with pytest.raises(http_client.ConnectTimeout):
            http_client.post(url, b"{}", {}, 0.5, 30)
        assert time.monotonic() - started < 3
    finally:
        for stream in waiting:
            stream.close()
        listener.close()
