"""``backchannel demo``: a relay and two stations, for real, narrated for a newcomer.

Everything is real: three processes on 127.0.0.1, the actual CLI for every operator action,
real cryptography and real SQLite databases in a temporary directory. The relay is killed
with SIGKILL in the middle and restarted on its database; messages sent meanwhile wait in
the stations' outboxes and are delivered once it is back.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from backchannel.errors import BackchannelError, TransportError

console = Console(highlight=False)
PASSPHRASE = "demo passphrase: use a real one"
#: Seconds between link tests in the demo (the default is an hour, as on the 1963 line).
LINK_TEST_INTERVAL = 2.0
#: Cover frames per second per circuit in the demo (default 1/s): a link test every 2 s and its
#: receipts alone are more real frames than 1/s carries, and cover is a constant rate.
COVER_RATE = 10.0


class Demo:
    def __init__(self, root: Path, fast: bool) -> None:
        self.root = root
        self.pause = 0.0 if fast else 0.6
        self.env = {**os.environ, "BACKCHANNEL_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.relays: dict[str, str] = {}

    # ---- processes -----------------------------------------------------------------------

    def start_relay(self, name: str, port: int = 0) -> str:
        """Start (or restart on its database and port) relay ``name``; returns its URL."""
        cmd = [
            sys.executable,
            "-m",
            "backchannel",
            "relay",
            "serve",
            "--port",
            str(port),
            "--db",
            str(self.root / f"{name}.db"),
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env
        )
        self.procs[name] = proc
        line = self._ready_line(proc, "relay listening on", name)
        self.relays[name] = line.split()[-1]
        return self.relays[name]

    def restart_relay(self, name: str) -> None:
        self.start_relay(name, int(self.relays[name].rsplit(":", 1)[1]))

    def start_station(self, name: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "backchannel",
            "--home",
            str(self.root / name),
            "station",
            "run",
            "--link-test-interval",
            str(LINK_TEST_INTERVAL),
            "--cover-rate",
            str(COVER_RATE),
            "--console",  # each on a free port: two stations cannot share the default 7480
            "127.0.0.1:0",
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=self.env
        )
        self.procs[name] = proc
        self._ready_line(proc, "running", name)

    def _ready_line(self, proc: subprocess.Popen[str], marker: str, what: str) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if marker in line:
                return line.strip()
            if not line and proc.poll() is not None:
                break
        raise TransportError(f"the {what} process did not start")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    # ---- the CLI, shown and run ------------------------------------------------------------

    def cli(self, station: str, *args: str, show: bool = True, stdin: str | None = None) -> str:
        shown = "backchannel " + " ".join(shlex.quote(a) for a in args)
        if show:
            console.print(f"[dim]{station}$[/] [bold]{shown}[/]")
        cmd = [sys.executable, "-m", "backchannel", "--home", str(self.root / station), *args]
        result = subprocess.run(
            cmd, capture_output=True, text=True, env={**self.env, "COLUMNS": "110"}, input=stdin, timeout=120
        )
        if result.returncode != 0:
            raise BackchannelError(f"`{shown}` at {station} failed: {result.stderr.strip()}")
        if show and "--json" not in args:
            for line in result.stdout.rstrip().splitlines():
                sys.stdout.write("    " + line + "\n")
            sys.stdout.flush()
        return result.stdout

    def json(self, station: str, *args: str) -> Any:
        return json.loads(self.cli(station, *args, "--json", show=False))

    def send(self, station: str, line: str, text: str, *extra: str) -> Any:
        """Run `backchannel send`, showing the command as an operator would type it."""
        shown = " ".join(shlex.quote(a) for a in ("send", line, text, *extra))
        console.print(f"[dim]{station}$[/] [bold]backchannel {shown}[/]")
        out = self.json(station, "send", line, text, *extra)
        console.print(
            f"    {out['ref']} [{out['precedence']}]: {out['status']}"
            + (f", relayed {when(out['relayed_at'])}" if out["relayed_at"] else "")
            + (f", delivered {when(out['delivered_at'])}" if out["delivered_at"] else "")
        )
        return out

    def say(self, text: str) -> None:
        console.print()
        console.print(text)
        time.sleep(self.pause)

    def chapter(self, title: str) -> None:
        console.print()
        console.print(Rule(f"[bold]{title}"))

    def wait_for(self, what: str, check: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.1)
        raise TransportError(f"timed out waiting for {what}")

    def status_of(self, station: str, line: str, seq: int) -> str:
        messages = self.json(station, "status", line, "--limit", "1000")["messages"]
        return next((m["status"] for m in messages if m["seq"] == seq), "")

    # ---- the story -------------------------------------------------------------------------

    def run(self) -> None:
        self.chapter("1. Two stations and two relays")
        self.say(
            "A relay is an untrusted store-and-forward server: it holds sealed frames in mailboxes "
            "until the recipient takes them, and it cannot read them. A line runs through several "
            "relays at once, one circuit each, like the 1963 hotline's wire and radio circuits."
        )
        for name in ("relay-a", "relay-b"):
            url = self.start_relay(name)
            console.print(f"    {name} running at {url} (database {self.root / name}.db)")
        self.say(
            "Each party runs a station. Creating one makes its identity keys and a keystore "
            "sealed under a passphrase (Argon2id)."
        )
        self.cli("washington", "init", "--name", "washington")
        self.cli("moscow", "init", "--name", "moscow")
        self.start_station("washington")
        self.start_station("moscow")
        console.print(
            f"    both station processes running (for the demo: link tests every {LINK_TEST_INTERVAL:g} s, "
            f"cover traffic at {COVER_RATE:g} frames/s per circuit)"
        )

        self.chapter("2. Pairing: an invitation carried out of band")
        self.say(
            "Washington creates an invitation naming both relays. It is a secret, signed, single-use "
            "blob that a courier would carry by hand (file, text or QR code)."
        )
        inv_file = self.root / "invitation.txt"
        a, b = self.relays["relay-a"], self.relays["relay-b"]
        self.cli(
            "washington", "invite", "--relay", a, "--relay", b, "--name", "moscow", "--out", str(inv_file)
        )
        self.say(
            "Moscow accepts it. Moscow's station agrees keys with a hybrid of X25519 and "
            "ML-KEM-768 (post-quantum), opens an Olm session and sends its hello on both circuits."
        )
        self.cli("moscow", "accept", str(inv_file))
        self.wait_for("the line to open", lambda: self.json("moscow", "lines")[0]["state"] == "established")
        self.say("Washington answered with a welcome; the line is established on both sides.")

        self.chapter("3. Verification: the safety number, read aloud")
        self.say(
            "Both operators read their safety numbers to each other by voice. If anyone in "
            "between had substituted a key, the digits would differ."
        )
        self.cli("washington", "verify", "moscow")
        self.cli("moscow", "verify", "washington")
        w_num = self.json("washington", "verify", "moscow")["safety_number"]
        m_num = self.json("moscow", "verify", "washington")["safety_number"]
        if w_num != m_num:
            raise BackchannelError("the safety numbers differ: the line is compromised")
        console.print("    [green]the 60 digits match on both screens[/]")
        self.cli("washington", "verify", "moscow", "--confirm")
        self.cli("moscow", "verify", "washington", "--confirm")

        self.chapter("4. Messages both ways, with receipts")
        self.say(
            "Moscow sends a FLASH message. It is encrypted once, stored in Moscow's outbox, "
            "and only then sent, on every circuit; Washington keeps the first copy to arrive."
        )
        sent = self.send(
            "moscow",
            "washington",
            "Unidentified aircraft approaching the border at 14:02. Not ours. Please confirm.",
            "--precedence",
            "FLASH",
            "--wait",
            "delivered",
        )
        self.say("Relayed: a relay stored it durably. Delivered: Washington's station has it, end to end.")
        self.say("Washington's duty officer reads the inbox and acknowledges.")
        self.cli("washington", "inbox")
        self.cli("washington", "ack", "moscow", str(sent["seq"]), "--operator", "duty-officer-smith")
        self.wait_for(
            "the acknowledged receipt",
            lambda: self.status_of("moscow", "washington", sent["seq"]) == "acknowledged",
        )
        self.say(
            "Moscow sees all three receipt levels (relayed, delivered, acknowledged by whom) and "
            "the health of both circuits, measured by the link tests."
        )
        self.wait_for("link tests on both circuits", lambda: self._circuits_measured("moscow", "washington"))
        self.cli("moscow", "status", "washington")
        self.say("Washington replies (ROUTINE).")
        reply = self.send(
            "washington", "moscow", "Received. Not ours either. Tracking.", "--wait", "delivered"
        )
        self.cli("moscow", "ack", "washington", str(reply["seq"]), "--operator", "duty-officer-ivanova")

        self.chapter("5. One relay fails; the line holds")
        self.say("We kill relay-a with SIGKILL, mid-conversation.")
        self.kill("relay-a")
        console.print("    [red]relay-a killed[/]")
        self.say("Messages keep flowing over relay-b, end to end, with receipts.")
        for station, line, text in [
            ("washington", "moscow", "Our interceptors are holding at the line. Do not misread."),
            ("moscow", "washington", "Understood. Ours are on the ground."),
        ]:
            self.send(station, line, text, "--precedence", "IMMEDIATE", "--wait", "delivered")
        self.say(
            "Within two link-test intervals each station raises an alarm for the dead circuit "
            "(and would run a command or call a webhook, if configured)."
        )
        self.wait_for("the circuit-down alarm", lambda: self._open_alarms("washington", "circuit_down"))
        self.cli("washington", "alarms")
        self.cli("washington", "status", "moscow", "--limit", "3")

        self.chapter("6. The relay returns and catches up")
        self.restart_relay("relay-a")
        console.print(f"    relay-a restarted at {self.relays['relay-a']} on its database")
        self.wait_for("relay-a to catch up", lambda: self._pending_on("washington", "moscow", a) == 0)
        self.wait_for("the alarm to clear", lambda: not self._open_alarms("washington", "circuit_down"))
        self.say(
            "Everything relay-a missed was sent to it when it came back (its copies arrive at "
            "Moscow as duplicates and are dropped), and the alarm cleared, once."
        )
        self.cli("washington", "alarms", "--all")

        self.chapter("7. Both relays fail")
        self.say("Now both relays die. Messages are durable in each outbox and wait; the line is down.")
        self.kill("relay-a")
        self.kill("relay-b")
        down_refs = []
        for station, line, text in [
            ("washington", "moscow", "Proposal: a joint statement at 16:00."),
            ("moscow", "washington", "Agreed in principle. Draft to follow."),
        ]:
            out = self.send(station, line, text, "--precedence", "PRIORITY")
            down_refs.append((station, line, out["seq"]))
        self.wait_for("the line-down alarm", lambda: self._open_alarms("moscow", "line_down"))
        self.cli("moscow", "alarms")
        self.say("relay-b comes back; the stations reconnect by themselves and deliver what waited.")
        self.restart_relay("relay-b")
        for station, line, seq in down_refs:
            self.wait_for(
                "delivery after the restart",
                lambda s=station, ln=line, q=seq: self.status_of(s, ln, q) in ("delivered", "acknowledged"),
            )
        console.print(
            "    [green]every message sent while both relays were down is delivered, exactly once[/]"
        )
        self.restart_relay("relay-a")
        self.cli("moscow", "inbox")

        self.chapter("8. The record")
        self.say(
            "Each station keeps a hash chain over everything said on the line, link tests included. "
            "When both have seen everything, the heads are equal: nothing was dropped, altered or injected."
        )

        def heads() -> tuple[str, str] | None:
            # Asked back to back over the control sockets, not through two CLI processes: with link
            # tests every 2 s, two slow starts on a loaded machine would straddle one every time.
            from backchannel.station.control import ControlClient

            with ControlClient(self.root / "washington") as w, ControlClient(self.root / "moscow") as m:
                w_head = w.call("transcript", line="moscow")["head"]
                m_head = m.call("transcript", line="washington")["head"]
            return (w_head, m_head) if w_head == m_head else None

        w_head, m_head = self.wait_for("equal transcript heads", heads)
        console.print(f"    washington: {w_head}")
        console.print(f"    moscow:     {m_head}")
        console.print("    [bold green]equal[/]")
        self.say(
            "The line is on the record: every entry is signed, and the stations exchange signed "
            "checkpoints (Ed25519 and post-quantum ML-DSA-65) and compare them."
        )
        self.cli("washington", "transcript", "checkpoint", "moscow")
        self.wait_for(
            "moscow to compare the checkpoint",
            lambda: self.json("moscow", "transcript", "verify", "washington")["last_checkpoint"],
        )
        self.cli("moscow", "transcript", "verify", "washington")
        self.say(
            "An arbiter who has never seen the line can verify the exported record with nothing but "
            "the two stations' identity files, and compares the fingerprint printed for each side "
            "with the safety number the operators read to each other."
        )
        export = self.root / "record.json"
        self.cli("moscow", "transcript", "export", "washington", "--out", str(export))
        keys = []
        for station in ("washington", "moscow"):
            path = self.root / f"{station}.keys.json"
            path.write_text(self.cli(station, "identity", "--json", show=False))
            keys += ["--keys", str(path)]
        self.cli("arbiter", "transcript", "verify-export", str(export), *keys)
        self.chapter("Done")
        console.print(
            "The line held: paired, verified, messages both ways with receipts, one relay lost without "
            "a gap, both lost without a loss, alarms raised and cleared, matching transcripts, and a "
            "record a third party can verify."
        )

    def _line(self, station: str, line: str) -> Any:
        return self.json(station, "status", line, "--limit", "1")["lines"][0]

    def _circuits_measured(self, station: str, line: str) -> bool:
        return all(c["rtt_ms"] is not None for c in self._line(station, line)["circuits"])

    def _open_alarms(self, station: str, kind: str) -> list[Any]:
        return [a for a in self.json(station, "alarms") if a["kind"] == kind]

    def _pending_on(self, station: str, line: str, url: str) -> int:
        circuits = self._line(station, line)["circuits"]
        return int(next(c["pending"] for c in circuits if c["url"] == url))


def when(ts: float | None) -> str:
    """UTC to the millisecond, marked Z, as the CLI and the console show times (the demo shows latency)."""
    return (
        "-" if ts is None else time.strftime("%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
    )


def run_demo(keep: bool = False, fast: bool = False) -> None:
    root = Path(tempfile.mkdtemp(prefix="backchannel-demo-"))
    demo = Demo(root, fast)
    try:
        demo.run()
    finally:
        demo.stop_all()
        if keep:
            console.print(f"\nFiles kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
