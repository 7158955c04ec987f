"""Attacks on a relay's capacity by one client: creating mailboxes, holding connections.

Before issue 9 one unauthenticated client created 95,000 mailboxes in 19 s that were never
deleted (so the relay-wide ``max_mailboxes`` was used up for good), and 3,000 idle
connections were all accepted. Now mailbox creation is limited per connection and per client
address (and needs the relay's access token when one is configured), mailboxes nobody uses
are deleted after ``mailbox_expiry_seconds`` so the quota comes back, and connections are
limited per address and in total. Every refusal is a named ERROR frame and a counter.

The connection test keeps the counts small with small configured limits (a bounded test);
``test_default_limits_are_finite`` checks that the defaults bound the real attack too.
Distinct client addresses are 127.0.0.2 and 127.0.0.3 (all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.proto import frames
from backchannel.proto.frames import RelayErrorCode
from backchannel.relay.config import RelayConfig

from support.figures import figure
from support.relay_clients import RawClient
from support.relays import metrics, run, start_relay


def refused_with(reply: object, code: RelayErrorCode) -> bool:
    return isinstance(reply, frames.Error) and reply.code == code and bool(reply.message)


async def wait_until(predicate: object, timeout: float = 15.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def test_one_client_cannot_create_more_mailboxes_than_its_limits(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, {"max_creates_per_connection": 5, "max_creates_per_address": 8})
    try:

        async def attack() -> tuple[int, int, int]:
            created = refused = 0
            first = await RawClient.open(relay.url)
            second = await RawClient.open(relay.url)
            other = await RawClient.open(relay.url, local_addr=("127.0.0.2", 0))
            try:
                outcomes = [await first.create() for _ in range(10)]
                assert [isinstance(o, frames.Error) for o in outcomes] == [False] * 5 + [True] * 5
                assert all(refused_with(o, RelayErrorCode.CLIENT_LIMIT) for o in outcomes[5:])
                # A second connection from the same address gets only what the address has left.
                outcomes += [await second.create() for _ in range(5)]
                assert [isinstance(o, frames.Error) for o in outcomes[10:]] == [False] * 3 + [True] * 2
                assert all(refused_with(o, RelayErrorCode.CLIENT_LIMIT) for o in outcomes[13:])
                created = sum(not isinstance(o, frames.Error) for o in outcomes)
                refused = len(outcomes) - created
                # Another address is not starved by the first.
                theirs = [await other.create() for _ in range(3)]
                assert not any(isinstance(o, frames.Error) for o in theirs)
            finally:
                for client in (first, second, other):
                    await client.close()
            return created, refused, len(theirs)

        created, refused, others = run(attack())
        figure("mailboxes created by one address (limit 8)", created)
        figure("CREATEs refused to that address", refused)
        assert created == 8 and refused == 7 and others == 3
        counts = metrics(relay)
        assert counts["create_limit"] == refused and counts["created"] == created + others
    finally:
        relay.stop()


def test_with_an_access_token_create_needs_it(tmp_path: Path) -> None:
    token = "s3cret-relay-token"
    relay = start_relay(tmp_path, {"access_token": token})
    try:
        host = relay.url.removeprefix("ws://")

        async def attack() -> None:
            anonymous = await RawClient.open(relay.url)
            wrong = await RawClient.open(f"ws://:not-the-token@{host}")
            right = await RawClient.open(f"ws://:{token}@{host}")
            try:
                for client in (anonymous, wrong):
                    reply = await client.create()
                    assert refused_with(reply, RelayErrorCode.TOKEN_REQUIRED), reply
                    assert token not in reply.message  # type: ignore[union-attr]
                box = await right.create()
                assert not isinstance(box, frames.Error), box
                # Using a mailbox needs its keys, not the token: a peer given only the
                # capability can still post into it.
                assert isinstance(await anonymous.auth_send(box), frames.Ok)
                assert isinstance(await right.subscribe(box), frames.Ok)
            finally:
                for client in (anonymous, wrong, right):
                    await client.close()

        run(attack())
        counts = metrics(relay)
        figure("CREATEs refused without the access token", counts["token_refused"])
        assert counts["token_refused"] == 2 and counts["created"] == 1
        assert token not in relay.stderr_text()
    finally:
        relay.stop()


def test_unused_mailboxes_expire_and_the_quota_comes_back(tmp_path: Path) -> None:
    relay = start_relay(
        tmp_path,
        {"max_mailboxes": 4, "mailbox_expiry_seconds": 1.0, "expiry_sweep_seconds": 0.2},
    )
    try:

        async def attack() -> int:
            squatter = await RawClient.open(relay.url)
            owner = await RawClient.open(relay.url)
            try:
                used = await owner.create()
                assert not isinstance(used, frames.Error)
                assert isinstance(await owner.subscribe(used), frames.Ok)  # in use all along
                unused = [await squatter.create() for _ in range(3)]
                assert not any(isinstance(box, frames.Error) for box in unused)
                assert refused_with(await squatter.create(), RelayErrorCode.QUOTA)
                await wait_until(lambda: metrics(relay).get("mailboxes_expired", 0) >= 3)
                # The squatter's mailboxes are gone; the one in use is not.
                for box in unused:
                    assert not isinstance(box, frames.Error)
                    assert refused_with(await squatter.subscribe(box), RelayErrorCode.AUTH)
                assert isinstance(await owner.auth_send(used), frames.Ok)
                again = [await owner.create() for _ in range(3)]
                assert not any(isinstance(box, frames.Error) for box in again)
                return len(again)
            finally:
                await squatter.close()
                await owner.close()

        recreated = run(attack())
        counts = metrics(relay)
        figure("unused mailboxes deleted after expiry", counts["mailboxes_expired"])
        figure("mailboxes created again after the quota came back", recreated)
        assert counts["mailboxes_expired"] == 3 and counts["quota"] == 1
    finally:
        relay.stop()


def test_connections_are_limited_per_address_and_in_total(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, {"max_connections": 12, "max_connections_per_address": 5})
    try:

        async def attack() -> tuple[int, int]:
            accepted: list[RawClient] = []
            refused = 0
            try:
                for address, attempts in (("127.0.0.1", 10), ("127.0.0.2", 5), ("127.0.0.3", 5)):
                    for _ in range(attempts):
                        client = await RawClient.open(relay.url, local_addr=(address, 0))
                        if client.nonce is not None:
                            accepted.append(client)
                        else:
                            assert refused_with(client.first, RelayErrorCode.TOO_MANY_CONNECTIONS)
                            refused += 1
                            await client.close()
                by_address = [c.ws.local_address[0] for c in accepted]
                assert by_address.count("127.0.0.1") == 5 and by_address.count("127.0.0.2") == 5
                assert by_address.count("127.0.0.3") == 2  # the relay-wide limit of 12
                # A slot comes back when a connection ends.
                await accepted.pop(0).close()
                await wait_until(lambda: metrics(relay)["open_connections"] == 11)
                again = await RawClient.open(relay.url, local_addr=("127.0.0.1", 0))
                accepted.append(again)
                assert again.nonce is not None
                return len(accepted), refused
            finally:
                for client in accepted:
                    await client.close()

        accepted, refused = run(attack(), timeout=60)
        figure("connections accepted (limits 5 per address, 12 in total)", accepted)
        figure("connections refused", refused)
        assert refused == 8
        counts = metrics(relay)
        assert counts["connection_limit"] == refused
    finally:
        relay.stop()


def test_default_limits_are_finite() -> None:
    """The defaults bound the real attacks (3,000 idle connections, 95,000 mailboxes) while a
    line of two stations with several circuits never meets them."""
    config = RelayConfig()
    assert 64 <= config.max_connections_per_address < config.max_connections <= 10_000
    assert 16 <= config.max_creates_per_connection <= config.max_creates_per_address <= 1_000
    assert 64 <= config.max_subscriptions_per_connection <= config.max_subscriptions_per_address <= 10_000
    assert config.max_send_buffer_bytes <= 16 * 1024 * 1024
    assert config.max_in_flight_bytes <= 16 * 1024 * 1024
    assert 0 < config.send_timeout_seconds <= 120
    assert 0 < config.mailbox_expiry_seconds < float("inf")
    assert config.access_token == ""  # open by default; see OPERATIONS §1.5
    assert 0 < config.requests_per_second < config.request_burst <= 100_000
