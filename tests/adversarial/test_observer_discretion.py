"""A relay operator, two colluding ones, or a tap on their wires learn nothing from a line's traffic.

Attack (issue 11; THREAT_MODEL "A discreet line"): two real relays on 127.0.0.1, each behind a
passive ``WireTap`` that timestamps every WebSocket message (monotonic clock, direction, connection)
— exactly what each relay receives and sends, and what an observer of its wire records. Two real
stations pair over the first relay and add the second in band (a circuit change), so the line runs
over two circuits. The analyst then tries three things:

a. **Quiet or busy?** A quiet period (nobody sends; link tests run every second) and a busy period
   (messages of mixed sizes, up to 9 fragments, their receipts, an operator's acknowledgement, a
   checkpoint of the line on the record), each ``PERIOD`` seconds, cover at ``COVER_RATE`` frames/s
   per circuit. Per relay, two-sample Kolmogorov–Smirnov tests (``scipy.stats.ks_2samp``) quiet vs
   busy on the sizes of SEND messages, the sizes of DELIVER messages, and the gaps between
   consecutive SENDs into one mailbox (pooled over the relay's mailboxes of the line). With cover, the
   samples are about 200 SENDs and 200 DELIVERs per period per relay (at least ``MIN_FRAMES`` each is
   asserted, so the test is decisive: at n = m = 150 a KS test at α = 0.01 detects D ≥ 0.19), and
   every p must exceed α = 0.01. Under a perfect pacer the sizes give p = 1 and each gap test fails
   by chance with probability 0.01 (about 2 % for the two relays together: stated, not hidden).
   Without cover (``cover_rate = 0``) the same analysis must tell the periods apart (some p < 0.01
   at each relay): the control that shows the test has power. An empty sample against a non-empty one
   counts as D = 1, p = 0: frames in one period and none in the other tell them apart by themselves.
b. **Same bytes at two relays?** Over everything both relays received and sent for the line (every
   relay-frame body of both taps — CREATE keys, authorisations, SEND and DELIVER payloads, ids — and
   the rows of both relays' SQLite databases read every half second during the run) no 16-byte string
   appears at both relays. Excluded: only the 6-byte relay-frame header (version, type, request id:
   protocol constants and a per-connection counter) and ERROR texts (the relay's own constant
   strings). And within one relay, no 8-byte value of a payload appears in two distinct payloads
   (a frame's copies — retries, its SEND and its DELIVER — are one payload). Chance bound: W windows
   of random bytes make an 8-byte repeat with probability ≤ W²/2⁶⁵ (about 10⁻⁷ for W = 2·10⁶), so
   any repeat is a value the line carries in clear (a line id, a sequence number, a key).
c. **Sizes.** Every SEND and DELIVER payload at either relay, over the whole life of the line (hello,
   circuit change, messages of every size, receipts, link tests, acknowledgement, checkpoint, cover),
   is exactly 4 096 bytes.

On the code before issue 11 (no cover, envelopes in clear, five padding sizes) all three failed:
a quiet period held 37 SENDs per relay (not 150) and its SEND gaps differed from the busy period's
at p = 1·10⁻⁴; 295 830 16-byte strings were at both relays and 125 8-byte values repeated at each;
payloads had six sizes from 313 to 32 825 bytes. The control passed there too (gaps p = 6·10⁻⁷).

Also shown, not judged (the acceptance names sizes and SEND times): the gaps between one
connection's ACKs, quiet against busy. A station acknowledges a multi-fragment entry's fragments
once the whole entry is committed, and that timing tells the periods apart even with cover on
(THREAT_MODEL §2b). Run time: about 75 s in all (the cover run, shared by a, b and c, and the control).
"""

from __future__ import annotations

import contextlib
import itertools
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import ks_2samp

from support.figures import figure
from support.relays import RelayProcess, start_relay
from support.stations import StationProcess, wait_until
from support.wiretap import OP_BINARY, WireTap

SEED = 1963
COVER_RATE = 10.0  #: frames/s per circuit in the cover run
PERIOD = 10.0  #: seconds of each of the quiet and the busy period (cover run)
CONTROL_PERIOD = 5.0  #: seconds of each period of the control run (cover off)
MIN_FRAMES = 150  #: SENDs and DELIVERs each period must hold at each relay (cover run)
ALPHA = 0.01
FRAME_SIZE = 4096
SEND, ACK, DELIVER, ERROR = 0x04, 0x05, 0x84, 0x8F
HEADER = 6  #: version, type, request id
#: Text sizes (bytes) of the busy period: every padding bucket of today's envelopes and up to 9 fragments
TEXT_SIZES = [40, 180, 700, 1500, 3000, 5000, 9000, 15000, 22000, 30000]


@dataclass
class Line:
    """One line over two tapped relays, and what was seen of it."""

    relays: list[RelayProcess]
    taps: list[WireTap]
    stations: list[StationProcess]
    lines: list[str]  #: the line's name at alpha, at bravo
    quiet: tuple[float, float] = (0.0, 0.0)
    busy: tuple[float, float] = (0.0, 0.0)
    stored: list[set[bytes]] = field(default_factory=lambda: [set(), set()])  #: SQLite values per relay


@dataclass(frozen=True)
class Frame:
    t: float
    kind: int  #: SEND or DELIVER
    mailbox: bytes  #: send_id (SEND) or recv_id (DELIVER)
    size: int  #: the whole WebSocket message
    payload: bytes


def frames(tap: WireTap) -> list[Frame]:
    out = []
    for m in tap.snapshot():
        if m.opcode != OP_BINARY or len(m.data) < HEADER or m.data[0] != 1:
            continue
        if m.upstream and m.data[1] == SEND:
            out.append(Frame(m.t, SEND, m.data[6:22], len(m.data), m.data[22:]))
        elif not m.upstream and m.data[1] == DELIVER:
            out.append(Frame(m.t, DELIVER, m.data[6:22], len(m.data), m.data[38:]))
    return out


def bodies(tap: WireTap) -> set[bytes]:
    """Every relay-frame body the tap saw (both directions), ERROR texts and headers left out."""
    return {
        m.data[HEADER:]
        for m in tap.snapshot()
        if m.opcode == OP_BINARY and len(m.data) > HEADER and m.data[1] != ERROR
    }


# ---- the run ------------------------------------------------------------------------------------


STATION_TOML = (
    "[station]\n"
    "link_test_interval = 1\n"  # the quiet period is not silent: link tests run all along
    'relay_policy = ["127.0.0.1"]\n'  # the second relay is added in band (a circuit change)
)


@contextlib.contextmanager
def tapped_line(tmp_path: Path, cover_rate: float) -> Iterator[Line]:
    """Two relays behind taps, two stations paired over the first, the second added in band."""
    started: list[Any] = []
    try:
        relays = [start_relay(tmp_path / f"relay{i}") for i in (1, 2)]
        started += relays
        taps = [WireTap(r.port) for r in relays]
        for tap in taps:
            tap.start()
            started.append(tap)
        stations = []
        for name in ("alpha", "bravo"):
            st = StationProcess(tmp_path, name, cover_rate=cover_rate)
            (st.home / "station.toml").write_text(STATION_TOML)
            st.start()
            started.append(st)
            stations.append(st)
        alpha, bravo = stations
        text = alpha.call("invite", relay=taps[0].url, name="peer")["text"]
        bravo.call("accept", text=text, name="peer")
        wait_until("the line", lambda: bravo.call("line", name="peer")["state"] == "established")
        alpha.call("add_circuit", line="peer", relay=taps[1].url)
        for st in stations:
            wait_until(
                f"{st.name} to use both circuits",
                lambda st=st: len(st.call("line", name="peer")["circuits"]) == 2,  # type: ignore[misc]
            )
        alpha.call("send", line="peer", text="warm-up", wait="delivered", timeout=30)
        yield Line(relays, taps, stations, ["peer", "peer"])
    finally:
        for thing in reversed(started):
            thing.stop()


def busy_script(line: Line, rng: random.Random, period: float) -> list[tuple[int, int]]:
    """Send the busy period's messages at seeded moments inside its first 70 %; returns
    (station index, text size) of each. Ends with an operator's acknowledgement and a checkpoint."""
    sizes = TEXT_SIZES + rng.sample(TEXT_SIZES, 4)
    rng.shuffle(sizes)
    moments = sorted(rng.uniform(0, 0.7 * period) for _ in sizes)
    # made before the first send, so that nothing heavy runs in this process (beside the taps) after
    script = [(rng.randrange(2), "".join(rng.choices("abcdefghij klmnopqrstuvwxyz", k=n))) for n in sizes]
    start = time.monotonic()
    sent = []
    for (who, body), at in zip(script, moments, strict=True):
        time.sleep(max(0.0, start + at - time.monotonic()))  # pacing the script, not a wait for a result
        line.stations[who].call("send", line=line.lines[who], text=body, precedence="ROUTINE")
        sent.append((who, len(body)))
    alpha, bravo = line.stations
    got = wait_until("a message at bravo", lambda: [m for m in bravo.call("inbox") if m["line"] == "peer"])
    bravo.call("ack", line="peer", seq=got[0]["seq"], operator="duty-officer")
    alpha.call("checkpoint", line="peer")
    return sent


def all_delivered(line: Line, count: int) -> bool:
    done = 0
    for st in line.stations:
        done += sum(1 for m in st.call("outbox") if m["status"] in ("delivered", "acknowledged"))
    return done >= count


class DbSampler:
    """Reads both relays' SQLite rows every half second while the line runs (bounded)."""

    def __init__(self, line: Line) -> None:
        self.line = line
        self.stop = threading.Event()
        self.reads = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            for i, relay in enumerate(self.line.relays):
                self.line.stored[i] |= relay_values(relay.db_path)
            self.reads += 1
            self.stop.wait(0.5)

    def __enter__(self) -> DbSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        for i, relay in enumerate(self.line.relays):
            self.line.stored[i] |= relay_values(relay.db_path)


def relay_values(db_path: Path) -> set[bytes]:
    """Every byte string a relay's database holds: mailbox ids and keys, message ids and payloads."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)) as db:
            rows = db.execute("SELECT recv_id, send_id, recv_key, send_key FROM mailboxes").fetchall()
            rows += db.execute("SELECT msg_id, payload FROM messages").fetchall()
    except sqlite3.OperationalError:  # busy for longer than the timeout: the next read gets it
        return set()
    return {bytes(v) for row in rows for v in row}


@pytest.fixture(scope="module")
def cover_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    """The cover run, shared by a, b and c: quiet period, busy period, everything delivered."""
    rng = random.Random(SEED)
    with tapped_line(tmp_path_factory.mktemp("discretion"), COVER_RATE) as line, DbSampler(line):
        line.quiet = (time.monotonic(), time.monotonic() + PERIOD)
        time.sleep(PERIOD)  # the quiet period is a timed window: nothing to wait for
        t1 = time.monotonic()
        sent = busy_script(line, rng, PERIOD)
        time.sleep(max(0.0, t1 + PERIOD - time.monotonic()))
        line.busy = (t1, t1 + PERIOD)
        wait_until("every message delivered", lambda: all_delivered(line, len(sent) + 1), timeout=90)
        yield line


# ---- a. quiet or busy? ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Samples:
    send_sizes: list[int]
    deliver_sizes: list[int]
    send_gaps: list[float]
    ack_gaps: list[float]  #: between a connection's ACKs: a figure, not asserted (see analyse)


def samples(tap: WireTap, window: tuple[float, float]) -> Samples:
    inside = [f for f in frames(tap) if window[0] <= f.t < window[1]]
    per_box: dict[bytes, list[float]] = {}
    for f in inside:
        if f.kind == SEND:
            per_box.setdefault(f.mailbox, []).append(f.t)
    acks: dict[int, list[float]] = {}
    for m in tap.snapshot():
        if m.upstream and window[0] <= m.t < window[1] and len(m.data) > 1 and m.data[1] == ACK:
            acks.setdefault(m.conn, []).append(m.t)
    return Samples(
        [f.size for f in inside if f.kind == SEND],
        [f.size for f in inside if f.kind == DELIVER],
        gaps(per_box.values()),
        gaps(acks.values()),
    )


def gaps(series: Iterable[list[float]]) -> list[float]:
    return [b - a for times in series for a, b in itertools.pairwise(times)]


def ks(a: list[float] | list[int], b: list[float] | list[int]) -> tuple[float, float]:
    """(D, p) of the two-sample KS test; an empty sample against a non-empty one is (1, 0)."""
    if not a or not b:
        return (0.0, 1.0) if not a and not b else (1.0, 0.0)
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def analyse(line: Line, label: str) -> list[list[tuple[str, int, int, float, float]]]:
    """Per relay: (test, n quiet, n busy, D, p) of the three KS tests; prints each as a figure."""
    out = []
    for i, tap in enumerate(line.taps, 1):
        quiet, busy = samples(tap, line.quiet), samples(tap, line.busy)
        rows = []
        for test, a, b in (
            ("SEND sizes", quiet.send_sizes, busy.send_sizes),
            ("DELIVER sizes", quiet.deliver_sizes, busy.deliver_sizes),
            ("SEND gaps per mailbox", quiet.send_gaps, busy.send_gaps),
        ):
            d, p = ks(a, b)
            value = f"{len(a)} / {len(b)} / {d:.3f} / {p:.3g}"
            figure(f"{label} relay {i} {test}: n quiet / n busy / D / p", value)
            rows.append((test, len(a), len(b), d, p))
        # ACKs (38 bytes, one per frame received) are not in the acceptance's list: shown, not judged
        d, p = ks(quiet.ack_gaps, busy.ack_gaps)
        value = f"{len(quiet.ack_gaps)} / {len(busy.ack_gaps)} / {d:.3f} / {p:.3g}"
        figure(f"{label} relay {i} ACK gaps per connection (not asserted): n quiet / n busy / D / p", value)
        bursts = [sum(g < 0.01 for g in x) / max(1, len(x)) for x in (quiet.ack_gaps, busy.ack_gaps)]
        figure(f"{label} relay {i} ACK gaps under 10 ms, quiet / busy", f"{bursts[0]:.1%} / {bursts[1]:.1%}")
        out.append(rows)
    return out


def test_with_cover_a_quiet_and_a_busy_period_look_the_same_to_each_relay(cover_run: Line) -> None:
    results = analyse(cover_run, "cover on")
    for rows in results:
        for test, n_quiet, n_busy, _, _ in rows:
            if test != "SEND gaps per mailbox":
                assert min(n_quiet, n_busy) >= MIN_FRAMES, f"{test}: too few frames to decide"
    told_apart = [(i, row) for i, rows in enumerate(results, 1) for row in rows if row[4] <= ALPHA]
    assert told_apart == [], f"distinguishable at alpha = {ALPHA}: {told_apart}"


def test_without_cover_a_quiet_and_a_busy_period_are_told_apart(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    with tapped_line(tmp_path, 0) as line:
        line.quiet = (time.monotonic(), time.monotonic() + CONTROL_PERIOD)
        time.sleep(CONTROL_PERIOD)
        t1 = time.monotonic()
        sent = busy_script(line, rng, CONTROL_PERIOD)
        time.sleep(max(0.0, t1 + CONTROL_PERIOD - time.monotonic()))
        line.busy = (t1, t1 + CONTROL_PERIOD)
        wait_until("every message delivered", lambda: all_delivered(line, len(sent) + 1), timeout=60)
        results = analyse(line, "cover off")
    for i, rows in enumerate(results, 1):
        assert min(p for *_, p in rows) < ALPHA, f"relay {i}: the control could not tell the periods apart"


# ---- b. the same bytes at two relays, a repeated value at one -------------------------------------


K = np.uint64(0x9E3779B97F4A7C15)


def fingerprints16(blobs: set[bytes]) -> Any:
    """A 64-bit fingerprint of every 16-byte window of every blob (distinct values, sorted)."""
    parts = []
    for blob in blobs:
        for k in range(min(8, len(blob) - 15)):
            u = np.frombuffer(blob, dtype=">u8", offset=k, count=(len(blob) - k) // 8).astype(np.uint64)
            parts.append(u[:-1] * K ^ u[1:])  # windows at k, k + 8, ...: (u[j], u[j + 1])
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def windows16(blobs: set[bytes], wanted: set[int]) -> set[bytes]:
    """The 16-byte windows whose fingerprint is in ``wanted`` (exact check of candidates)."""
    out = set()
    for blob in blobs:
        for pos in range(len(blob) - 15):
            u0 = int.from_bytes(blob[pos : pos + 8], "big")
            u1 = int.from_bytes(blob[pos + 8 : pos + 16], "big")
            if ((u0 * int(K)) % 2**64) ^ u1 in wanted:
                out.add(blob[pos : pos + 16])
    return out


def repeated_values8(payloads: set[bytes]) -> int:
    """How many 8-byte values occur in two or more distinct payloads."""
    parts = []
    for blob in payloads:
        per = [np.frombuffer(blob, dtype=">u8", offset=k, count=(len(blob) - k) // 8) for k in range(8)]
        parts.append(np.unique(np.concatenate(per)))
    if not parts:
        return 0
    _, counts = np.unique(np.concatenate(parts), return_counts=True)
    return int((counts > 1).sum())


def test_two_relays_hold_no_common_byte_string_and_no_value_repeats_at_one(cover_run: Line) -> None:
    seen = [bodies(tap) | stored for tap, stored in zip(cover_run.taps, cover_run.stored, strict=True)]
    assert not any(tap.overflowed for tap in cover_run.taps)
    for i, values in enumerate(seen, 1):
        figure(f"relay {i}: distinct byte strings received, sent and stored", len(values), "strings")
        figure(f"relay {i}: bytes in them", sum(len(v) for v in values), "bytes")
    assert all(len(cover_run.stored[i]) > 0 for i in (0, 1))  # the sampler did read both databases
    candidates = set(np.intersect1d(fingerprints16(seen[0]), fingerprints16(seen[1])).tolist())
    shared = windows16(seen[0], candidates) & windows16(seen[1], candidates) if candidates else set()
    figure("16-byte strings found at both relays", len(shared), "strings")
    repeats = []
    for i, tap in enumerate(cover_run.taps, 1):
        payloads = {f.payload for f in frames(tap)}
        windows = sum(len(p) - 7 for p in payloads)
        repeated = repeated_values8(payloads)
        figure(f"relay {i}: distinct payloads / 8-byte windows", f"{len(payloads)} / {windows}")
        figure(f"relay {i}: chance bound of an 8-byte repeat, W^2/2^65", f"{windows**2 / 2**65:.1e}")
        figure(f"relay {i}: 8-byte values repeated across distinct payloads", repeated, "values")
        assert windows**2 / 2**65 < 1e-4  # the check is sound: chance alone would not explain a repeat
        repeats.append(repeated)
    assert shared == set(), f"e.g. {sorted(shared)[:3]}"
    assert repeats == [0, 0]


# ---- c. one size ---------------------------------------------------------------------------------


def test_every_frame_of_the_line_is_4096_bytes_at_both_relays(cover_run: Line) -> None:
    alpha, bravo = cover_run.stations
    sizes: dict[int, int] = {}
    for tap in cover_run.taps:
        for f in frames(tap):
            sizes[len(f.payload)] = sizes.get(len(f.payload), 0) + 1
    seen = ", ".join(f"{s}: {n}" for s, n in sorted(sizes.items()))
    figure("SEND/DELIVER payload sizes seen (size: count)", seen)
    # What the run carried (the guard: the frames above include each kind):
    outbox = alpha.call("outbox") + bravo.call("outbox")
    figure("messages sent in the run (warm-up included)", len(outbox), "messages")
    assert {m["status"] for m in outbox} <= {"delivered", "acknowledged"}
    assert any(m["status"] == "acknowledged" for m in outbox)
    assert len(outbox) > len(TEXT_SIZES)
    assert sum(sizes.values()) >= 2 * MIN_FRAMES
    assert set(sizes) == {FRAME_SIZE}
