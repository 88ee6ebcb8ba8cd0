"""A private certificate authority and a server certificate for Mosquitto's TLS listener.

``smokehouse tls init --out DIR --host mqtt.example.lan --host 192.168.1.10`` writes:

* ``ca.key`` (``0600``) and ``ca.crt`` (``0644``): the CA. Devices trust ``ca.crt`` (the Pi's
  ``[mqtt] ca_file``); the key never leaves this directory.
* ``server.key`` (``0600``) and ``server.crt`` (``0644``): Mosquitto's ``keyfile`` and
  ``certfile``, signed by the CA, one subject alternative name per ``--host`` (a DNS name, or an
  IP address — a client checks the name it dialled against these).

Idempotent: an existing CA is kept (every device already trusts it) unless ``force``; the server
certificate is kept while it is signed by that CA, names exactly the requested hosts and has
more than :data:`RENEW_BEFORE` left, otherwise it is issued again under the same CA (add a host
and rerun; restart Mosquitto to load it). Keys are ECDSA P-256; files are written to a temp file
and renamed over, so a reader never sees half a key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY, CA_CERT, SERVER_KEY, SERVER_CERT = "ca.key", "ca.crt", "server.key", "server.crt"
KEY_MODE, CERT_MODE = 0o600, 0o644
CA_DAYS = 3650
#: Apple's and the CA/Browser Forum's cap for a server certificate; fine for a LAN broker.
SERVER_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
_DNS_RE = re.compile(
    r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$"
)


class TlsError(ValueError):
    """A host name we can't put in a certificate, or files we can't use."""


@dataclass(slots=True)
class TlsResult:
    directory: Path
    hosts: list[str]
    ca_created: bool = False
    server_issued: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ca_cert(self) -> Path:
        return self.directory / CA_CERT

    @property
    def server_cert(self) -> Path:
        return self.directory / SERVER_CERT

    @property
    def server_key(self) -> Path:
        return self.directory / SERVER_KEY


def subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """``--host`` values → SANs: an IP address as such, anything else must be a DNS name."""
    if not hosts:
        raise TlsError("give at least one --host: the name or address clients connect to")
    names: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip()
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not _DNS_RE.match(host):
            raise TlsError(f"{host!r} is neither an IP address nor a DNS name")
        names.append(x509.DNSName(host.rstrip(".").lower()))
    return list(dict.fromkeys(names))


def init(
    directory: Path,
    hosts: Sequence[str],
    *,
    force: bool = False,
    days: int = SERVER_DAYS,
    now: dt.datetime | None = None,
) -> TlsResult:
    """Create (or keep) the CA and (re)issue the server certificate in ``directory``."""
    names = subject_names(hosts)
    now = now or dt.datetime.now(dt.UTC)
    if not directory.exists():
        directory.mkdir(parents=True)
        directory.chmod(0o755)  # Mosquitto may read the certificates as another user; keys are 0600
    result = TlsResult(directory, [_text(n) for n in names])
    ca_key_path, ca_cert_path = directory / CA_KEY, directory / CA_CERT
    if force or not (ca_key_path.exists() and ca_cert_path.exists()):
        if not force and (ca_key_path.exists() or ca_cert_path.exists()):
            raise TlsError(
                f"{directory} holds only half a CA ({CA_KEY} or {CA_CERT} is missing): "
                "restore it, or --force a new CA (devices must then get the new ca.crt)"
            )
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write(ca_key_path, _key_pem(ca_key), KEY_MODE)
        _write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), CERT_MODE)
        result.ca_created = True
    else:
        ca_key, ca_cert = _load_ca(ca_key_path, ca_cert_path)
    if result.ca_created or not _server_still_good(directory, ca_cert, names, now):
        server_key = ec.generate_private_key(ec.SECP256R1())
        server_cert = _server_certificate(server_key, ca_key, ca_cert, names, now, days)
        _write(directory / SERVER_KEY, _key_pem(server_key), KEY_MODE)
        _write(
            directory / SERVER_CERT, server_cert.public_bytes(serialization.Encoding.PEM), CERT_MODE
        )
        result.server_issued = True
    return result


def _text(name: x509.GeneralName) -> str:
    return str(name.value)


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smokehouse"),
            x509.NameAttribute(NameOID.COMMON_NAME, "smokehouse MQTT CA"),
        ]
    )
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: list[x509.GeneralName],
    now: dt.datetime,
    days: int,
) -> x509.Certificate:
    public = key.public_key()
    common_name = _text(names[0])[:64]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _load_ca(
    key_path: Path, cert_path: Path
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"can't read the CA in {key_path.parent}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{key_path} is not an EC key (made by another tool? --force a new CA)")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise TlsError(f"{key_path} and {cert_path} don't belong together")
    return key, cert


def _server_still_good(
    directory: Path, ca_cert: x509.Certificate, names: list[x509.GeneralName], now: dt.datetime
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate((directory / SERVER_CERT).read_bytes())
        key = serialization.load_pem_private_key(
            (directory / SERVER_KEY).read_bytes(), password=None
        )
        cert.verify_directly_issued_by(ca_cert)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if _spki(key.public_key()) != _spki(cert.public_key()):
        return False
    return set(sans) == set(names) and cert.not_valid_after_utc - now > RENEW_BEFORE


def _spki(public: object) -> bytes:
    return public.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with ``mode`` (never wider for a moment), fsynced, renamed over ``path``."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
