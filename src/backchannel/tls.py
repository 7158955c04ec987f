"""TLS for relay connections: the relay's certificate, its pin, and the station's pinned check.

Theory of operation
-------------------
A relay terminates TLS itself (``relay serve``): with the certificate and key its operator
gives, or else with a self-signed certificate it makes at first start beside its database
(:func:`ensure_certificate`, ``cryptography``'s X.509 builder, an ECDSA P-256 key). Nobody
needs a certificate authority, because the station does not ask one: the relay's URL carries
the SHA-256 of the certificate's SubjectPublicKeyInfo (``wss://host:port#pin=…``,
``proto.relay_pin``), and :func:`client_context` makes an SSL context that verifies no chain
and no host name but compares the peer's key with that pin *during the TLS handshake*. A
mismatch fails the handshake with :class:`PinRefused` (expected and presented pin), so not
one byte of WebSocket (not the upgrade request, which may carry the relay's access token)
reaches an impostor.

The check hooks the one place asyncio's TLS runs the handshake: the context's
``sslobject_class`` (a documented extension point of :class:`ssl.SSLContext`) is a subclass
of :class:`ssl.SSLObject` whose ``do_handshake`` checks the pin once OpenSSL has finished.
Raising an :class:`ssl.SSLCertVerificationError` there is what asyncio expects of a failed
certificate check: the connection closes and the connect call raises it.

A ``wss://`` URL without a pin is checked the ordinary way (system CAs and the host name),
for a relay behind a proxy with a public certificate. Plain ``ws://`` carries frames and the
access token in clear, so it is refused unless the address is loopback (the tests, a proxy
on the same machine) or the operator allowed it (:func:`check_plain`).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backchannel.errors import ConfigError, InsecureRelayURL, InvalidArgument, ProtocolError
from backchannel.proto.relay_pin import pin_text, split_pin

#: File names of the self-signed certificate and its key, in the relay's directory.
CERT_FILE = "relay-tls.crt"
KEY_FILE = "relay-tls.key"
#: A self-signed certificate's validity. The station checks the key, never the dates, so a
#: long life only spares the operator a renewal that would change nothing.
SELF_SIGNED_DAYS = 20 * 365


# ---- the pin of a certificate ------------------------------------------------------------


def spki_pin(cert_der: bytes) -> bytes:
    """SHA-256 of the certificate's SubjectPublicKeyInfo (DER): the relay's pin."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise ProtocolError(f"the relay's TLS certificate cannot be read: {exc}") from None
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def certificate_pin(cert_path: str | Path) -> bytes:
    """The pin of the first certificate of a PEM file (a relay's, or a proxy's)."""
    try:
        pem = Path(cert_path).read_bytes()
        cert = x509.load_pem_x509_certificate(pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the TLS certificate {str(cert_path)!r}: {exc}") from None
    return spki_pin(cert.public_bytes(serialization.Encoding.DER))


# ---- the relay's side --------------------------------------------------------------------


def ensure_certificate(directory: str | Path, hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The self-signed certificate and key in ``directory``, made now if absent.

    Made once and kept: the pin in every invitation that names this relay is the hash of
    this key, so a relay that made a new one at each start would refuse its own lines.
    """
    folder = Path(directory)
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    if cert_path.exists() or key_path.exists():
        raise ConfigError(
            f"{folder} holds only one of {CERT_FILE} and {KEY_FILE}; restore the other, or remove "
            "both to make a new certificate (its pin changes: every line needs the new URL)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backchannel relay")])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if host:
                names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_new(key_path, key_pem, 0o600)
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot write the relay's TLS certificate in {folder}: {exc}") from None
    return cert_path, key_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` durably (a key lost is a pin lost), with ``mode`` from the start (the key
    is never readable by others, not even for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_context(cert_path: str | Path, key_path: str | Path) -> ssl.SSLContext:
    """The relay's TLS context: TLS 1.2 or newer, the given certificate chain and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS certificate {str(cert_path)!r} with its key {str(key_path)!r}: {exc}"
        ) from None
    return context


# ---- the station's side ------------------------------------------------------------------


class PinRefused(ssl.SSLCertVerificationError):
    """The relay's key is not the pinned one (raised inside the TLS handshake)."""

    def __init__(self, expected: bytes, got: bytes) -> None:
        self.expected = pin_text(expected)
        self.got = pin_text(got)
        super().__init__(f"the relay's certificate key has pin {self.got}, not the pinned {self.expected}")


class _PinnedContext(ssl.SSLContext):
    """A client context that knows the pin its handshakes must meet."""

    expected_pin: bytes = b""


class _PinCheckingObject(ssl.SSLObject):
    def do_handshake(self) -> None:
        super().do_handshake()  # (raises SSLWantReadError until OpenSSL is done)
        context = self.context
        if isinstance(context, _PinnedContext):
            der = self.getpeercert(binary_form=True)
            got = spki_pin(der) if der else b"\x00" * 32
            if got != context.expected_pin:
                raise PinRefused(context.expected_pin, got)


@dataclass(frozen=True)
class RelayTarget:
    """Where a relay URL connects, and how: the URL without its pin, and its TLS context."""

    url: str
    ssl: ssl.SSLContext | None
    pin: bytes | None


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1: an address no network between could read."""
    name = host.lower().rstrip(".").strip("[]")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_plain(url: str, allow_plain: bool) -> None:
    """Refuse a plain ``ws://`` URL to an address other than loopback unless allowed."""
    if not url.startswith("ws://") or allow_plain:
        return
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    if not is_loopback(host):
        shown = url.partition("#")[0].rpartition("@")[2]
        raise InsecureRelayURL(
            f"refusing plain ws://{shown}: it is not a loopback address, so frames and the relay's "
            "access token would cross the network in clear; use wss://…#pin=… (the relay prints "
            "its pin), or set allow_plain = true (station run --insecure-plain)"
        )


def relay_target(url: str, allow_plain: bool = False) -> RelayTarget:
    """How to connect to ``url``: ``InsecureRelayURL`` or ``InvalidArgument`` if it must not be."""
    try:
        base, pin = split_pin(url)
    except ProtocolError as exc:
        raise InvalidArgument(str(exc)) from None
    if not base.startswith(("ws://", "wss://")):
        raise InvalidArgument("a relay URL starts with ws:// or wss://")
    check_plain(base, allow_plain)
    if not base.startswith("wss://"):
        return RelayTarget(base, None, None)
    if pin is None:
        return RelayTarget(base, ssl.create_default_context(), None)
    context = _PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # (the pin names the relay; its host name may be anything)
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslobject_class = _PinCheckingObject
    context.expected_pin = pin
    return RelayTarget(base, context, pin)
