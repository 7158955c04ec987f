"""Delivery of station alarms to the operators' own tooling: a command, a webhook, or both.

The station's alarm state machine decides *that* something is wrong (a circuit or the whole
line is down, a precedence deadline passed, a sequence gap stayed open); this module holds the
*sinks* that carry one alarm event, a JSON-ready dict, to where the operators configured:
a command (:class:`CommandSink`) and a webhook (:class:`WebhookSink`). Queueing, ordering and
retries are :mod:`backchannel.station.alarm_dispatch`'s.

Each sink bounds its own attempt with a timeout (a hung script is killed, with its process
group; a silent web server is abandoned), so alarm delivery can never keep a station from
stopping.
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
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

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


def describe(exc: BaseException) -> str:
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
            raise AlarmSinkError(f"{self.name} could not be reached: {self._scrub(describe(exc))}") from None
        except httpx.HTTPError as exc:  # closed before answering, not HTTP, ...
            raise AlarmSinkError(
                f"{self.name} broke off the exchange: {self._scrub(describe(exc))}"
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
