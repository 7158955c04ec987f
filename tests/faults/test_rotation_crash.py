"""A rotation survives SIGKILL of either station at every step: nothing lost, nothing twice.

Both stations run with ``support/kill_site`` (test-only fault points, nothing in ``src/`` knows
them). Each round, one station (drawn) rotates its mailboxes and a station dies by SIGKILL at one
step of the rotation: after the fresh mailboxes were CREATEd but before the commit; after the
commit before anything was sent; while applying the peer's ``seen`` that starts the drain; after
the relay deleted the old mailbox but before the station forgot it; or at a random moment (either
station, drawn). Messages flow both ways throughout. Afterwards every accepted message arrived
exactly once and in order, the transcripts are equal, and every rotation completed: no rotated
mailbox is left in either station, and the relay holds none of them. Seeded:
``BACKCHANNEL_FAULT_SEED=<seed>`` replays a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path

from backchannel.errors import BackchannelError

from support.figures import figure
from support.relays import start_relay
from support.rotation import TOML, current_mailboxes, relay_mailboxes, rotated_mailboxes
from support.stations import ENV, StationProcess, heads_equal, pair, wait_until

KILL_SITE = Path(__file__).resolve().parent.parent / "support" / "kill_site"
STEPS = ("created", "committed", "applied", "deleted", "random")


def seed() -> int:
    value = int(os.environ.get("BACKCHANNEL_FAULT_SEED", str(random.randrange(2**32))))
    print(f"fault seed: BACKCHANNEL_FAULT_SEED={value}")
    return value


def _inbox(station: StationProcess, line: str) -> list[str]:
    return [m["text"] for m in reversed(station.call("inbox", line=line, limit=1000))]


def test_rotation_survives_sigkills_of_either_station_at_every_step(tmp_path: Path) -> None:
    rng = random.Random(seed())
    relay = start_relay(tmp_path)
    env = {**ENV, "PYTHONPATH": os.pathsep.join(p for p in (str(KILL_SITE), ENV.get("PYTHONPATH", "")) if p)}
    a, b = StationProcess(tmp_path, "alpha", env=env), StationProcess(tmp_path, "bravo", env=env)
    stations = (a, b)
    try:
        for st in stations:
            (st.home / "station.toml").write_text(TOML)
            st.start()
        lines = dict(zip((a.name, b.name), pair(a, b, relay.url), strict=True))
        sent: dict[str, list[str]] = {a.name: [], b.name: []}
        rotated: set[bytes] = set()
        fired = 0

        def send(st: StationProcess, n: int, tag: str) -> None:
            for i in range(n):
                text = f"{st.name} {tag} {i}"
                st.call("send", line=lines[st.name], text=text)
                sent[st.name].append(text)  # accepted: send returned, the message is durable

        plan = list(STEPS)
        rng.shuffle(plan)
        for round_no, step in enumerate(plan):
            rotator = rng.choice(stations)
            victim = rng.choice(stations) if step == "random" else rotator
            survivor = b if victim is a else a
            rotated |= current_mailboxes(a) | current_mailboxes(b)
            if step != "random":
                (victim.home / "die-at-rotation").write_text(step)
            with contextlib.suppress(BackchannelError):  # (it may die answering: a kill site)
                rotator.call("rotate_line", line=lines[rotator.name])
            if step == "random":
                time.sleep(rng.uniform(0.0, 0.4))
                victim.kill()
            send(survivor, 2, f"r{round_no}")

            def dead(v: StationProcess = victim) -> bool:
                return v.proc is not None and v.proc.poll() is not None

            died = wait_until(f"{victim.name} to die at {step}", dead, timeout=30)
            fired += bool(died) and step != "random"
            victim.kill()  # (reaps it)
            (victim.home / "die-at-rotation").unlink(missing_ok=True)
            victim.start()
            send(victim, 2, f"r{round_no}")
        figure("kill sites reached during rotations", fired, "sites")
        assert fired == len(STEPS) - 1

        send(a, 1, "final")
        send(b, 1, "final")
        for st, peer in ((a, b), (b, a)):

            def arrived(st: StationProcess = st, peer: StationProcess = peer) -> bool:
                return len(_inbox(peer, lines[peer.name])) >= len(sent[st.name])

            wait_until(f"every message of {st.name}", arrived, timeout=60)
            assert _inbox(peer, lines[peer.name]) == sent[st.name]  # once each, in order, none lost
        wait_until("equal transcripts", lambda: heads_equal(a, lines[a.name], b, lines[b.name]))
        current = current_mailboxes(a) | current_mailboxes(b)
        rotated -= current
        wait_until(
            "every rotation completed (old mailboxes deleted at the relay and forgotten)",
            lambda: (
                not rotated_mailboxes(a)
                and not rotated_mailboxes(b)
                and not ({r for r, _, _, _ in relay_mailboxes(relay)} & rotated)
            ),
            timeout=60,
        )
        figure("rotated mailboxes deleted at the relay across kills", len(rotated), "mailboxes")
        assert len(rotated) >= len(STEPS) - 2  # (a rotation killed before its commit replaced none)
        held = {r for r, _, _, _ in relay_mailboxes(relay)}
        assert current <= held
    finally:
        for st in stations:
            st.stop()
        relay.stop()
