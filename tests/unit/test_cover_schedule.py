"""The cover schedule (proto/cover.py), with a fake clock and a seeded rng: the rate, the
bounds of the gaps, FLASH's wait, the idle pause and the return to the full rate."""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import pytest

from backchannel.clock import FakeRng
from backchannel.errors import ConfigError
from backchannel.proto import cover
from backchannel.proto.cover import CoverPolicy, Mode, Slots
from backchannel.station.config import StationConfig

from support.figures import figure

RATE = 10.0
T = 1 / RATE
POLICY = CoverPolicy(rate=RATE, idle_after=5.0, idle_interval=2.0)


def draws(seed: bytes = b"cover") -> list[float]:
    rng = FakeRng(seed)
    return [cover.uniform(rng.bytes(cover.DRAW_BYTES)) for _ in range(5000)]


def run_full(n: int, seed: bytes = b"cover") -> list[float]:
    """Slot times of a circuit whose peer is heard all along (fake clock: each slot on time)."""
    us = iter(draws(seed))
    slots = cover.first(POLICY, 0.0, next(us))
    times = [slots.at]
    for _ in range(n):
        now = slots.at
        slots = cover.following(POLICY, slots, now, now, False, next(us))
        times.append(slots.at)
    return times


def test_uniform_is_in_the_unit_interval_and_needs_its_bytes() -> None:
    values = draws()
    assert min(values) >= 0.0 and max(values) < 1.0
    assert 0.45 < statistics.fmean(values) < 0.55
    assert cover.uniform(b"\xff" * 8) < 1.0 and cover.uniform(b"\x00" * 8) == 0.0
    with pytest.raises(ValueError):
        cover.uniform(b"\x00" * 7)


def test_the_gaps_are_uniform_between_half_and_one_and_a_half_slots_and_the_rate_holds() -> None:
    times = run_full(4000)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.5 * T and max(gaps) <= 1.5 * T
    assert min(gaps) < 0.52 * T and max(gaps) > 1.48 * T  # the whole spread is used
    rate = len(gaps) / (times[-1] - times[0])
    figure("cover schedule rate at 10/s (4000 slots)", round(rate, 3), "frames/s")
    assert abs(rate - RATE) / RATE < 0.03
    # uniform: each quarter of [0.5 T, 1.5 T] holds about a quarter of the gaps
    quarters = [
        sum(1 for g in gaps if 0.5 * T + q * T / 4 <= g < 0.5 * T + (q + 1) * T / 4) for q in range(4)
    ]
    assert all(abs(n / len(gaps) - 0.25) < 0.03 for n in quarters), quarters


def test_slot_times_are_absolute_processing_delays_do_not_accumulate() -> None:
    us = iter(draws())
    slots = cover.first(POLICY, 0.0, next(us))
    late = []
    for _ in range(1000):  # the shell gets round to each slot 30 ms late
        now = slots.at + 0.03
        slots = cover.following(POLICY, slots, now, now, False, next(us))
        late.append(slots.at)
    on_time = run_full(1000)[1:]
    assert late == on_time  # the same slots, not 1000 x 30 ms later


def test_a_slot_missed_by_more_than_a_gap_is_not_made_up() -> None:
    slots = Slots(10.0, Mode.FULL)
    after = cover.following(POLICY, slots, 100.0, 100.0, False, 0.5)
    assert after.at == 100.0  # one frame now, not 900 to catch up
    assert cover.following(POLICY, after, 100.0, 100.0, False, 0.5).at == pytest.approx(100.0 + T)


def test_a_flash_waits_at_most_one_slot_from_any_moment() -> None:
    """Queued at an arbitrary time, a frame goes at the next slot: never more than 1.5 T."""
    times = run_full(2000)
    rng = FakeRng(b"flash moments")
    waits = []
    for _ in range(500):
        at = times[0] + cover.uniform(rng.bytes(8)) * (times[-1] - times[0])
        waits.append(min(t for t in times if t >= at) - at)
    figure("cover: longest FLASH wait at 10/s (500 moments)", round(max(waits) / T, 3), "slots")
    assert max(waits) <= 1.5 * T
    assert statistics.fmean(waits) < T


def test_the_flash_policy() -> None:
    assert not CoverPolicy(flash="slot").immediate("FLASH")
    assert CoverPolicy(flash="immediate").immediate("FLASH")
    assert not CoverPolicy(flash="immediate").immediate("ROUTINE")
    assert not CoverPolicy(flash="immediate").immediate(None)


def test_the_circuit_idles_when_the_peer_is_silent_and_the_full_rate_returns_at_once() -> None:
    us = iter(draws(b"idle"))
    slots = cover.first(POLICY, 0.0, next(us))
    heard = 0.0  # the peer was heard at 0, then never again
    times = []
    while slots.at < 60.0:
        times.append((slots.at, slots.mode))
        slots = cover.following(POLICY, slots, slots.at, heard, False, next(us))
    full = [t for t, m in times if m is Mode.FULL]
    idle = [t for t, m in times if m is Mode.IDLE]
    assert max(full) <= POLICY.idle_after + 1.5 * T  # full rate while the peer was heard within 5 s
    gaps = [b - a for a, b in itertools.pairwise(idle)]
    assert all(1.0 <= g <= 3.0 for g in gaps)  # then one per idle_interval (2 s, +-50 %)
    figure("cover: frames in 55 s of idle at idle_interval 2 s", len(idle), "frames")
    assert 15 <= len(idle) <= 40
    # A real frame is queued while idle: the next slot is at most one full-rate gap away.
    idle_slots = Slots(slots.at, Mode.IDLE)
    now = slots.at - 1.9
    hurried = cover.hurry(POLICY, idle_slots, now, next(us))
    assert hurried.mode is Mode.FULL and now + 0.5 * T <= hurried.at <= now + 1.5 * T
    # ... and the slot after it stays at the full rate while the frame waits or the peer talks.
    after = cover.following(POLICY, hurried, hurried.at, heard, True, next(us))
    assert after.mode is Mode.FULL and after.at - hurried.at <= 1.5 * T
    heard_again = cover.following(POLICY, hurried, hurried.at, hurried.at, False, next(us))
    assert heard_again.mode is Mode.FULL
    # Nothing queued and the peer still silent: back to idle.
    assert cover.following(POLICY, hurried, hurried.at, heard, False, next(us)).mode is Mode.IDLE
    # hurry never pushes a slot later, and leaves a full-rate circuit alone.
    soon = Slots(now + 0.01, Mode.IDLE)
    assert cover.hurry(POLICY, soon, now, 0.99).at == soon.at
    assert cover.hurry(POLICY, Slots(5.0, Mode.FULL), 0.0, 0.0) == Slots(5.0, Mode.FULL)


def test_rate_zero_is_off() -> None:
    off = CoverPolicy(rate=0.0)
    assert not off.on
    assert cover.mode(off, 0.0, 0.0, True) is Mode.OFF
    assert cover.following(off, Slots(1.0, Mode.FULL), 2.0, 2.0, False, 0.5).mode is Mode.OFF
    assert cover.hurry(off, Slots(9.0, Mode.IDLE), 2.0, 0.5) == Slots(9.0, Mode.IDLE)


def test_the_product_default_is_cover_on_at_one_frame_per_second() -> None:
    config = StationConfig()
    assert config.cover_rate == 1.0
    assert config.cover_flash == "slot"
    assert config.cover_idle_after == 60.0 and config.cover_idle_interval == 60.0


def test_the_cover_settings_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "station.toml"
    path.write_text(
        '[station]\ncover_rate = 10\ncover_flash = "immediate"\n'
        "cover_idle_after = 5\ncover_idle_interval = 30\n"
    )
    config = StationConfig.load(path)
    assert (config.cover_rate, config.cover_flash) == (10.0, "immediate")
    assert (config.cover_idle_after, config.cover_idle_interval) == (5.0, 30.0)
    assert StationConfig.load(path, cover_rate=0).cover_rate == 0.0  # the flag: cover off
    for body, named in [
        ("cover_rate = -1", "cover_rate.*0 \\(cover traffic off\\)"),
        ('cover_rate = "fast"', "cover_rate"),
        ("cover_rate = true", "cover_rate"),
        ("cover_rate = 1e6", "cover_rate.*1000"),
        ("cover_rate = nan", "cover_rate"),
        ('cover_flash = "later"', 'cover_flash.*"slot".*"immediate"'),
        ("cover_idle_after = 0", "cover_idle_after"),
        ('cover_idle_interval = "x"', "cover_idle_interval"),
    ]:
        path.write_text(f"[station]\n{body}\n")
        with pytest.raises(ConfigError, match=named):
            StationConfig.load(path)
