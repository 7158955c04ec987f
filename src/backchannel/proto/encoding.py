"""Byte encodings shared by the whole protocol.

Structured payloads are CBOR in its canonical (deterministic) form, so that the same value
always has the same bytes: signatures and hash chains depend on that. Anything decoded from
the network goes through :func:`cbor_decode`, which turns every decoder failure into a
:class:`~backchannel.errors.ProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import cbor2

from backchannel.errors import ProtocolError


def cbor_encode(value: Any) -> bytes:
    """Canonical CBOR (RFC 8949 §4.2.1 core deterministic encoding)."""
    return cbor2.dumps(value, canonical=True)


def cbor_decode(data: bytes, what: str = "payload") -> Any:
    """Decode CBOR received from elsewhere; reject trailing bytes and tags."""
    try:
        value = cbor2.loads(data, tag_hook=_reject_tag)
    except ProtocolError:
        raise
    except Exception as exc:  # cbor2 raises a zoo of types on garbage
        raise ProtocolError(f"the {what} is not valid CBOR") from exc
    if cbor_encode(value) != data:
        raise ProtocolError(f"the {what} is not in canonical CBOR form")
    return value


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise ProtocolError("CBOR tags are not allowed")


def cbor_map(data: bytes, what: str = "payload") -> dict[str, Any]:
    """Decode a CBOR map with text keys, or raise ``ProtocolError``."""
    value = cbor_decode(data, what)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ProtocolError(f"the {what} is not a map")
    return value


def field(obj: dict[str, Any], key: str, kind: type, what: str = "payload") -> Any:
    """Fetch a typed field from a decoded map; a missing or mistyped field is a ProtocolError."""
    if key not in obj:
        raise ProtocolError(f"the {what} lacks the field {key!r}")
    value = obj[key]
    if kind is int and isinstance(value, bool):
        raise ProtocolError(f"the field {key!r} of the {what} has the wrong type")
    if not isinstance(value, kind):
        raise ProtocolError(f"the field {key!r} of the {what} has the wrong type")
    return value


def fixed_bytes(obj: dict[str, Any], key: str, size: int, what: str = "payload") -> bytes:
    value: bytes = field(obj, key, bytes, what)
    if len(value) != size:
        raise ProtocolError(f"the field {key!r} of the {what} must be {size} bytes")
    return value


def b64u_encode(data: bytes) -> str:
    """URL-safe base64 without padding: fits in a line of text, a file name or a QR code."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str, what: str = "text") -> bytes:
    try:
        clean = "".join(text.split())
        return base64.urlsafe_b64decode(clean + "=" * (-len(clean) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"the {what} is not valid base64url") from exc
