"""Alarm delivery to real sinks: real commands in real processes, a real HTTP server on 127.0.0.1.

Retry pauses are shrunk to tens of milliseconds; assertions on time are lower bounds
(a retry waited at least its backoff) or generous upper bounds (close() returns promptly).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from backchannel import aio
from backchannel.errors import ConfigError, InvalidArgument, TransportError, all_error_classes
from backchannel.station.alarm_dispatch import AlarmDispatcher
from backchannel.station.alarm_sinks import (
    AlarmSinkError,
    CommandSink,
    Sink,
    WebhookSink,
    retry_delays,
    sinks_from_config,
)
from backchannel.station.backoff import next_backoff

from support.figures import figure

ALARM: dict[str, Any] = {
    "id": "a1b2c3",
    "kind": "circuit_down",
    "state": "raised",
    "station": "washington",
    "line": "moscow",
    "circuit": "ws://127.0.0.1:7401",
    "message": "circuit ws://127.0.0.1:7401 of line moscow is down (no contact for 12 s) — Москва",
    "raised_at": 1795638574.4,
    "cleared_at": None,
}


def alarm(n: int, state: str = "raised") -> dict[str, Any]:
    return {**ALARM, "id": f"a{n}", "state": state}


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


async def until(what: str, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Results:
    """What ``on_result`` was told, in order."""

    calls: list[tuple[dict[str, Any], str, bool, str]] = field(default_factory=list)

    def __call__(self, alarm: dict[str, Any], sink: str, ok: bool, detail: str) -> None:
        self.calls.append((alarm, sink, ok, detail))

    def at(self, sink: Sink) -> list[tuple[str, bool, str]]:
        return [(a["id"], ok, detail) for a, name, ok, detail in self.calls if name == sink.name]


# ---- a real web server -----------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float


class Hook:
    """The receiving end of a webhook: records every POST, answers 500 or hangs on request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.fail_next = 0
        self.fail_always = False
        self.hang = False
        self.redirect = ""  # answer 307 to this Location instead
        self.release = threading.Event()
        self.url = ""

    def received(self) -> list[dict[str, Any]]:
        """The alarms it accepted (answered 2xx), in arrival order."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests if r.status == 200]

    def statuses(self) -> list[int]:
        with self.lock:
            return [r.status for r in self.requests]


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                if state.fail_always or state.fail_next > 0:
                    state.fail_next = max(0, state.fail_next - 1)
                    status = 500
                else:
                    status = 200
                state.requests.append(
                    Request(self.path, dict(self.headers.items()), body, status, time.monotonic())
                )
                hang = state.hang
            if hang:
                state.release.wait(30)
            if state.redirect:
                self.send_response(307)
                self.send_header("Location", state.redirect)
            else:
                self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="alarm hook", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/alarms"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


def refused_url() -> str:
    """A URL on a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/alarms"


# ---- real commands ---------------------------------------------------------------------

APPEND = """\
import json, os, sys
data = sys.stdin.read()
env = {k: os.environ.get(k) for k in (
    "BACKCHANNEL_ALARM_KIND", "BACKCHANNEL_ALARM_STATE", "BACKCHANNEL_ALARM_LINE", "BACKCHANNEL_PASSPHRASE")}
with open(sys.argv[1], "a", encoding="utf-8") as f:
    f.write(json.dumps({"stdin": data, "env": env}) + "\\n")
"""

FAIL = """\
import sys
sys.stdin.read()
sys.stderr.write("pager service unreachable\\n")
sys.exit(1)
"""

SLEEP = """\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "a") as f:
    f.write(f"{__import__('os').getpid()} {child.pid}\\n")
time.sleep(60)
"""

DAEMON = """\
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
with open(sys.argv[1], "a") as f:
    f.write(f"{child.pid}\\n")
"""


@dataclass
class Scripts:
    tmp: Path

    def command(self, source: str, *args: str, timeout: float = 10.0) -> CommandSink:
        path = self.tmp / f"script{abs(hash(source))}.py"
        path.write_text(source, encoding="utf-8")
        return CommandSink([sys.executable, str(path), *args], timeout=timeout)

    def appended(self, out: Path) -> list[dict[str, Any]]:
        if not out.exists():
            return []
        return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]

    def delivered(self, out: Path) -> list[dict[str, Any]]:
        return [json.loads(entry["stdin"]) for entry in self.appended(out)]


@pytest.fixture
def scripts(tmp_path: Path) -> Scripts:
    return Scripts(tmp_path)


def alive(pid: int) -> bool:
    """Whether the process still runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"processes {pids} outlived the alarm command"
        time.sleep(0.02)


def sleeping_pids(out: Path) -> list[int]:
    return [int(p) for line in out.read_text().splitlines() for p in line.split()]


# ---- the pure parts --------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    assert next_backoff(1.0, 60.0) == 2.0
    assert next_backoff(40.0, 60.0) == 60.0
    assert retry_delays(1.0, 60.0, 8) == [1, 2, 4, 8, 16, 32, 60]
    assert retry_delays(5.0, 2.0, 3) == [2.0, 2.0]
    assert retry_delays(0.05, 60.0, 1) == []


def test_the_error_is_a_transport_error_with_its_own_code() -> None:
    assert issubclass(AlarmSinkError, TransportError)
    codes = [cls.code for cls in all_error_classes()]
    assert codes.count("alarm_sink_failed") == 1
    assert str(AlarmSinkError()).startswith("An alarm could not be handed")


def test_sinks_from_config() -> None:
    assert sinks_from_config(None, None) == []
    assert sinks_from_config([], "") == []
    command, webhook = sinks_from_config(["/usr/local/bin/page-duty", "--urgent"], "https://hooks.example/x")
    assert isinstance(command, CommandSink) and command.name == "command page-duty"
    assert isinstance(webhook, WebhookSink) and webhook.name == "webhook https://hooks.example"
    for bad in (
        "ftp://hooks.example/",
        "hooks.example/alarm",
        "http://:80/",
        "http://h:99999/",
        "http://h/a b",
    ):
        with pytest.raises(ConfigError):
            sinks_from_config(None, bad)
    with pytest.raises(ConfigError):
        sinks_from_config([""], None)
    with pytest.raises(ConfigError):
        WebhookSink("http://127.0.0.1/", headers={"X-Token": "a\r\nInjected: yes"})
    with pytest.raises(ConfigError):
        WebhookSink("http://127.0.0.1/", headers={"Content-Length": "0"})


# ---- the command sink ------------------------------------------------------------------


def test_a_command_gets_the_alarm_on_stdin_and_its_gist_in_the_environment(
    scripts: Scripts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKCHANNEL_PASSPHRASE", "washington secret")
    out = tmp_path / "out.jsonl"
    sink = scripts.command(APPEND, str(out))
    aio.run(sink.deliver(ALARM))  # the station's own loop (uvloop where installed)
    [entry] = scripts.appended(out)
    assert entry["stdin"].endswith("\n")
    assert json.loads(entry["stdin"]) == ALARM
    assert entry["env"] == {
        "BACKCHANNEL_ALARM_KIND": "circuit_down",
        "BACKCHANNEL_ALARM_STATE": "raised",
        "BACKCHANNEL_ALARM_LINE": "moscow",
        "BACKCHANNEL_PASSPHRASE": None,  # never handed to a hook
    }


def test_a_failing_or_missing_command_is_an_alarm_sink_error(scripts: Scripts, tmp_path: Path) -> None:
    with pytest.raises(AlarmSinkError, match=r"exited with status 1: pager service unreachable"):
        run(scripts.command(FAIL).deliver(ALARM))
    with pytest.raises(AlarmSinkError, match="cannot be started"):
        run(CommandSink([str(tmp_path / "no-such-program")]).deliver(ALARM))


def test_a_command_that_hangs_is_killed_with_its_children(scripts: Scripts, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    sink = scripts.command(SLEEP, str(pids), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(AlarmSinkError, match=r"did not finish within 1 s and was killed"):
        run(sink.deliver(ALARM))
    assert time.monotonic() - started < 4
    wait_gone(sleeping_pids(pids))


def test_a_command_that_leaves_a_daemon_behind_has_still_delivered(scripts: Scripts, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    try:
        run(scripts.command(DAEMON, str(pids), timeout=5).deliver(ALARM))  # the daemon keeps stderr open
        assert time.monotonic() - started < 4
    finally:
        for pid in sleeping_pids(pids):  # out of the command's process group: not ours to wait for
            os.kill(pid, signal.SIGKILL)


# ---- the webhook sink ------------------------------------------------------------------


def test_a_webhook_gets_the_alarm_as_json(hook: Hook) -> None:
    url = hook.url.replace("http://", "http://duty:s%40cret@") + "?token=t0p"
    sink = WebhookSink(url, headers={"X-Station": "washington", "User-Agent": "duty-desk"})
    assert sink.name == f"webhook {hook.url.rsplit('/', 1)[0]}"  # no credentials, path or token
    run(sink.deliver(ALARM))
    [request] = hook.requests
    assert json.loads(request.body) == ALARM
    assert request.path == "/alarms?token=t0p"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Connection"] == "close"
    assert request.headers["X-Station"] == "washington"
    assert request.headers["User-Agent"] == "duty-desk"
    assert request.headers["Authorization"] == "Basic ZHV0eTpzQGNyZXQ="  # duty:s@cret


def test_a_webhook_that_fails_or_cannot_be_reached_is_an_alarm_sink_error(hook: Hook) -> None:
    hook.fail_always = True
    with pytest.raises(AlarmSinkError, match=r"answered 500 Internal Server Error"):
        run(WebhookSink(hook.url).deliver(ALARM))
    with pytest.raises(AlarmSinkError, match="could not be reached"):
        run(WebhookSink(refused_url()).deliver(ALARM))
    hook.hang = True
    started = time.monotonic()
    with pytest.raises(AlarmSinkError, match=r"gave no answer within 0.3 s"):
        run(WebhookSink(hook.url, timeout=0.3).deliver(ALARM))
    assert time.monotonic() - started < 2


def test_a_webhook_redirect_is_not_followed_and_secrets_stay_out_of_errors(hook: Hook) -> None:
    """A 3xx is a failure (the alarm and its credentials go nowhere else); no error quotes secrets."""
    hook.redirect = hook.url.replace("/alarms", "/elsewhere")
    secret_url = hook.url.replace("http://", "http://duty:s3cret-pw@") + "?token=t0p-secret"
    with pytest.raises(AlarmSinkError, match=r"answered 307") as redirected:
        run(WebhookSink(secret_url).deliver(ALARM))
    assert [r.path for r in hook.requests] == ["/alarms?token=t0p-secret"]  # one request, not two
    refused = refused_url().replace("http://", "http://duty:s3cret-pw@") + "?token=t0p-secret"
    with pytest.raises(AlarmSinkError, match="could not be reached") as unreachable:
        run(WebhookSink(refused).deliver(ALARM))
    for error in (redirected.value, unreachable.value):
        assert "s3cret" not in str(error) and "t0p-secret" not in str(error) and "duty" not in str(error)
    figure("webhook requests on a redirect", len(hook.requests), "requests")


# ---- the dispatcher --------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_backoff_until_the_server_recovers(hook: Hook) -> None:
    hook.fail_next = 3
    results = Results()
    sink = WebhookSink(hook.url)

    async def main() -> None:
        dispatcher = AlarmDispatcher([sink], first_backoff=0.05, max_backoff=1.0, on_result=results)
        dispatcher.dispatch(ALARM)
        await until("the delivery", lambda: bool(results.calls))
        await dispatcher.close(1)

    run(main())
    assert results.at(sink) == [("a1b2c3", True, "delivered at attempt 4")]
    assert results.calls[0][0] == ALARM
    assert hook.statuses() == [500, 500, 500, 200]
    assert hook.received() == [ALARM]
    assert all(json.loads(r.body) == ALARM for r in hook.requests)
    gaps = [b.at - a.at for a, b in zip(hook.requests, hook.requests[1:], strict=False)]
    for gap, backoff in zip(gaps, [0.05, 0.1, 0.2], strict=True):
        assert gap >= backoff * 0.9


def test_after_max_attempts_the_event_is_given_up_and_the_next_one_tried(hook: Hook) -> None:
    hook.fail_always = True
    results = Results()
    sink = WebhookSink(hook.url)

    async def main() -> None:
        dispatcher = AlarmDispatcher([sink], max_attempts=3, first_backoff=0.02, on_result=results)
        dispatcher.dispatch(alarm(1))
        dispatcher.dispatch(alarm(1, "cleared"))
        await until("both outcomes", lambda: len(results.calls) == 2)
        await dispatcher.close(1)

    run(main())
    assert [(a["state"], ok) for a, _, ok, _ in results.calls] == [("raised", False), ("cleared", False)]
    assert all(detail.startswith("gave up after 3 attempts: ") for *_, detail in results.calls)
    assert all("500" in detail for *_, detail in results.calls)
    assert hook.statuses() == [500] * 6
    assert [json.loads(r.body)["state"] for r in hook.requests] == ["raised"] * 3 + ["cleared"] * 3


def test_a_stuck_webhook_does_not_hold_up_the_command(hook: Hook, scripts: Scripts, tmp_path: Path) -> None:
    hook.hang = True
    out = tmp_path / "out.jsonl"
    results = Results()
    webhook = WebhookSink(hook.url, timeout=5.0)
    command = scripts.command(APPEND, str(out))

    async def main() -> None:
        dispatcher = AlarmDispatcher([webhook, command], first_backoff=0.05, on_result=results)
        for n in range(3):
            dispatcher.dispatch(alarm(n))
        await until("the command's three deliveries", lambda: len(results.at(command)) == 3)
        assert results.at(webhook) == []  # still waiting for its first answer
        started = time.monotonic()
        await dispatcher.close(0.2)
        assert time.monotonic() - started < 2

    run(main())
    assert [ok for _, ok, _ in results.at(command)] == [True] * 3
    assert scripts.delivered(out) == [alarm(0), alarm(1), alarm(2)]
    assert results.at(webhook) == [
        (f"a{n}", False, "not delivered: alarm delivery was shut down") for n in range(3)
    ]


def test_each_sink_gets_the_events_in_order(hook: Hook, scripts: Scripts, tmp_path: Path) -> None:
    hook.fail_next = 2  # the first event needs three attempts; the rest must wait for it
    out = tmp_path / "out.jsonl"
    results = Results()
    webhook = WebhookSink(hook.url)
    command = scripts.command(APPEND, str(out))
    events = [alarm(n, "cleared" if n % 2 else "raised") for n in range(6)]

    async def main() -> None:
        dispatcher = AlarmDispatcher([webhook, command], first_backoff=0.05, on_result=results)
        for event in events:
            dispatcher.dispatch(event)
        await until("every outcome", lambda: len(results.calls) == 12)
        await dispatcher.close(1)

    run(main())
    ids = [e["id"] for e in events]
    assert [i for i, ok, _ in results.at(webhook) if ok] == ids
    assert [i for i, ok, _ in results.at(command) if ok] == ids
    assert hook.received() == events
    assert scripts.delivered(out) == events


def test_close_lets_queued_events_go_out(hook: Hook, scripts: Scripts, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    results = Results()
    webhook, command = WebhookSink(hook.url), scripts.command(APPEND, str(out))

    async def main() -> None:
        dispatcher = AlarmDispatcher([webhook, command], on_result=results)
        for n in range(3):
            dispatcher.dispatch(alarm(n))
        await dispatcher.close(10)

    run(main())
    assert all(ok for _, _, ok, _ in results.calls) and len(results.calls) == 6
    assert hook.received() == scripts.delivered(out) == [alarm(0), alarm(1), alarm(2)]


def test_close_is_bounded_and_kills_a_running_command(hook: Hook, scripts: Scripts, tmp_path: Path) -> None:
    hook.fail_always = True
    pids = tmp_path / "pids"
    results = Results()
    webhook = WebhookSink(hook.url)
    command = scripts.command(SLEEP, str(pids), timeout=30)

    async def main() -> None:
        dispatcher = AlarmDispatcher([webhook, command], first_backoff=30, on_result=results)
        dispatcher.dispatch(alarm(1))
        dispatcher.dispatch(alarm(2))
        await until("the first attempts", lambda: hook.statuses() == [500] and pids.exists())
        started = time.monotonic()
        await dispatcher.close(0.3)
        assert time.monotonic() - started < 2.5
        dispatcher.dispatch(alarm(3))  # too late: reported, not queued

    run(main())
    wait_gone(sleeping_pids(pids))
    for sink in (webhook, command):
        assert results.at(sink) == [
            ("a1", False, "not delivered: alarm delivery was shut down"),
            ("a2", False, "not delivered: alarm delivery was shut down"),
            ("a3", False, "not delivered: alarm delivery is shutting down"),
        ]


def test_dispatch_takes_a_snapshot_and_bounds_what_waits(hook: Hook) -> None:
    hook.hang = True
    results = Results()
    sink = WebhookSink(hook.url)

    async def main() -> None:
        dispatcher = AlarmDispatcher([sink], on_result=results, max_pending=2)
        event = alarm(0)
        dispatcher.dispatch(event)
        event["state"] = "cleared"  # the caller reusing its dict must not change what is sent
        for n in range(1, 4):
            dispatcher.dispatch(alarm(n))
        assert results.at(sink) == [
            ("a0", False, "dropped: 2 newer events were waiting for this sink"),
            ("a1", False, "dropped: 2 newer events were waiting for this sink"),
        ]
        assert results.calls[0][0]["state"] == "raised"
        with pytest.raises(InvalidArgument):
            dispatcher.dispatch({**ALARM, "raised_at": b"\x00"})
        await until("the first POST", lambda: len(hook.requests) == 1)
        await dispatcher.close(0.1)

    run(main())
    assert json.loads(hook.requests[0].body) == alarm(2)


def test_a_broken_result_recorder_does_not_stop_delivery(hook: Hook) -> None:
    seen: list[str] = []

    def recorder(alarm: dict[str, Any], sink: str, ok: bool, detail: str) -> None:
        seen.append(alarm["id"])
        raise RuntimeError("the station's store is gone")

    async def main() -> None:
        dispatcher = AlarmDispatcher([WebhookSink(hook.url)], on_result=recorder)
        dispatcher.dispatch(alarm(1))
        dispatcher.dispatch(alarm(2))
        await dispatcher.close(5)

    run(main())
    assert seen == ["a1", "a2"]
    assert hook.received() == [alarm(1), alarm(2)]
