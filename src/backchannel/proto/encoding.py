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
    """Decode CBOR received from elsewhere.

    Only plain data is accepted (maps, arrays, text, bytes, integers, booleans, null), in
    canonical form with no trailing bytes: semantic tags (dates, sets, MIME, ...) would hand
    a parser objects it does not expect, so any tag is refused.
    """
    try:
        value = cbor2.loads(data, tag_hook=_reject_tag, semantic_decoders={})
        _check_plain(value, what)
        canonical = cbor_encode(value)
    except ProtocolError:
        raise
    except Exception as exc:  # cbor2 raises a zoo of types on garbage
        raise ProtocolError(f"the {what} is not valid CBOR") from exc
    if canonical != data:
        raise ProtocolError(f"the {what} is not in canonical CBOR form")
    return value


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise ProtocolError("CBOR tags are not allowed")


def _check_plain(value: Any, what: str, depth: int = 0) -> None:
    if depth > 16:
        raise ProtocolError(f"the {what} is nested too deeply")
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**64) <= value < 2**64:
            raise ProtocolError(f"the {what} contains an integer beyond 64 bits")
        return
    if value is None or isinstance(value, str | bytes | bool):
        return
    if isinstance(value, list):
        for item in value:
            _check_plain(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, what, depth + 1)
            _check_plain(item, what, depth + 1)
        return
    raise ProtocolError(f"the {what} contains a {type(value).__name__}, which is not allowed")


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


def json_as_cbor(value: Any, what: str = "document") -> bytes:
    """The deterministic CBOR (RFC 8949 §4.2.1) of a JSON document, for signing it.

    A JSON document signed by this project (an export, an identity file) holds only objects,
    arrays, strings, integers, booleans and null. Each maps to one CBOR item (object → map
    with text keys, string → text string, integer → integer), and the deterministic encoding
    of the result has exactly one byte form, which any language's CBOR library reproduces;
    JSON text itself has many (spacing, escapes, number forms). A number that is not an
    integer has no single form across languages, so it is refused (``ProtocolError``).
    """
    _check_json(value, what, 0)
    return cbor_encode(value)


def _check_json(value: Any, what: str, depth: int) -> None:
    if depth > 32:
        raise ProtocolError(f"the {what} is nested too deeply")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ProtocolError(f"the {what} contains an integer beyond 64 bits")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, what, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProtocolError(f"the {what} has a key that is not text")
            _check_json(item, what, depth + 1)
        return
    raise ProtocolError(f"the {what} contains a {type(value).__name__} (only integers may be numbers)")
