"""Which relays the peer may make this station connect to.

A ``circuits`` change (PROTOCOL §9.2) names a relay URL chosen by the other station. Left
unchecked, the peer could make this station connect anywhere: to a relay that floods it, to
internal services on its network, again and again. So a relay proposed by the peer is judged:

- **trusted** relays are accepted at once: those in the station's own ``relays`` setting and
  those any of its lines already uses or used (the relays of its invitations and acceptances,
  circuits its operators added, mailboxes it still reads);
- a relay that matches an entry of ``[station] relay_policy`` (a ``ws://``/``wss://`` URL, a
  host name or address, or ``*.domain`` for any host under it) is accepted;
- a relay on a loopback, private, link-local or otherwise internal address (an IP literal or
  ``localhost``) is refused, unless named in the policy or ``allow_private_relays`` is set;
- otherwise, with ``"ask"`` in the policy (the default), the proposal is held for a local
  operator's approval (``backchannel circuit pending``/``approve``/``reject``, or the
  console); without it, refused.

Matching ignores the userinfo and query of a URL (where a relay's access token travels), so
a token does not change which relay a URL names. A pinned relay (``#pin=…``) is trusted only
with the pin this station already uses for it: the peer must not swap in another key for a
trusted address (it is then judged like any other proposal). Host names are not resolved here: a name
that resolves to an internal address is judged by its name (list names you trust).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

ASK = "ask"


class Decision(StrEnum):
    ACCEPT = "accept"
    ASK = "ask"
    REFUSE = "refuse"


def parse_policy(value: Any) -> tuple[str, ...]:
    """The policy setting as a tuple of entries; ValueError names what is wrong."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError('must be "ask" or a list of relay URLs, hosts and "ask"')
    out = []
    for item in items:
        entry = item.strip()
        if entry != ASK and "://" in entry and _key(entry) is None:
            raise ValueError(f"{entry!r} is not a ws:// or wss:// relay URL")
        out.append(entry)
    return tuple(out)


def _key(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of a relay URL, without userinfo and query; None if not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "wss" else 80
    return parts.scheme, parts.hostname.lower().rstrip("."), port or default, parts.path or "/"


def same_relay(a: str, b: str) -> bool:
    ka, kb = _key(a), _key(b)
    return ka is not None and ka == kb


def internal_host(host: str) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified; or ``localhost``."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _matches(entry: str, key: tuple[str, str, int, str]) -> bool:
    if "://" in entry:
        return _key(entry) == key
    host = entry.lower().rstrip(".")
    if host.startswith("*."):
        return key[1].endswith(host[1:])
    return key[1] == host.strip("[]")


def decide(
    url: str, policy: tuple[str, ...], trusted: Iterable[str], allow_private: bool
) -> tuple[Decision, str]:
    """What to do with a relay the peer proposed, and why (for the log and the operator)."""
    key = _key(url)
    if key is None:
        return Decision.REFUSE, "not a ws:// or wss:// relay URL"
    pin = url.partition("#")[2]
    if any(_key(t) == key and t.partition("#")[2] == pin for t in trusted):
        return Decision.ACCEPT, "a relay this station already uses"
    if any(_matches(entry, key) for entry in policy if entry != ASK):
        return Decision.ACCEPT, "allowed by relay_policy"
    if internal_host(key[1]) and not allow_private:
        return Decision.REFUSE, "an internal (loopback, private or link-local) address"
    if ASK in policy:
        return Decision.ASK, "held for an operator's approval (relay_policy = ask)"
    return Decision.REFUSE, "not allowed by relay_policy"
