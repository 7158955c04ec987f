"""The peer cannot make the station connect into its own network (THREAT_MODEL §3).

A relay the peer proposes on a loopback, private, link-local or otherwise internal address
(an IP literal, IPv4-mapped IPv6 included, or ``localhost``) is refused under the default
policy, unless the policy names it or ``allow_private_relays`` is set; a public address is
held for an operator (``ask``). Host names are judged by name, never resolved.
"""

from __future__ import annotations

import pytest

from backchannel.station.relay_policy import Decision, decide

DEFAULT = ("ask",)
INTERNAL = [
    "ws://127.0.0.1:9000",
    "ws://localhost:9000",
    "ws://relay.localhost",
    "ws://10.1.2.3",
    "ws://172.16.0.9",
    "ws://192.168.1.1:80/x",
    "ws://169.254.169.254",  # the cloud metadata service
    "ws://0.0.0.0",
    "ws://[::1]:9000",
    "ws://[fe80::1]",
    "ws://[fd00::7]",
    "ws://[::ffff:127.0.0.1]",
    "wss://user:token@127.0.0.1:9443/?t=1",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_address_proposed_by_the_peer_is_refused(url: str) -> None:
    decision, why = decide(url, DEFAULT, trusted=(), allow_private=False)
    assert decision is Decision.REFUSE, why
    assert "internal" in why


@pytest.mark.parametrize("url", INTERNAL[:3])
def test_an_internal_address_is_accepted_only_when_named_or_allowed(url: str) -> None:
    host = url.split("//")[1].split(":")[0].split("@")[-1]
    assert decide(url, ("ask", host), trusted=(), allow_private=False)[0] is Decision.ACCEPT
    assert decide(url, DEFAULT, trusted=(), allow_private=True)[0] is Decision.ASK


def test_a_public_address_is_held_for_an_operator_and_a_name_is_not_resolved() -> None:
    # A documentation range (TEST-NET-3) is not global either: refused like any reserved range.
    assert decide("wss://203.0.113.7", DEFAULT, trusted=(), allow_private=False)[0] is Decision.REFUSE
    assert decide("wss://8.8.8.8", DEFAULT, trusted=(), allow_private=False)[0] is Decision.ASK
    # A name is judged by its name: one that would resolve to loopback is held, not refused.
    assert decide("wss://relay.example.org", DEFAULT, trusted=(), allow_private=False)[0] is Decision.ASK
