"""What the duty officer is told is true, and a FLASH reaches them (issue 12 items 6-8), on real
stations through their control sockets.

- ``refuse_flash_unverified``: the station refuses FLASH on an unverified line (whoever asks),
  then takes it once this side confirmed the safety number;
- ``verify --confirm`` says this side confirmed and that the peer's confirmation is not known;
- ``alarm_on_flash``: an incoming FLASH raises ``flash_received`` through the alarm command
  (without its text), cleared by acknowledging the message;
- acknowledging a message or an alarm twice says it was done already, by whom and when.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backchannel.errors import FlashRefused

from support.figures import figure
from support.relays import start_relay
from support.stations import StationProcess, pair, wait_until

TEXT = "Launch detected, sector 7. Confirm."


def test_flash_refused_unverified_alarmed_at_the_peer_and_feedback_truthful(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    alpha, bravo = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
    events = tmp_path / "alarm-events.jsonl"
    hook = f"import sys; open({str(events)!r}, 'a').write(sys.stdin.read())"
    (alpha.home / "station.toml").write_text("[station]\nrefuse_flash_unverified = true\n")
    (bravo.home / "station.toml").write_text(
        f"[station]\nalarm_on_flash = true\nalarm_command = {json.dumps([sys.executable, '-c', hook])}\n"
    )
    try:
        alpha.start()
        bravo.start()
        a_line, b_line = pair(alpha, bravo, relay.url)

        with pytest.raises(FlashRefused, match="verif"):
            alpha.call("send", line=a_line, text=TEXT, precedence="FLASH")
        refused = alpha.cli("send", a_line, TEXT, "-p", "FLASH")
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "refuses FLASH until its safety number is verified" in refused.stderr
        assert "warning: line" in refused.stderr and "not verified" in refused.stderr  # warned first
        assert not alpha.call("outbox", line=a_line)  # nothing was sent

        # send --id on the CLI: the retry says it sent nothing new, with the same reference.
        once = alpha.cli("send", a_line, "routine check", "--id", "cli-1")
        twice = alpha.cli("send", a_line, "routine check", "--id", "cli-1")
        assert once.returncode == 0 and twice.returncode == 0, twice.stderr
        ref = f"{a_line}:out/"
        assert ref in once.stdout and "Already sent (same --id)" in twice.stdout
        assert once.stdout.split(ref)[1].split()[0] == twice.stdout.split(ref)[1].split()[0]

        confirmed = alpha.call("verify", line=a_line, confirm=True)
        assert confirmed["verified"] and confirmed["peer_confirmed"] is None
        shown_verify = alpha.cli("verify", a_line)
        assert "Verified on this side" in shown_verify.stdout and "not known" in shown_verify.stdout
        assert "both" not in shown_verify.stdout
        quiet = alpha.cli("send", a_line, "after verification")
        assert quiet.returncode == 0 and "warning" not in quiet.stderr
        sent = alpha.call("send", line=a_line, text=TEXT, precedence="FLASH", wait="delivered")

        def flash_alarm() -> list[dict[str, object]]:
            lines = events.read_text().splitlines() if events.exists() else []
            return [e for e in map(json.loads, lines) if e["kind"] == "flash_received"]

        raised = wait_until("the flash_received alarm at bravo's command", flash_alarm)[0]
        assert raised["state"] == "raised" and raised["line"] == b_line
        assert TEXT not in json.dumps(raised)  # a sink may be off this machine: never the text
        figure("flash_received alarms per incoming FLASH", len(flash_alarm()), "alarms")

        first = bravo.call("ack_alarm", alarm_id=raised["id"], operator="smith")
        second = bravo.call("ack_alarm", alarm_id=raised["id"], operator="jones")
        said = bravo.cli("alarm-ack", str(raised["id"]), "--operator", "jones").stdout
        assert "already acknowledged by smith" in said
        assert "already_acknowledged" not in first and second["already_acknowledged"] is True
        assert second["acknowledged_by"] == "smith" and second["acknowledged_at"] == first["acknowledged_at"]
        shown = [a for a in bravo.call("alarms") if a["id"] == raised["id"]]
        assert shown and shown[0]["acknowledged_by"] == "smith" and shown[0]["acknowledged_at"]

        inbox = bravo.call("inbox", line=b_line)
        seq = next(m["seq"] for m in inbox if m["text"] == TEXT)
        acked = bravo.call("ack", line=b_line, seq=seq, operator="smith")
        again = bravo.call("ack", line=b_line, seq=seq, operator="jones")
        said = bravo.cli("ack", f"{b_line}:in/{seq}", "--operator", "jones").stdout
        assert "already acknowledged by smith" in said and "being told" not in said
        listed = bravo.cli("alarms", "--all").stdout
        assert "acknowledged by smith" in listed
        assert "already_acknowledged" not in acked and again["already_acknowledged"] is True
        assert again["acknowledged_by"] == "smith"
        wait_until("the flash alarm to clear", lambda: [e for e in flash_alarm() if e["state"] == "cleared"])
        wait_until(
            "alpha to see the acknowledgement",
            lambda: (
                alpha.call("message", line=a_line, seq=sent["seq"], direction="out")["status"]
                == "acknowledged"
            ),
        )
    finally:
        alpha.kill()
        bravo.kill()
        relay.stop()
