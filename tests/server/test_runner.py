"""Binding rules and the in-loop server."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

import anyio
import httpx
import pytest

from localinfer.errors import ConfigurationError
from localinfer.server.app import create_app
from localinfer.server.runner import (
    check_bind_is_safe,
    is_loopback,
    serving,
    warn_if_clear_text,
)
from tests import models
from tests.support import define, settings


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
    assert not any(is_loopback(h) for h in ["0.0.0.0", "::", "192.168.1.10", "example.com"])


def test_non_loopback_bind_needs_an_api_key() -> None:
    check_bind_is_safe(settings(host="127.0.0.1"))
    with pytest.raises(ConfigurationError, match="no API key is set"):
        check_bind_is_safe(settings(host="0.0.0.0"))
    check_bind_is_safe(settings(host="0.0.0.0", api_key="k"))


# -- TLS ---------------------------------------------------------------------------------


def _self_signed(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localinfer test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = directory / f"{name}.pem", directory / f"{name}.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


@pytest.mark.anyio
async def test_tls_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    app = create_app([define(models.Echo)], settings(certfile=certfile, keyfile=keyfile))
    trusted = ssl.create_default_context(cafile=str(certfile))
    async with serving(app, app.state.settings) as address:
        assert address.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(base_url=address.url, verify=trusted, timeout=10) as client:
            with anyio.fail_after(30):
                while (await client.get("/ready")).status_code != 200:
                    await anyio.sleep(0.02)
            r = await client.post("/v1/infer/echo", json={"args": ["over tls"]})
            assert r.status_code == 200 and r.json()["text"] == "over tls"
        # a client that does not trust the certificate is refused by the handshake
        async with httpx.AsyncClient(base_url=address.url, timeout=10) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/health")
        # plain HTTP to the TLS port gets no answer from the app
        plain = address.url.replace("https://", "http://")
        async with httpx.AsyncClient(base_url=plain, timeout=10) as cleartext:
            with pytest.raises(httpx.HTTPError):
                await cleartext.get("/health")


def test_tls_files_are_checked_before_serving(tmp_path: Path) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    _, other_key = _self_signed(tmp_path, "other")
    with pytest.raises(ConfigurationError, match="both --certfile and --keyfile"):
        check_bind_is_safe(settings(certfile=certfile))
    with pytest.raises(ConfigurationError, match="does not exist"):
        check_bind_is_safe(settings(certfile=certfile, keyfile=tmp_path / "missing.key"))
    with pytest.raises(ConfigurationError, match="cannot use the TLS certificate"):
        check_bind_is_safe(settings(certfile=certfile, keyfile=other_key))
    check_bind_is_safe(settings(host="0.0.0.0", api_key="k", certfile=certfile, keyfile=keyfile))


def test_a_lan_bind_without_tls_warns_that_the_key_travels_in_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certfile, keyfile = _self_signed(tmp_path)
    with caplog.at_level(logging.WARNING, logger="localinfer.server.runner"):
        warn_if_clear_text(settings(host="127.0.0.1"))
        warn_if_clear_text(
            settings(host="0.0.0.0", api_key="k", certfile=certfile, keyfile=keyfile)
        )
        assert not caplog.records
        warn_if_clear_text(settings(host="0.0.0.0", api_key="k"))
    assert "without TLS" in caplog.text and "in clear" in caplog.text
