"""Nothing lost, nothing twice: processes killed with SIGKILL at random points of a stream.

A stream of messages goes from one station to the other while one process (the sending
station, the receiving station, or the relay) is killed at random moments and restarted,
at least 20 times. A message counts as *accepted* when ``send`` returned (it is then
durable); a send cut off by the kill is *ambiguous* (it may or may not have been stored).
Afterwards every accepted message must be in the receiver's inbox exactly once, in order,
nothing else but ambiguous ones may be there (each at most once), and both transcripts
must be equal. The seed is printed so that a failure can be replayed with
``BACKCHANNEL_FAULT_SEED=<seed>``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from backchannel.errors import StationNotRunning, TransportError

from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, heads_equal, pair, wait_until

MESSAGES = int(os.environ.get("BACKCHANNEL_CRASH_MESSAGES", "200"))
KILLS = int(os.environ.get("BACKCHANNEL_CRASH_KILLS", "20"))


def seed() -> int:
    value = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={value}")
    return value


class Killer(threading.Thread):
    """Kills ``victim`` at random moments and starts it again, ``kills`` times."""

    def __init__(self, victim: StationProcess | RelayProcess, kills: int, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.victim, self.kills, self.rng = victim, kills, rng
        self.done = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while self.done < self.kills:
                time.sleep(self.rng.uniform(0.05, 0.6))
                self.victim.kill()
                self.done += 1
                time.sleep(self.rng.uniform(0.0, 0.3))
                if isinstance(self.victim, RelayProcess):
                    self.victim.restart()
                else:
                    self.victim.start()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@pytest.mark.parametrize("victim", ["sender", "receiver", "relay"])
def test_stream_survives_random_sigkills(tmp_path: Path, victim: str) -> None:
    rng = random.Random(seed())
    relay = start_relay(tmp_path)
    sender, receiver = StationProcess(tmp_path, "sender"), StationProcess(tmp_path, "receiver")
    try:
        sender.start()
        receiver.start()
        s_line, r_line = pair(sender, receiver, relay.url)
        targets: dict[str, StationProcess | RelayProcess] = {
            "sender": sender,
            "receiver": receiver,
            "relay": relay,
        }
        target = targets[victim]
        killer = Killer(target, KILLS, rng)
        killer.start()
        accepted: list[str] = []
        ambiguous: list[str] = []
        deadline = time.monotonic() + 180
        i = 0
        while (i < MESSAGES or killer.is_alive()) and time.monotonic() < deadline:
            text = f"m{i:06d}"
            try:
                sender.call("send", line=s_line, text=text)
                accepted.append(text)
            except (StationNotRunning, TransportError, OSError):
                ambiguous.append(text)
                time.sleep(0.05)
            i += 1
            time.sleep(rng.uniform(0, 0.01))
        killer.join(60)
        assert killer.error is None, killer.error
        assert killer.done >= KILLS, f"only {killer.done} kills happened"
        assert len(accepted) >= MESSAGES // 2, "too few messages were accepted to mean anything"
        if isinstance(target, StationProcess) and not target.running:
            target.start()

        def inbox() -> list[str]:
            return [m["text"] for m in reversed(receiver.call("inbox", line=r_line, limit=1_000_000))]

        wait_until("every accepted message to arrive", lambda: set(accepted) <= set(inbox()), timeout=120)
        texts = inbox()
        assert len(texts) == len(set(texts)), "a message was delivered twice"
        assert set(texts) <= set(accepted) | set(ambiguous), "a message appeared that was never sent"
        assert texts == sorted(texts), "messages were delivered out of order"
        wait_until(
            "equal transcript heads", lambda: heads_equal(sender, s_line, receiver, r_line), timeout=60
        )
        sent = sender.call("outbox", line=s_line, limit=1_000_000)
        wait_until(
            "every delivered receipt",
            lambda: all(
                m["status"] == "delivered" for m in sender.call("outbox", line=s_line, limit=1_000_000)
            ),
            timeout=60,
        )
        assert len(sent) == len(texts)
    finally:
        for station in (sender, receiver):
            station.stop()
        relay.stop()
