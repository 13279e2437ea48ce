"""TLS to Redis: a redis-server serving TLS only (``--port 0 --tls-port``) with
certificates this test makes (a CA, the server's for 127.0.0.1, a client's), and the
services' client (``make_redis`` with ``rediss://`` and ``C8_REDIS_TLS_*``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis.exceptions import ConnectionError as RedisConnectionError

from context8.redis_server import free_port
from shared.errors import ConfigError
from shared.redis_client import auth_and_tls, make_redis
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    ip: str | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = issuer or (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def make_pki(folder: Path) -> Pki:
    """A CA and two certificates it signed: the server's (127.0.0.1) and a client's."""
    pem = serialization.Encoding.PEM
    ca_key = _write_key(folder / "ca.key")
    ca = _cert("context8 test CA", ca_key, None, ca=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    for role, ip in (("server", "127.0.0.1"), ("client", None)):
        key = _write_key(folder / f"{role}.key")
        cert = _cert(f"context8 {role}", key, (ca.subject, ca_key), ip=ip)
        (folder / f"{role}.pem").write_bytes(cert.public_bytes(pem))
    return Pki(
        folder / "ca.pem",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Pki]]:
    folder = tmp_path_factory.mktemp("tls")
    pki = make_pki(folder)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
         "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "yes",
         "--save", "", "--dir", str(folder), "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not _answers(port, pki):
            assert proc.poll() is None, (folder / "redis.log").read_text()
            assert time.monotonic() < deadline, "TLS redis-server not answering"
            time.sleep(0.05)
        yield port, pki
    finally:
        proc.terminate()
        proc.wait(5)


def _settings(port: int, **tls: Path) -> ServiceSettings:
    return ServiceSettings(
        redis_url=f"rediss://127.0.0.1:{port}/0",
        redis_connect_timeout_s=2,
        redis_retries=0,
        **{f"redis_tls_{k}_file": v for k, v in tls.items()},  # type: ignore[arg-type]
    )


def _answers(port: int, pki: Pki) -> bool:
    async def ping() -> bool:
        client = make_redis(_settings(port, ca=pki.ca, cert=pki.client_cert, key=pki.client_key))
        try:
            return bool(await client.ping())
        except (RedisConnectionError, OSError):
            return False
        finally:
            await client.aclose()

    return asyncio.run(ping())


async def test_a_service_client_talks_tls(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    client = make_redis(_settings(port, ca=pki.ca, cert=pki.client_cert, key=pki.client_key))
    try:
        await client.set("c8:tls:probe", "ok")
        assert await client.get("c8:tls:probe") == b"ok"
    finally:
        await client.aclose()


async def test_a_client_without_the_ca_is_refused(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    # System trust only: the server's certificate is not trusted.
    client = make_redis(_settings(port, cert=pki.client_cert, key=pki.client_key))
    try:
        with pytest.raises(RedisConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await client.ping()
    finally:
        await client.aclose()


async def test_a_client_without_a_certificate_is_refused(tls_server: tuple[int, Pki]) -> None:
    port, pki = tls_server
    client = make_redis(_settings(port, ca=pki.ca))  # the server asks for a client cert
    try:
        with pytest.raises((RedisConnectionError, OSError)):
            await client.ping()
    finally:
        await client.aclose()


def test_plain_redis_does_not_speak_to_the_tls_port(tls_server: tuple[int, Pki]) -> None:
    port, _ = tls_server

    async def plain() -> None:
        client = make_redis(
            ServiceSettings(redis_url=f"redis://127.0.0.1:{port}/0", redis_retries=0)
        )
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises((RedisConnectionError, OSError)):
        asyncio.run(plain())


def test_tls_and_credential_settings_are_checked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with pytest.raises(ConfigError, match="not rediss"):
        auth_and_tls(ServiceSettings(redis_url="redis://h:1/0", redis_tls_ca_file=ca))
    cluster = auth_and_tls(
        ServiceSettings(redis_url="rediss+cluster://h:1,h:2", redis_tls_ca_file=ca)
    )
    assert cluster == {"ssl_ca_certs": str(ca)}
    tls_cluster = make_redis(
        ServiceSettings(redis_url="rediss+cluster://127.0.0.1:1", redis_tls_ca_file=ca)
    )
    assert tls_cluster.connection_kwargs["ssl_ca_certs"] == str(ca)  # type: ignore[union-attr]
    assert auth_and_tls(ServiceSettings()) == {}  # the default: nothing added
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    opts = auth_and_tls(ServiceSettings(redis_username="mcp", redis_password_file=secret))
    assert opts == {"username": "mcp", "password": "s3cret"}
    with pytest.raises(ConfigError, match="both"):
        auth_and_tls(ServiceSettings(redis_url="redis://u:p@h:1/0", redis_username="mcp"))
    with pytest.raises(ConfigError, match="unreadable"):
        auth_and_tls(ServiceSettings(redis_password_file=tmp_path / "missing"))
