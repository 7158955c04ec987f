"""A leaked invitation used by a third station: both sides must hear of it, within a bound.

Washington invites, Moscow accepts (the genuine line). The invitation text leaks and a third
station accepts it too. Before issue 12 the third station was told "Line washington opened"
and stayed *pairing* forever, and Washington only counted ``invitation_already_used``. Now
the third station's line is *failed* with a ``pairing_failed`` alarm within its pairing
timeout (set short here; 60 s by default), and Washington raises ``invitation_reused`` naming
the line whose invitation was used twice. The genuine line is unaffected.

The second test is the other cause of a missing welcome, a stopped inviter: the line fails
in time, and opens after all (alarm cleared) when the inviter comes back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from support.figures import figure
from support.relays import start_relay
from support.stations import StationProcess, wait_until

TIMEOUT = 3.0  # the third station's pairing_timeout (seconds)


def short_pairing(station: StationProcess) -> None:
    (station.home / "station.toml").write_text(f"[station]\npairing_timeout = {TIMEOUT}\n")


def alarms_of(station: StationProcess, kind: str) -> list[dict[str, Any]]:
    return [a for a in station.call("alarms", include_cleared=True) if a["kind"] == kind]


def test_a_leaked_invitation_used_by_a_third_station_fails_there_and_alarms_the_inviter(
    tmp_path: Path,
) -> None:
    relay = start_relay(tmp_path)
    washington = StationProcess(tmp_path, "washington")
    moscow = StationProcess(tmp_path, "moscow")
    eve = StationProcess(tmp_path, "eve")
    short_pairing(eve)
    try:
        for station in (washington, moscow, eve):
            station.start()
        invited = washington.cli("invite", "--relay", relay.url, "--name", "moscow", "--json")
        assert invited.returncode == 0, invited.stderr
        text = json.loads(invited.stdout)["text"]
        accepted = moscow.cli("accept", text, "--json")
        assert accepted.returncode == 0, accepted.stderr
        m_line = json.loads(accepted.stdout)["name"]
        wait_until("the genuine line", lambda: moscow.call("line", name=m_line)["state"] == "established")

        started = time.monotonic()
        leaked = eve.cli("accept", text, "--json")  # the leaked text, accepted by a third station
        assert leaked.returncode == 0, leaked.stderr
        e_line = json.loads(leaked.stdout)["name"]

        reused = wait_until(
            "washington's invitation_reused alarm", lambda: alarms_of(washington, "invitation_reused")
        )
        reuse_seconds = time.monotonic() - started
        assert reused[0]["line"] == "moscow" and "second station" in reused[0]["message"]

        wait_until(
            "eve's line to fail",
            lambda: eve.call("line", name=e_line)["state"] == "failed",
            timeout=TIMEOUT + 30,
        )
        failed_seconds = time.monotonic() - started
        failed = alarms_of(eve, "pairing_failed")
        assert failed and failed[0]["state"] == "raised" and failed[0]["line"] == e_line
        assert "already been used" in failed[0]["message"]
        assert eve.call("line", name=e_line)["health"] == "failed"
        figure("seconds until the third station's line is failed", failed_seconds, "s")
        figure("seconds until the inviter's invitation_reused alarm", reuse_seconds, "s")
        assert TIMEOUT <= failed_seconds <= TIMEOUT + 20
        assert washington.call("counters").get("invitation_already_used", 0) >= 1

        # The genuine line is unaffected.
        sent = moscow.call("send", line=m_line, text="still here", wait="delivered")
        assert sent["status"] == "delivered"
    finally:
        for station in (washington, moscow, eve):
            station.kill()
        relay.stop()


def test_a_line_failed_for_a_stopped_inviter_opens_when_the_welcome_comes(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    washington, moscow = StationProcess(tmp_path, "washington"), StationProcess(tmp_path, "moscow")
    short_pairing(moscow)
    try:
        washington.start()
        moscow.start()
        invited = washington.cli("invite", "--relay", relay.url, "--json")
        assert invited.returncode == 0, invited.stderr
        washington.stop()  # the inviter is away: no welcome can come
        accepted = moscow.cli("accept", json.loads(invited.stdout)["text"], "--json")
        m_line = json.loads(accepted.stdout)["name"]
        wait_until("the line to fail", lambda: moscow.call("line", name=m_line)["state"] == "failed", 30)
        assert alarms_of(moscow, "pairing_failed")[0]["state"] == "raised"

        washington.start()
        wait_until("the late welcome", lambda: moscow.call("line", name=m_line)["state"] == "established", 30)
        wait_until("the alarm to clear", lambda: alarms_of(moscow, "pairing_failed")[0]["state"] == "cleared")
    finally:
        washington.kill()
        moscow.kill()
        relay.stop()
