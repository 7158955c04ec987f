"""A relay's public-key pin as a relay URL carries it: ``wss://host:port#pin=…`` (PROTOCOL §3.1).

Theory of operation
-------------------
A relay that terminates TLS itself usually has a self-signed certificate, so no certificate
authority vouches for it. Instead the URL that names the relay carries the SHA-256 of the
certificate's SubjectPublicKeyInfo (the DER public key, as HPKP and ``curl --pinnedpubkey``
hash it) in its fragment, as 43 characters of unpadded base64url::

    wss://relay.example.org:7400#pin=q5Y7aE1K8m2k3B0C6WZlq8N6Yh2hNfX0cT0hYh2Z4rU

The URL goes wherever a relay URL goes (invitations, hellos, circuit changes, ``circuit
add``, station configuration), so the pin travels with it and needs no new field: an
invitation's bytes keep their form. A fragment is never sent to the server (RFC 3986 §3.5),
so the URL connects unchanged. The pin pins the key, not the certificate: a relay may renew
its certificate on the same key and keep its pin.

This module is the pure grammar: split a URL into the URL to connect to and the pin, check
the pin's form, put a pin on a URL. Hashing a certificate and checking a TLS peer is the
shell's (``backchannel.tls``).
"""

from __future__ import annotations

from backchannel.errors import ProtocolError
from backchannel.proto.encoding import b64u_decode, b64u_encode

#: The fragment key that carries the pin; its value is the base64url SHA-256 of the SPKI.
PIN_KEY = "pin"
#: Bytes of a pin (SHA-256) and characters of its text (unpadded base64url).
PIN_LEN = 32
PIN_TEXT_LEN = 43


def pin_text(digest: bytes) -> str:
    """The text form of a 32-byte SHA-256 of a SubjectPublicKeyInfo."""
    if len(digest) != PIN_LEN:
        raise ValueError("a pin is a 32-byte SHA-256")
    return b64u_encode(digest)


def parse_pin(text: str, what: str = "relay URL") -> bytes:
    """The 32 bytes of a pin's text; ``ProtocolError`` naming ``what`` if it is not one."""
    if len(text) != PIN_TEXT_LEN or not text.isascii():
        raise ProtocolError(
            f"the pin of the {what} must be 43 characters of base64url (a SHA-256), not {len(text)}"
        )
    digest = b64u_decode(text, f"pin of the {what}")
    if pin_text(digest) != text:  # non-canonical (stray bits, '+' or '/') spellings are refused
        raise ProtocolError(f"the pin of the {what} is not canonical unpadded base64url")
    return digest


def split_pin(url: str, what: str = "relay URL") -> tuple[str, bytes | None]:
    """``(url to connect to, pin or None)``; a fragment other than ``pin=…`` is refused.

    A ``ws://`` URL with a pin is refused too: a pin means the station checks TLS, and plain
    WebSocket has none to check (a URL that says so is a mistake, not a request for less).
    """
    base, sep, fragment = url.partition("#")
    if not sep:
        return url, None
    key, eq, value = fragment.partition("=")
    if key != PIN_KEY or not eq:
        raise ProtocolError(f"the {what} may carry only '#pin=…' after '#', not {fragment[:20]!r}")
    if not base.startswith("wss://"):
        raise ProtocolError(f"the {what} carries a pin but is not wss:// (a pin needs TLS)")
    return base, parse_pin(value, what)


def with_pin(url: str, digest: bytes) -> str:
    """``url`` (without a fragment) naming the relay whose key hashes to ``digest``."""
    base = url.partition("#")[0]
    return f"{base}#{PIN_KEY}={pin_text(digest)}"
