"""Cover traffic's schedule: when each circuit sends its next frame (pure; PROTOCOL §10.7).

Theory of operation
-------------------
Every circuit (a line's frames through one relay) sends at *slots*. At each slot the shell
sends the circuit's next real wire frame if one is queued, else a cover frame, so a relay and
a network observer see the same stream whether the operators talk or not.

The gaps between slots are drawn i.i.d. **uniform in [0.5 T, 1.5 T]** (T = 1 / rate):

- a real frame never waits more than one gap (1.5 T), so a FLASH's wait is bounded, where
  Poisson gaps (Loopix) would make it unbounded;
- the spread (T wide) drowns the sender's millisecond processing jitter, so the moment a real
  frame was queued does not show in the timing, where fixed spacing would reveal it;
- slot times are absolute (each drawn from the previous *slot time*, not from when the shell
  got round to it), so processing delays never accumulate into a drift; a slot missed by more
  than a gap (a suspended machine) is not made up with a burst: the next one is "now".

**Idle pause.** While the peer has sent us nothing (cover or real) for ``idle_after`` seconds,
the circuit drops to one frame per ``idle_interval`` (same uniform spread), so an absent peer's
mailboxes are not filled at full rate. A real frame to send, or the peer heard again, brings
the full rate back at once: the next slot is at most one full-rate gap away (:func:`hurry`).

**FLASH.** ``flash = "slot"``: a FLASH takes the next slot like any frame (waits at most one
gap). ``"immediate"``: the circuit's queue up to and including the FLASH goes at once, off
schedule (faster, and the extra frame shows the FLASH to the relay and the network).

The rng is injected as :func:`uniform` of random bytes, and time as ``now`` arguments, so the
schedule is reproducible in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: What ``cover_flash`` may say.
FLASH_POLICIES = ("slot", "immediate")
#: Highest cover rate a line may ask for (frames per second per circuit).
MAX_RATE = 1000.0
#: Random bytes one draw of :func:`uniform` takes.
DRAW_BYTES = 8


class Mode(StrEnum):
    """The rate a circuit sends at: ``full`` (the line's rate), ``idle`` (the peer was not
    heard from for ``idle_after``: one frame per ``idle_interval``), ``off`` (no cover)."""

    FULL = "full"
    IDLE = "idle"
    OFF = "off"


@dataclass(frozen=True)
class CoverPolicy:
    """One line's cover settings (the station's ``[station] cover_*``, or the line's own)."""

    rate: float = 1.0
    flash: str = "slot"
    idle_after: float = 60.0
    idle_interval: float = 60.0

    @property
    def on(self) -> bool:
        return self.rate > 0

    def immediate(self, precedence: str | None) -> bool:
        """Whether this frame goes at once, off schedule (a FLASH under ``"immediate"``)."""
        return self.flash == "immediate" and precedence == "FLASH"

    def mean_gap(self, mode: Mode) -> float:
        return 1.0 / self.rate if mode is Mode.FULL else self.idle_interval


@dataclass(frozen=True)
class Slots:
    """A circuit's schedule: the time of its next slot and the mode it was drawn in."""

    at: float
    mode: Mode


def uniform(random_bytes: bytes) -> float:
    """A number in [0, 1) from ``DRAW_BYTES`` random bytes (53 bits, as ``random.random``)."""
    if len(random_bytes) < DRAW_BYTES:
        raise ValueError(f"uniform() needs {DRAW_BYTES} random bytes")
    return (int.from_bytes(random_bytes[:DRAW_BYTES], "big") >> 11) / float(1 << 53)


def gap(mean: float, u: float) -> float:
    """A gap uniform in [0.5 mean, 1.5 mean] for ``u`` uniform in [0, 1)."""
    return mean * (0.5 + u)


def mode(policy: CoverPolicy, now: float, last_heard: float | None, real_waiting: bool) -> Mode:
    """The rate the circuit should send at now (the idle pause rule)."""
    if not policy.on:
        return Mode.OFF
    if real_waiting or (last_heard is not None and now - last_heard < policy.idle_after):
        return Mode.FULL
    return Mode.IDLE


def first(policy: CoverPolicy, now: float, u: float) -> Slots:
    """The schedule of a circuit whose cover starts now (at the full rate: the peer gets
    ``idle_after`` to be heard before the circuit idles)."""
    return Slots(now + gap(policy.mean_gap(Mode.FULL), u), Mode.FULL)


def following(
    policy: CoverPolicy, slots: Slots, now: float, last_heard: float | None, real_waiting: bool, u: float
) -> Slots:
    """The slot after ``slots.at`` (just used): one gap later, at the rate the idle rule says
    now; never in the past (a slot missed by more than a gap is not made up)."""
    current = mode(policy, now, last_heard, real_waiting)
    if current is Mode.OFF:
        return Slots(now, Mode.OFF)
    return Slots(max(slots.at + gap(policy.mean_gap(current), u), now), current)


def hurry(policy: CoverPolicy, slots: Slots, now: float, u: float) -> Slots:
    """A real frame was queued, or the peer was heard again: an idle circuit returns to the
    full rate at once (its next slot at most one full-rate gap away); a full one is unchanged."""
    if slots.mode is not Mode.IDLE or not policy.on:
        return slots
    return Slots(min(slots.at, now + gap(policy.mean_gap(Mode.FULL), u)), Mode.FULL)
