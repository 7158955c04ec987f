"""Station configuration: a TOML file (``station.toml`` in the station directory), then flags.

Unknown keys and wrong types are refused with a message naming the key, so a typo in a
config file is never silently ignored.

```toml
[station]
relay = "ws://127.0.0.1:7400"        # default relay for invitations
link_test_interval = 3600            # seconds between link tests (the 1963 line: hourly)
rotate_every = 86400                 # seconds between mailbox rotations of each line (0: never)
alarm_command = ["/usr/local/bin/page-duty-officer"]
alarm_webhook = "http://127.0.0.1:9000/alarms"
relay_policy = ["ask", "relay.example.org"]   # relays the peer may add: these; ask for others
cover_rate = 1.0                     # cover frames/s per circuit (0: off); PROTOCOL §10.7
cover_flash = "slot"                 # or "immediate": a FLASH goes at once, off schedule

[station.deadlines]                  # seconds until the acknowledged receipt is due
FLASH = 120
IMMEDIATE = 600

[station.lines.moscow]               # per line, by the line's local name
refuse_flash_unverified = true       # no FLASH until the safety number is verified

[station.lines.moscow.deadlines]
FLASH = 60

[station.metrics]                    # Prometheus metrics on a listener of their own
listen = "127.0.0.1:9480"
token = "a-long-random-bearer-token"  # optional on loopback, required beyond
```
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backchannel.errors import ConfigError, ProtocolError
from backchannel.proto.cover import FLASH_POLICIES, MAX_RATE
from backchannel.proto.relay_pin import split_pin
from backchannel.station.relay_policy import parse_policy
from backchannel.tls import is_loopback
from backchannel.tomlfile import read_table

PRECEDENCES = ("FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE")
DEFAULT_DEADLINES = {"FLASH": 120.0, "IMMEDIATE": 600.0, "PRIORITY": 3600.0, "ROUTINE": 86400.0}


@dataclass(frozen=True)
class StationConfig:
    #: The relays used for new invitations when none is given (one circuit each).
    relays: tuple[str, ...] = ()
    #: How long an invitation may wait to be accepted.
    invitation_ttl_hours: float = 168.0
    #: Longest pause between retries of an unsent frame.
    retry_max_seconds: float = 5.0
    #: Frames in flight to relays at once (pipelining window).
    send_window: int = 512
    #: Seconds a relay has to answer a request before the link counts it as lost.
    relay_request_timeout: float = 10.0
    #: Seconds between link tests on every line (the 1963 hotline was tested hourly).
    link_test_interval: float = 3600.0
    #: Seconds between signed checkpoints of each line's record.
    checkpoint_interval: float = 3600.0
    #: Seconds after a relay stored a frame that the peer may still report lacking it before
    #: the frame is sent again end to end (a relay lost it; see ``proto.engine.recovery``).
    resend_after: float = 60.0
    #: Seconds until the *acknowledged* receipt is due, by precedence.
    deadlines: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    #: Per-line overrides of ``deadlines``, by the line's local name.
    line_deadlines: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Two-person rule, by line name: "flash" (FLASH needs a releaser) or "all"; default none.
    line_release: dict[str, str] = field(default_factory=dict)
    #: Refuse FLASH on a line whose safety number was never verified (station-wide default;
    #: ``line_refuse_flash`` overrides it per line). Enforced by the station for every caller.
    refuse_flash_unverified: bool = False
    #: Per-line ``refuse_flash_unverified``, by the line's local name.
    line_refuse_flash: dict[str, bool] = field(default_factory=dict)
    #: Raise a ``flash_received`` alarm (through the alarm command/webhook) on each incoming FLASH.
    alarm_on_flash: bool = False
    #: Seconds an accepted invitation may wait for the inviter's welcome before the line is
    #: *failed* with an alarm (the invitation was already used, leaked, or the inviter is gone).
    pairing_timeout: float = 60.0
    #: Run this command (argv) with each alarm event as JSON on stdin.
    alarm_command: tuple[str, ...] = ()
    #: POST each alarm event as JSON to this http(s) URL.
    alarm_webhook: str | None = None
    #: Which relays the *peer* may add to a line in band (see ``station.relay_policy``):
    #: URLs or hosts allowed at once, and "ask" to hold any other for an operator's approval.
    relay_policy: tuple[str, ...] = ("ask",)
    #: Whether the peer may propose relays on loopback, private or link-local addresses at all
    #: (held or allowed by ``relay_policy`` then); an address named in ``relay_policy`` always may.
    allow_private_relays: bool = False
    #: Relay connections the station keeps at most; a peer's proposal beyond is refused.
    max_links: int = 32
    #: Frames (and bytes) one relay may have handed over and not yet seen processed; beyond,
    #: the station stops reading from that relay until it catches up (backpressure).
    receive_frames: int = 512
    receive_bytes: int = 4 * 1024 * 1024
    #: Useless frames (forged, misaddressed, repeated) from one relay within 10 s that make the
    #: station suspend that relay: its circuits go down, with an alarm naming it.
    flood_limit: int = 2000
    #: Seconds a flooding relay is suspended the first time (doubling, at most an hour).
    flood_suspend_seconds: float = 60.0
    #: Whether plain ``ws://`` relay URLs beyond loopback may be used (frames and the relay's
    #: access token cross the network in clear): ``station run --insecure-plain``.
    allow_plain: bool = False
    #: Seconds between rotations of each line's inbound mailboxes (fresh ids and capabilities at
    #: every relay, agreed in band; jittered by ±10 % per rotation); 0: never on a schedule.
    rotate_every: float = 86_400.0
    #: Seconds a rotated mailbox is still read after the peer showed it applied the rotation,
    #: before it is deleted at its relay (frames the peer sent there before are drained).
    rotation_drain_seconds: float = 60.0
    #: ``HOST:PORT`` of the station's Prometheus listener (``[station.metrics] listen``; "": none).
    metrics_listen: str = ""
    #: Its bearer token (``[station.metrics] token``); required when it listens beyond loopback.
    metrics_token: str = field(default="", repr=False)
    #: Cover traffic (PROTOCOL §10.7): frames per second each circuit sends whether or not
    #: anyone talks, real frames taking the place of cover ones; 0 turns it off. On by default:
    #: without it the relays see when, and how much, the line is used.
    cover_rate: float = 1.0
    #: "slot": a FLASH takes the circuit's next slot (waits at most 1.5 / cover_rate s);
    #: "immediate": it goes at once, off schedule (faster; the extra frame shows the FLASH).
    cover_flash: str = "slot"
    #: Seconds without any frame from the peer after which a line's cover drops to the idle
    #: trickle (the peer is away: its mailboxes are not filled at full rate).
    cover_idle_after: float = 60.0
    #: Seconds between cover frames (per circuit) while idle.
    cover_idle_interval: float = 60.0

    @classmethod
    def load(cls, path: Path | None, *, required: bool = False, **overrides: Any) -> StationConfig:
        """Defaults, then the ``[station]`` table of ``path``, then ``overrides`` (flags).

        A missing file is an error when ``required`` (the operator named it with ``--config``),
        and means "all defaults" otherwise (the default ``station.toml`` of the directory).
        """
        config = cls()
        if path is not None:
            config = config.merge(read_table(path, "station", required=required), str(path))
        return config.merge({k: v for k, v in overrides.items() if v is not None}, "flags")

    def merge(self, values: dict[str, Any], where: str) -> StationConfig:
        known = {f.name for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key == "lines":
                changes["line_deadlines"] = _line_deadlines(value, f"{where}: 'lines'")
                changes["line_release"] = _line_release(value, f"{where}: 'lines'")
                changes["line_refuse_flash"] = _line_refuse_flash(value, f"{where}: 'lines'")
                continue
            if key == "metrics":
                changes.update(_metrics_table(value, f"{where}: 'metrics'"))
                continue
            name = {"relay": "relays"}.get(key, key)
            if name not in known or name in ("line_deadlines", "line_release", "line_refuse_flash"):
                raise ConfigError(f"{where}: unknown station setting {key!r}")
            changes[name] = _VALIDATORS[name](value, f"{where}: {key!r}")
        config = replace(self, **changes)
        _check_metrics(config.metrics_listen, config.metrics_token, where)
        return config

    def deadlines_for(self, line_name: str) -> dict[str, float]:
        return {**self.deadlines, **self.line_deadlines.get(line_name, {})}

    def needs_release(self, line_name: str, precedence: str) -> bool:
        """Whether a message must wait for a second operator (the two-person rule)."""
        rule = self.line_release.get(line_name, "none")
        return rule == "all" or (rule == "flash" and precedence == "FLASH")

    def refuses_flash_unverified(self, line_name: str) -> bool:
        """Whether FLASH is refused on this line while its safety number is unverified."""
        return self.line_refuse_flash.get(line_name, self.refuse_flash_unverified)


def _positive(kind: type) -> Callable[[Any, str], Any]:
    def check(value: Any, what: str) -> Any:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise ConfigError(f"{what} must be a {kind.__name__}")
        if value <= 0:
            raise ConfigError(f"{what} must be greater than 0")
        return kind(value)

    return check


def _at_least(minimum: float) -> Callable[[Any, str], float]:
    def check(value: Any, what: str) -> float:
        seconds = float(_positive(float)(value, what))
        if seconds < minimum:
            raise ConfigError(f"{what} must be at least {minimum:g} seconds")
        return seconds

    return check


def _seconds_or_zero(value: Any, what: str) -> float:
    """A duration that may be 0 (``rotate_every = 0``: never; a drain of 0: at once)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what} must be a number of seconds, 0 or more")
    return float(value)


def _at_least_bytes(minimum: int) -> Callable[[Any, str], int]:
    def check(value: Any, what: str) -> int:
        count = int(_positive(int)(value, what))
        if count < minimum:
            raise ConfigError(f"{what} must be at least {minimum} bytes")
        return count

    return check


def _url(value: Any, what: str, schemes: tuple[str, ...] = ("ws://", "wss://")) -> str:
    if not isinstance(value, str) or not value.startswith(schemes):
        raise ConfigError(f"{what} must be a URL starting with {' or '.join(schemes)}")
    if value.startswith(("ws://", "wss://")):
        try:
            split_pin(value)
        except ProtocolError as exc:
            raise ConfigError(f"{what}: {exc}") from None
    return value


def _relays(value: Any, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise ConfigError(f"{what} must be a relay URL or a list of them")
    return tuple(_url(v, what) for v in items)


def _deadlines(value: Any, what: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a table of precedence = seconds")
    out = {}
    for prec, seconds in value.items():
        if prec not in PRECEDENCES:
            raise ConfigError(f"{what}: unknown precedence {prec!r} (use {', '.join(PRECEDENCES)})")
        out[prec] = float(_positive(float)(seconds, f"{what}.{prec}"))
    return out


def _line_deadlines(value: Any, what: str) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a table of line names")
    out = {}
    for line, table in value.items():
        if not isinstance(table, dict) or set(table) - {"deadlines", "release", "refuse_flash_unverified"}:
            raise ConfigError(
                f"{what}.{line} may only hold 'release', 'refuse_flash_unverified' and a [deadlines] table"
            )
        out[line] = _deadlines(table.get("deadlines", {}), f"{what}.{line}.deadlines")
    return out


def _line_release(value: dict[str, Any], what: str) -> dict[str, str]:
    out = {}
    for line, table in value.items():
        rule = table.get("release", "none")
        if rule not in ("none", "flash", "all"):
            raise ConfigError(f'{what}.{line}.release must be "none", "flash" or "all"')
        out[line] = rule
    return out


def _line_refuse_flash(value: dict[str, Any], what: str) -> dict[str, bool]:
    return {
        line: _bool(table["refuse_flash_unverified"], f"{what}.{line}.refuse_flash_unverified")
        for line, table in value.items()
        if "refuse_flash_unverified" in table
    }


def _command(value: Any, what: str) -> tuple[str, ...]:
    items = shlex.split(value) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"{what} must be a command: a list of program and arguments")
    return tuple(items)


def _webhook(value: Any, what: str) -> str:
    return _url(value, what, ("http://", "https://"))


def _relay_policy(value: Any, what: str) -> tuple[str, ...]:
    try:
        return parse_policy(value)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def _metrics_table(value: Any, what: str) -> dict[str, str]:
    """``[station.metrics]``: ``listen`` and ``token``."""
    if not isinstance(value, dict) or set(value) - {"listen", "token"}:
        raise ConfigError(f"{what} may only hold 'listen' and 'token'")
    out = {}
    for key in ("listen", "token"):
        if key in value:
            if not isinstance(value[key], str):
                raise ConfigError(f"{what}.{key} must be a string")
            out[f"metrics_{key}"] = value[key]
    return out


def _check_metrics(listen: str, token: str, where: str) -> None:
    """The metrics listener's address parses; its token is long enough; beyond loopback a
    token is required (the figures are traffic analysis for whoever reads them)."""
    if token and (len(token) < 16 or not token.isascii() or not token.isprintable()):
        raise ConfigError(f"{where}: the metrics token must be at least 16 printable ASCII characters")
    if not listen:
        return
    host, _ = listen_address(listen, f"{where}: metrics listen")
    if not token and not is_loopback(host):
        raise ConfigError(
            f"{where}: metrics listen = {listen!r} is reachable from other machines; set a metrics "
            "token so only your scraper reads the station's traffic figures, or listen on loopback"
        )


def listen_address(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) of a listener, checked; port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT, not {value!r}")
    return host, int(port)


def cover_rate(value: Any, what: str) -> float:
    """A cover rate: frames per second per circuit, 0 (off) to ``MAX_RATE``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_RATE:
        raise ConfigError(
            f"{what} must be a number of frames per second from 0 (cover traffic off) to {MAX_RATE:g}"
        )
    return float(value)


def cover_flash(value: Any, what: str) -> str:
    if value not in FLASH_POLICIES:
        raise ConfigError(
            f'{what} must be "slot" (a FLASH takes the next slot) or "immediate" (it goes at once, '
            "off schedule, and the extra frame shows it)"
        )
    return str(value)


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} must be true or false")
    return value


_VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "relays": _relays,
    "invitation_ttl_hours": _positive(float),
    "retry_max_seconds": _positive(float),
    "send_window": _positive(int),
    "relay_request_timeout": _positive(float),
    "link_test_interval": _positive(float),
    "checkpoint_interval": _positive(float),
    "resend_after": _at_least(1.0),
    "deadlines": lambda value, what: {**DEFAULT_DEADLINES, **_deadlines(value, what)},
    "line_deadlines": _line_deadlines,
    "refuse_flash_unverified": _bool,
    "alarm_on_flash": _bool,
    "pairing_timeout": _positive(float),
    "alarm_command": _command,
    "alarm_webhook": _webhook,
    "relay_policy": _relay_policy,
    "allow_private_relays": _bool,
    "max_links": _positive(int),
    "receive_frames": _positive(int),
    "receive_bytes": _at_least_bytes(64 * 1024),
    "flood_limit": _positive(int),
    "flood_suspend_seconds": _positive(float),
    "allow_plain": _bool,
    "metrics_listen": _string,
    "metrics_token": _string,
    "rotate_every": _seconds_or_zero,
    "rotation_drain_seconds": _seconds_or_zero,
    "cover_rate": cover_rate,
    "cover_flash": cover_flash,
    "cover_idle_after": _at_least(0.1),
    "cover_idle_interval": _at_least(0.1),
}
