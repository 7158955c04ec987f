"""Delivery of station alarms to the operators' own tooling: a command, a webhook, or both.

Theory of operation
-------------------
The station's alarm state machine decides *that* something is wrong (a circuit or the whole
line is down, a precedence deadline passed, a sequence gap stayed open); this module only
carries each alarm event, a JSON-ready dict, to the *sinks* the operators configured. A
raise and its later clear are two separate events.

:meth:`AlarmDispatcher.dispatch` never blocks and never fails because a sink is down: it
snapshots the event (so later changes to the caller's dict cannot alter what is sent) and
appends it to one *lane* per sink. Each lane is a task that delivers its events strictly in
order, retrying a failed delivery with exponential backoff (doubling, capped) up to
``max_attempts`` times before giving up on that event and moving on to the next. Lanes are
independent, so a dead webhook never delays the command sink, and vice versa.

Every (event, sink) pair gets exactly one final outcome through ``on_result``: delivered,
given up after the last attempt, dropped because too many events were already waiting for
that sink, or not delivered because the dispatcher was shut down. The station records these
outcomes, so an operator can see that an alarm was raised but nobody outside heard it.

Delivery is at-least-once: a webhook that stored the event but whose answer was lost gets it
again. Receivers deduplicate on ``id`` plus ``state`` if they care.

Each sink bounds its own attempt with a timeout (a hung script is killed, with its process
group; a silent web server is abandoned), and :meth:`AlarmDispatcher.close` is bounded too,
so alarm delivery can never keep a station from stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from backchannel.aio import TaskSet
from backchannel.errors import ConfigError, InvalidArgument, TransportError
from backchannel.station.backoff import next_backoff

log = logging.getLogger("backchannel.alarms")

#: An alarm event as the station hands it over: a dict that ``json.dumps`` accepts.
Alarm = dict[str, Any]
#: ``on_result(alarm, sink_name, ok, detail)``: the final outcome of one event at one sink.
ResultCallback = Callable[[Alarm, str, bool, str], None]

#: The only inherited environment variables a sink command gets (plus ``LC_*``): what a program
#: needs to run and to print in the operator's language, nothing of the station's own.
COMMAND_ENVIRONMENT = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"})
#: How much of a failing command's stderr goes into the error message.
STDERR_TAIL = 400


class AlarmSinkError(TransportError):
    """An alarm could not be handed to a configured alarm command or webhook.

    The station retries a few times with growing pauses, then gives up on that alarm and
    records the failure. Check that the command runs by hand (it gets the alarm as JSON on
    stdin and must exit 0), or that the webhook URL answers a POST with a 2xx status.
    """

    code = "alarm_sink_failed"


@runtime_checkable
class Sink(Protocol):
    """Somewhere alarm events go. ``deliver`` raises (any exception) when it did not get through."""

    name: str

    async def deliver(self, alarm: Alarm) -> None: ...


# ---- pure decision bits ----------------------------------------------------------------


def retry_delays(first: float, maximum: float, max_attempts: int) -> list[float]:
    """The pauses between the ``max_attempts`` attempts at one event (one fewer than attempts).

    Their sum is how long a dead sink holds up the events queued behind one event, which is
    what an operator tuning ``max_attempts`` wants to know.
    """
    delays: list[float] = []
    delay = min(first, maximum)
    for _ in range(max_attempts - 1):
        delays.append(delay)
        delay = next_backoff(delay, maximum)
    return delays


def alarm_environment(alarm: Alarm, inherited: dict[str, str]) -> dict[str, str]:
    """The environment of a sink command: a few harmless inherited variables, plus the alarm's gist.

    The three variables let a one-line shell hook branch on the alarm without parsing JSON.
    Everything else the station inherited is left out, by an allow-list
    (:data:`COMMAND_ENVIRONMENT`): the passphrase (in case it is still there), operator
    passwords, tokens, proxies. A hook script is often written or copied by someone who should
    not be able to open the keystore.
    """
    env = {k: v for k, v in inherited.items() if k in COMMAND_ENVIRONMENT or k.startswith("LC_")}
    for key in ("kind", "state", "line"):
        value = alarm.get(key)
        env[f"BACKCHANNEL_ALARM_{key.upper()}"] = "" if value is None else str(value)
    return env


def snapshot(alarm: Alarm) -> Alarm:
    """A private deep copy of the event that is guaranteed to serialise.

    Copying at dispatch time means a caller that reuses or mutates its dict (for instance to
    turn a raise into a clear) cannot change an event that is still waiting to be sent; failing
    here rather than in a sink lane surfaces a non-JSON field in the caller's tests.
    """
    if not isinstance(alarm, dict):
        raise InvalidArgument(f"an alarm must be a dict, not {type(alarm).__name__}")
    try:
        copy: Alarm = json.loads(json.dumps(alarm, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"the alarm cannot be sent as JSON: {exc}") from None
    return copy


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


# ---- the command sink ------------------------------------------------------------------


class CommandSink:
    """Run an operator's program for every alarm event: the most flexible hook (mail, pager, SMS).

    The program gets the event as one JSON document (plus a newline) on stdin and
    ``BACKCHANNEL_ALARM_KIND``, ``_STATE`` and ``_LINE`` in its environment; exit status 0
    means delivered. It is run without a shell, in a new session, so that on a timeout the
    whole process group (a shell script's children too) is killed and nothing lingers.
    """

    def __init__(self, argv: list[str], timeout: float = 10.0) -> None:
        if not argv or not argv[0] or not all(isinstance(a, str) for a in argv):
            raise ConfigError("the alarm command must be a non-empty list of strings (program first)")
        if timeout <= 0:
            raise ConfigError("the alarm command timeout must be positive")
        self.argv = list(argv)
        self.timeout = timeout
        self.name = f"command {os.path.basename(argv[0])}"

    async def deliver(self, alarm: Alarm) -> None:
        data = (json.dumps(alarm, ensure_ascii=False) + "\n").encode("utf-8")
        # stderr goes to a file, not a pipe: asyncio waits for a pipe's end of file as well as
        # the exit, and a hook that leaves a daemon behind (which keeps the pipe open) would
        # otherwise count as hung, or keep this lane waiting after the kill.
        with tempfile.TemporaryFile() as stderr:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                    env=alarm_environment(alarm, dict(os.environ)),
                    start_new_session=True,
                )
            except OSError as exc:  # missing program, not executable, ...
                raise AlarmSinkError(f"alarm command {self.argv[0]!r} cannot be started: {exc}") from None
            try:
                async with asyncio.timeout(self.timeout):
                    await proc.communicate(data)
            except TimeoutError:
                raise AlarmSinkError(
                    f"alarm command {self.argv[0]!r} did not finish within {self.timeout:g} s and was killed"
                ) from None
            finally:
                # Also on cancellation (dispatcher shutdown): never leave the hook running.
                if proc.returncode is None:
                    _kill_group(proc)
                    await proc.wait()
            code = await proc.wait()  # already exited: this only gives mypy the int
            if code != 0:
                stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL))
                tail = stderr.read().decode("utf-8", "replace").strip()
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                raise AlarmSinkError(f"alarm command {self.argv[0]!r} {how}" + (f": {tail}" if tail else ""))


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the command and everything it started (it leads its own session, see ``deliver``)."""
    if sys.platform == "win32":  # pragma: no cover - stations run on POSIX
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


# ---- the webhook sink ------------------------------------------------------------------

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_RESERVED_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


class WebhookSink:
    """POST every alarm event as JSON to an operator's URL (chat bridges, incident tools, SIEM).

    Spoken with ``httpx`` (a maintained HTTP client, rather than HTTP/1.1 by hand), one short
    client per alarm with ``Connection: close``, so no connection state survives between
    alarms, which are rare. A 2xx answer means delivered; anything else, a redirect included
    (never followed: a webhook that moved is a configuration to fix, and following it could
    carry the alarm and its credentials elsewhere), a network error or no answer within
    ``timeout`` (the whole exchange) is a failure. ``https`` uses the system's default
    certificate checks. Credentials in the URL (``http://user:pass@host/``) are sent as HTTP
    basic authentication. The environment is not consulted (``trust_env=False``): no proxy
    variable or ``.netrc`` of the station's user decides where alarms go.
    """

    def __init__(self, url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the alarm webhook must be an http:// or https:// URL, not {url!r}")
        try:
            parts.port  # noqa: B018 - only its validation matters here
        except ValueError:
            raise ConfigError(f"the alarm webhook URL has an invalid port: {url!r}") from None
        if timeout <= 0:
            raise ConfigError("the alarm webhook timeout must be positive")
        self.url = url
        self.timeout = timeout
        hostport = parts.netloc.rpartition("@")[2]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not (hostport + target).isascii() or any(c.isspace() for c in hostport + target):
            raise ConfigError(
                f"the alarm webhook URL must be ASCII without spaces (percent-encoded): {url!r}"
            )
        # The request goes to the URL without its userinfo (sent as basic authentication below).
        self._target = f"{parts.scheme}://{hostport}{target}"
        # The name shows up in logs and in the station's record; keep secrets (credentials,
        # tokens in the path or query, as some chat webhooks have) out of it.
        self.name = f"webhook {parts.scheme}://{hostport}"
        # Whatever could leak through an exception's text into a log or the alarm record.
        self._secrets = sorted(
            {
                s
                for s in (
                    url,
                    self._target,
                    parts.username,
                    parts.password,
                    unquote(parts.username or ""),
                    unquote(parts.password or ""),
                    parts.query,
                    parts.path if len(parts.path) > 1 else "",
                )
                if s
            },
            key=len,
            reverse=True,
        )
        self._auth = (
            (unquote(parts.username), unquote(parts.password or "")) if parts.username is not None else None
        )
        merged: dict[str, tuple[str, str]] = {
            "content-type": ("Content-Type", "application/json"),
            "user-agent": ("User-Agent", "backchannel-alarms/1"),
            "connection": ("Connection", "close"),
        }
        for key, value in (headers or {}).items():
            if not _TOKEN.match(key) or key.lower() in _RESERVED_HEADERS:
                raise ConfigError(f"the alarm webhook header {key!r} cannot be set")
            if any(c in value for c in "\r\n\0") or not value.isascii():
                raise ConfigError(f"the alarm webhook header {key!r} has a value that cannot be sent")
            merged[key.lower()] = (key, value)
        if "authorization" in merged:  # an explicit header wins over the URL's userinfo, as before
            self._auth = None
        self._headers = dict(merged.values())

    def _scrub(self, text: str) -> str:
        """``text`` without the URL's credentials, path or query (an exception may quote them)."""
        for secret in self._secrets:
            text = text.replace(secret, "…")
        return text

    async def deliver(self, alarm: Alarm) -> None:
        import httpx  # here: only stations with a webhook pay for importing it

        # httpx logs every request's full URL at INFO: a token in its query must not reach the log.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)

        body = json.dumps(alarm, ensure_ascii=False).encode("utf-8")
        try:
            async with (
                asyncio.timeout(self.timeout),
                httpx.AsyncClient(
                    timeout=self.timeout,
                    follow_redirects=False,
                    verify=True,
                    trust_env=False,
                    auth=self._auth,
                ) as client,
            ):
                response = await client.post(self._target, content=body, headers=self._headers)
        except (TimeoutError, httpx.TimeoutException):
            raise AlarmSinkError(f"{self.name} gave no answer within {self.timeout:g} s") from None
        except (httpx.ConnectError, OSError) as exc:  # refused, reset, DNS, TLS
            raise AlarmSinkError(f"{self.name} could not be reached: {self._scrub(_describe(exc))}") from None
        except httpx.HTTPError as exc:  # closed before answering, not HTTP, ...
            raise AlarmSinkError(
                f"{self.name} broke off the exchange: {self._scrub(_describe(exc))}"
            ) from None
        if not 200 <= response.status_code < 300:
            reason = response.reason_phrase
            raise AlarmSinkError(f"{self.name} answered {response.status_code} {reason}".rstrip())


# ---- configuration ---------------------------------------------------------------------


def sinks_from_config(command: list[str] | None, webhook: str | None) -> list[Sink]:
    """The sinks the station's configuration asks for; an empty list or string means none.

    Raises ``ConfigError`` at start-up for a sink that could never work (an empty program
    name, a URL that is not http(s)), rather than at the first alarm.
    """
    sinks: list[Sink] = []
    if command:
        sinks.append(CommandSink(command))
    if webhook:
        sinks.append(WebhookSink(webhook))
    return sinks


# ---- the dispatcher --------------------------------------------------------------------


@dataclass(eq=False)
class _Lane:
    """One sink's ordered queue and the task that works through it."""

    sink: Sink
    pending: deque[Alarm] = field(default_factory=deque)
    current: Alarm | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class AlarmDispatcher:
    """Queue alarm events to every sink, retry each sink on its own, report every final outcome.

    ``max_pending`` bounds what waits per sink: a sink that stays dead through an alarm storm
    would otherwise hold an ever-growing queue, each event costing the whole retry schedule.
    The oldest waiting event is dropped (and reported) first, since the newest say the most
    about the line's current state.
    """

    def __init__(
        self,
        sinks: Iterable[Sink],
        *,
        max_attempts: int = 8,
        first_backoff: float = 1.0,
        max_backoff: float = 60.0,
        on_result: ResultCallback | None = None,
        max_pending: int = 1000,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError("alarm delivery needs at least one attempt")
        if first_backoff < 0 or max_backoff < 0:
            raise ConfigError("alarm retry pauses cannot be negative")
        if max_pending < 1:
            raise ConfigError("alarm delivery must let at least one event wait per sink")
        self._lanes = [_Lane(sink) for sink in sinks]
        self._max_attempts = max_attempts
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._on_result = on_result
        self._max_pending = max_pending
        self._closing = False
        self._tasks = TaskSet("alarm dispatcher")

    @property
    def sinks(self) -> list[Sink]:
        return [lane.sink for lane in self._lanes]

    def dispatch(self, alarm: Alarm) -> None:
        """Queue one event for every sink and return at once. Call it from the event loop.

        Raises ``InvalidArgument`` only when the event itself cannot be serialised; a sink's
        trouble is never the caller's: it ends in ``on_result``.
        """
        event = snapshot(alarm)
        for lane in self._lanes:
            if self._closing:
                self._report(event, lane.sink.name, False, "not delivered: alarm delivery is shutting down")
                continue
            if len(lane.pending) >= self._max_pending:
                dropped = lane.pending.popleft()
                self._report(
                    dropped,
                    lane.sink.name,
                    False,
                    f"dropped: {self._max_pending} newer events were waiting for this sink",
                )
            lane.pending.append(event)
            if lane.task is None:
                # (close() waits for the lanes, then cancels them, and logs a failed one)
                lane.task = self._tasks.spawn(self._run(lane), f"alarm lane {lane.sink.name}", report=False)
            lane.wake.set()

    async def close(self, timeout: float = 5.0) -> None:
        """Let queued events go out for up to ``timeout`` seconds, then cancel what is left.

        Whatever was not delivered by then is reported through ``on_result`` as not delivered,
        so the station's record stays complete. Bounded: a sink that ignores cancellation is
        abandoned after one more second rather than holding up the station's shutdown.
        """
        self._closing = True
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for lane in self._lanes:
            lane.wake.set()
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=timeout)
            for task in unfinished:
                task.cancel()
            if unfinished:
                _, stuck = await asyncio.wait(unfinished, timeout=1.0)
                for task in stuck:
                    log.error("alarm delivery (%s) ignored cancellation; abandoned", task.get_name())
        for lane in self._lanes:
            if lane.task is not None and lane.task.done() and not lane.task.cancelled():
                exc = lane.task.exception()
                if exc is not None:  # a bug in this module; do not lose it
                    log.error("alarm lane %s failed", lane.sink.name, exc_info=exc)
            left = ([lane.current] if lane.current is not None else []) + list(lane.pending)
            lane.current = None
            lane.pending.clear()
            for event in left:
                self._report(event, lane.sink.name, False, "not delivered: alarm delivery was shut down")

    async def _run(self, lane: _Lane) -> None:
        while True:
            while not lane.pending:
                if self._closing:
                    return
                lane.wake.clear()
                await lane.wake.wait()
            event = lane.pending.popleft()
            lane.current = event
            ok, detail = await self._deliver(lane.sink, event)
            lane.current = None
            self._report(event, lane.sink.name, ok, detail)

    async def _deliver(self, sink: Sink, event: Alarm) -> tuple[bool, str]:
        """Try one event at one sink until it gets through or the attempts run out."""
        delays = retry_delays(self._first_backoff, self._max_backoff, self._max_attempts)
        last = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await sink.deliver(event)
            except Exception as exc:  # any sink failure is retried; cancellation is not caught
                last = _describe(exc)
                if not isinstance(exc, AlarmSinkError):
                    log.warning("alarm sink %s raised unexpectedly", sink.name, exc_info=exc)
                if attempt == self._max_attempts:
                    break
                delay = delays[attempt - 1]
                log.warning(
                    "alarm %s to %s failed (attempt %d of %d), retrying in %g s: %s",
                    event.get("id"),
                    sink.name,
                    attempt,
                    self._max_attempts,
                    delay,
                    last,
                )
                await asyncio.sleep(delay)
            else:
                return True, "delivered" if attempt == 1 else f"delivered at attempt {attempt}"
        return False, f"gave up after {self._max_attempts} attempts: {last}"

    def _report(self, event: Alarm, sink_name: str, ok: bool, detail: str) -> None:
        log.log(
            logging.INFO if ok else logging.ERROR,
            "alarm %s (%s %s) to %s: %s",
            event.get("id"),
            event.get("kind"),
            event.get("state"),
            sink_name,
            detail,
        )
        if self._on_result is None:
            return
        try:
            self._on_result(event, sink_name, ok, detail)
        except Exception:  # the station's recorder failing must not stop the lane
            log.exception("recording the outcome of alarm %s failed", event.get("id"))
