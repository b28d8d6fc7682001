"""Clear errors, never a traceback, for every way a Scope URL can be wrong.

The far ends are real servers on loopback: a closed port, an HTML web server, a JSON server that is not
Scope, and a TLS server with a self-signed certificate.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from metadj_bridge.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    ConfigError,
    ScopeBadAnswerError,
    ScopeConnectionError,
    ScopeNotFoundError,
    ScopeNotScopeError,
    ScopeTLSError,
)
from metadj_bridge.scope.api import ScopeClient, normalise_url, redact_url
from tests.helpers import free_port


async def _serve(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    return runner, port


@pytest.fixture
async def html_server() -> AsyncIterator[str]:
    """A web server that is not Scope: HTML everywhere, like a router page or another app."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html><body>My Router</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner, port = await _serve(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def json_server() -> AsyncIterator[str]:
    """An API server that is not Scope: /health answers JSON without Scope's fields; nothing else exists."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/health", health)
    runner, port = await _serve(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _self_signed(tmp: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[int]:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "server_start_time": 1.0, "version": "0.2.4"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner, port = await _serve(app, _self_signed(tmp_path))
    yield port
    await runner.cleanup()


async def test_server_down_says_connection_refused() -> None:
    async with ScopeClient(f"http://127.0.0.1:{free_port()}") as scope:
        with pytest.raises(ScopeConnectionError, match="connection refused; Scope is not running"):
            await scope.health()


async def test_unknown_host_says_it_does_not_resolve() -> None:
    import socket

    try:  # the machine's own resolver must answer "no such name" in time, or there is nothing to test here
        await asyncio.wait_for(asyncio.to_thread(socket.getaddrinfo, "no-such-scope-host.invalid", 8000), 5)
    except TimeoutError:
        pytest.skip("this machine's DNS resolver gives no answer for a .invalid name within 5 s")
    except OSError:
        pass
    async with ScopeClient("http://no-such-scope-host.invalid:8000") as scope:
        with pytest.raises(ScopeConnectionError, match="does not resolve"):
            await scope.health()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:8000", "no scheme; did you mean http://127.0.0.1:8000"),
        ("ftp://127.0.0.1:8000", "not http or https"),
        ("http://127.0.0.1:8000/api/v1/health", "give the server's root instead: http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/health", "give the server's root instead"),
        ("https://pod-8000.proxy.runpod.net/api/v1/", "https://pod-8000.proxy.runpod.net"),
        ("http://:8000", "no host name"),
        ("", "empty"),
    ],
)
def test_bad_urls_are_refused_with_the_fix(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("?", r"\?")):
        normalise_url(url)


def test_credentials_are_redacted() -> None:
    assert redact_url("https://user:secret@pod.example:8000") == "https://***@pod.example:8000"
    assert redact_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert redact_url("https://pod.example/?token=abc&x=1") == "https://pod.example/?token=***&x=1"


def test_a_run_with_credentials_in_the_url_never_prints_them() -> None:
    # A server that refuses the credentials' host (nothing listens): the error line and the log both name the URL.
    proc = subprocess.run(
        [sys.executable, "-m", "metadj_bridge", "run", "--scope", "http://dj:hunter2@127.0.0.1:9/api/v1/health?token=s3cret",
         "--output", "none", "--no-audio"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == EXIT_CONFIG  # a URL with a path is the performer's to fix: a restart cannot help
    assert "***@127.0.0.1:9" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout and "s3cret" not in proc.stderr + proc.stdout


async def test_wrong_path_prefix_is_a_404_with_advice(html_server: str, json_server: str) -> None:
    async with ScopeClient(json_server + "/scope") as scope:
        with pytest.raises(ScopeNotFoundError, match="404.*server's root"):
            await scope.health()


async def test_html_server_is_not_scope(html_server: str) -> None:
    async with ScopeClient(html_server) as scope:
        with pytest.raises(ScopeNotScopeError, match="expected JSON, got text/html.*is not a Scope server"):
            await scope.health()


async def test_json_server_without_scope_fields_is_not_scope(json_server: str) -> None:
    async with ScopeClient(json_server) as scope:
        with pytest.raises(ScopeNotScopeError, match="not Scope's health report"):
            await scope.health()
        with pytest.raises(ScopeNotFoundError):
            await scope.pipeline_status()


async def test_self_signed_certificate_is_a_tls_error(tls_server: int) -> None:
    async with ScopeClient(f"https://127.0.0.1:{tls_server}") as scope:
        with pytest.raises(ScopeTLSError, match="certificate is not trusted"):
            await scope.health()


async def test_https_to_a_plain_http_port_suggests_http(json_server: str) -> None:
    async with ScopeClient(json_server.replace("http://", "https://")) as scope:
        with pytest.raises(ScopeTLSError, match="use http:// instead of https://"):
            await scope.health()


async def test_http_to_a_tls_port_suggests_https(tls_server: int) -> None:
    async with ScopeClient(f"http://127.0.0.1:{tls_server}") as scope:
        with pytest.raises((ScopeNotScopeError, ScopeConnectionError, ScopeBadAnswerError), match="https"):
            await scope.health()


@pytest.mark.parametrize("case", ["not-scope", "wrong-path", "no-scheme"])
async def test_cli_prints_error_line_and_exits_with_its_code(case: str, html_server: str) -> None:
    url = {
        "not-scope": html_server,
        "wrong-path": html_server + "/api/v1/health",
        "no-scheme": "localhost:8000",
    }[case]
    # In a thread: the server under test runs on this test's event loop.
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "metadj_bridge", "run", "--scope", url, "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Something that is not Scope may become Scope (a restart helps); a malformed URL never does.
    assert proc.returncode == (EXIT_FAILURE if case == "not-scope" else EXIT_CONFIG), proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
