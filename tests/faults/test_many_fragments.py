"""Messages of many fragments arrive whole, exactly once and in order under faults (issue 11).

Since issue 11 a message of 5 … 30 000 bytes travels as 5 or 9 circuit frames of 4 096 bytes
per circuit, and the receiver acknowledges a fragment only once the batch that stores the whole
entry has committed. Here a line runs over two relays, each behind a fault-injecting proxy that
drops WebSocket frames and cuts connections, while a seeded killer SIGKILLs and restarts the
relays and both stations at random moments; the stations stream long messages of random sizes
to each other, both ways. Afterwards every message whose ``send`` returned (it is then durable)
is in its receiver's inbox exactly once, whole (the very text), in order; one cut off by a kill
of its sender (which may or may not have been stored) is there at most once; the transcripts
are equal. The seed
is printed (replay with ``BACKCHANNEL_FAULT_SEED``). The stream and the killer are bounded in
count and time.
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

from backchannel.errors import StationNotRunning, TransportError
from backchannel.proto import wire

from support.faultproxy import FaultProxy
from support.figures import figure
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, heads_equal, wait_until

MESSAGES = 14
KILLS = 6
STATION_TOML = "[station]\nrelay_request_timeout = 1.0\nlink_test_interval = 2.0\nretry_max_seconds = 1.0\n"


def text_of(i: int, rng: random.Random) -> str:
    """Message ``i``: its number, then filler up to a random length of 5 000 … 30 000 bytes
    (an envelope of the 16 KiB or 32 KiB padding: 5 or 9 fragments)."""
    size = rng.randrange(5_000, 30_001)
    head = f"m{i:03d}:"
    filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(64))
    return (head + filler * (size // 64 + 1))[:size]


class Killer(threading.Thread):
    """SIGKILLs one of ``victims`` (chosen by the seeded rng) at random moments and starts it
    again, ``kills`` times."""

    def __init__(self, victims: list[StationProcess | RelayProcess], kills: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.victims, self.kills, self.rng = victims, kills, rng
        self.done: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while len(self.done) < self.kills:
                time.sleep(self.rng.uniform(0.3, 1.2))
                victim = self.rng.choice(self.victims)
                victim.kill()
                self.done.append(victim.name if isinstance(victim, StationProcess) else "relay")
                time.sleep(self.rng.uniform(0.0, 0.3))
                if isinstance(victim, RelayProcess):
                    victim.restart()
                else:
                    victim.start()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def test_many_fragment_messages_arrive_whole_once_in_order_through_kills_and_cuts(tmp_path: Path) -> None:
    seed = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={seed}")
    rng = random.Random(seed)
    relays = [start_relay(tmp_path, {"redeliver_seconds": 1.0}, name=f"relay{i}") for i in range(2)]
    proxies = [FaultProxy(relay.port, {}, seed=seed + i) for i, relay in enumerate(relays)]
    a, b = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
    try:
        for proxy in proxies:
            proxy.start()
        for st in (a, b):
            (st.home / "station.toml").write_text(STATION_TOML)
            st.start()
        text = a.call("invite", relay=[p.url for p in proxies], name="bravo")["text"]
        b.call("accept", text=text, name="alpha")
        wait_until("the line", lambda: b.call("line", name="alpha")["state"] == "established")

        for proxy in proxies:
            proxy.set_faults({"drop": 0.03, "cut": 0.5})
        killer = Killer([*relays, a, b], KILLS, random.Random(rng.random()))
        killer.start()
        texts = [text_of(i, rng) for i in range(MESSAGES)]  # even: alpha to bravo; odd: back
        routes = [(a, "bravo", b, "alpha"), (b, "alpha", a, "bravo")]
        accepted: list[str] = []
        ambiguous: list[str] = []
        started = time.monotonic()
        i = 0
        while (i < MESSAGES or killer.is_alive()) and time.monotonic() < started + 90:
            if i < MESSAGES:
                sender, line, _, _ = routes[i % 2]
                try:
                    sender.call("send", line=line, text=texts[i])
                    accepted.append(texts[i])
                except (StationNotRunning, TransportError, OSError):
                    ambiguous.append(texts[i])
                    time.sleep(0.1)
                i += 1
            time.sleep(rng.uniform(0.05, 0.4))
        killer.join(60)
        assert killer.error is None, killer.error
        assert len(killer.done) >= KILLS, f"only {len(killer.done)} kills happened"
        assert len(accepted) >= MESSAGES // 2, "too few messages were accepted to mean anything"
        for proxy in proxies:
            proxy.set_faults({})
        for st in (a, b):
            if not st.running:
                st.start()

        def inbox(station: StationProcess, line: str) -> list[str]:
            return [m["text"] for m in reversed(station.call("inbox", line=line, limit=1_000))]

        def arrived() -> bool:
            return set(accepted) <= set(inbox(b, "alpha")) | set(inbox(a, "bravo"))

        settle = time.monotonic()
        wait_until("every accepted message, whole", arrived, timeout=120)
        took = time.monotonic() - settle
        for parity, (_, _, receiver, line) in enumerate(routes):
            got = inbox(receiver, line)
            sent = texts[parity::2]
            assert len(got) == len(set(got)), "a message was delivered twice"
            assert set(got) <= set(accepted) | set(ambiguous), "a message arrived that was never sent"
            assert set(got) <= set(sent), "a message arrived at the wrong station"
            assert got == [t for t in sent if t in got], "messages were delivered out of order"
        wait_until("equal transcript heads", lambda: heads_equal(a, "bravo", b, "alpha"), timeout=60)
        sizes = []
        for st in (a, b):
            with sqlite3.connect(st.home / "station.db") as db:
                sizes += [len(r[0]) for r in db.execute("SELECT frame FROM outbox WHERE kind = 'msg'")]
        fragments = [math.ceil(n / wire.CHUNK) for n in sizes]
        refused = sum(st.call("counters").get("fragment_limit", 0) for st in (a, b))
    finally:
        for st in (a, b):
            st.stop()
        for proxy in proxies:
            proxy.stop()
        for relay in relays:
            relay.stop()
    figure("many-fragment messages accepted (sent)", len(accepted), "messages")
    figure("sends cut off by a kill of their station (ambiguous)", len(ambiguous), "messages")
    figure("fewest / most fragments per message", f"{min(fragments)} / {max(fragments)}", "fragments")
    figure("kills (relays and stations)", len(killer.done), "kills")
    figure("victims, in order", " ".join(killer.done))
    figure("connections cut by the proxies", sum(p.counters["cuts"] for p in proxies), "cuts")
    figure("WebSocket frames dropped by the proxies", sum(p.counters["dropped"] for p in proxies), "frames")
    figure("fragments refused by the reassembly bounds", refused, "fragments")
    figure("wait after the last kill until everything arrived", took, "s")
    assert min(fragments) >= 5 and max(fragments) == wire.MAX_FRAGMENTS
    assert took < 120
