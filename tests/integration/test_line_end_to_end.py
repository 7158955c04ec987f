"""A working line, end to end: a real relay process and two real station processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

from backchannel.proto.invitation import parse_invitation_text

from support.relays import RelayProcess
from support.stations import ENV, StationProcess, cli, heads_equal, pair, wait_until


def status_of(station: StationProcess, line: str, seq: int) -> dict[str, object]:
    return station.call("message", line=line, seq=seq, direction="out")  # type: ignore[no-any-return]


def test_pairing_then_messages_both_ways_with_all_three_receipts(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    washington, moscow = stations("washington"), stations("moscow")
    w_line, m_line = pair(washington, moscow, relay_process.url, inviter_line="moscow")
    assert (w_line, m_line) == ("moscow", "washington")

    w_verify = json.loads(washington.cli("verify", w_line, "--json").stdout)
    m_verify = json.loads(moscow.cli("verify", m_line, "--json").stdout)
    assert w_verify["safety_number"] == m_verify["safety_number"]
    assert len(w_verify["safety_number"]) == 60 and w_verify["safety_number"].isdigit()
    assert not w_verify["verified"]
    confirmed = json.loads(washington.cli("verify", w_line, "--confirm", "--json").stdout)
    assert confirmed["verified"]
    assert washington.call("line", name=w_line)["verified"]

    flash = json.loads(
        moscow.cli(
            "send",
            m_line,
            "Aircraft at the border. Confirm.",
            "--precedence",
            "FLASH",
            "--wait",
            "delivered",
            "--json",
        ).stdout
    )
    assert flash["status"] == "delivered" and flash["relayed_at"] and flash["delivered_at"]
    inbox = json.loads(washington.cli("inbox", "--json").stdout)
    assert [(m["text"], m["precedence"], m["status"]) for m in inbox] == [
        ("Aircraft at the border. Confirm.", "FLASH", "received")
    ]
    assert washington.cli("ack", w_line, str(inbox[0]["seq"]), "--operator", "smith").returncode == 0
    acked = wait_until(
        "the acknowledged receipt",
        lambda: (m := status_of(moscow, m_line, flash["seq"]))["status"] == "acknowledged" and m,
    )
    assert acked["acknowledged_by"] == "smith"

    reply = washington.cli("send", w_line, "--wait", "delivered", "--json", stdin="Received, tracking.\n")
    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout)["status"] == "delivered"
    assert [m["text"] for m in moscow.call("inbox")] == ["Received, tracking."]
    wait_until("equal transcript heads", lambda: heads_equal(washington, w_line, moscow, m_line))


def test_messages_sent_while_the_relay_is_down_arrive_after_it_restarts(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    a, b = stations("alpha"), stations("bravo")
    a_line, b_line = pair(a, b, relay_process.url)
    a.call("send", line=a_line, text="before", wait="delivered")
    relay_process.kill()
    queued = [a.call("send", line=a_line, text=f"during {i}") for i in range(5)]
    queued += [b.call("send", line=b_line, text=f"reply {i}") for i in range(3)]
    assert {m["status"] for m in queued} == {"queued"}
    relay_process.restart()
    wait_until("all messages delivered", lambda: len(b.call("inbox")) == 6 and len(a.call("inbox")) == 3)
    assert [m["text"] for m in reversed(b.call("inbox"))] == ["before"] + [f"during {i}" for i in range(5)]
    assert [m["text"] for m in reversed(a.call("inbox"))] == [f"reply {i}" for i in range(3)]
    wait_until("equal transcript heads", lambda: heads_equal(a, a_line, b, b_line))


def test_an_invitation_accepted_by_a_second_station_is_refused(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    inviter, first, second = stations("inviter"), stations("first"), stations("second")
    text = inviter.call("invite", relay=relay_process.url)["text"]
    first_line = first.call("accept", text=text)["name"]
    wait_until("the line", lambda: first.call("line", name=first_line)["state"] == "established")
    again = first.cli("accept", text)
    assert again.returncode == 1 and "already been accepted" in again.stderr
    second.call("accept", text=text)  # the second station cannot tell yet; the inviter refuses it
    wait_until(
        "the refusal to be counted", lambda: inviter.call("counters").get("invitation_already_used", 0) >= 1
    )
    assert len(inviter.call("lines")) == 1
    assert second.call("lines")[0]["state"] == "pairing"
    first.call("send", line=first_line, text="still fine", wait="delivered")
    assert [m["text"] for m in inviter.call("inbox")] == ["still fine"]


def test_relay_database_holds_no_plaintext_names_or_identity_keys(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    a, b = stations("washington"), stations("moscow")
    a_line, _ = pair(a, b, relay_process.url)
    a.call("send", line=a_line, text="first", wait="delivered")
    b.stop()  # b takes nothing more, so what follows stays in the relay database
    secrets = [f"SECRET-PLAINTEXT-{i}" for i in range(5)]
    for text in secrets:
        a.call("send", line=a_line, text=text)
    wait_until("frames stored at the relay", lambda: all(m["status"] != "queued" for m in a.call("outbox")))
    relay_process.stop()
    blob = b"".join(p.read_bytes() for p in relay_process.directory.glob("relay.db*"))
    stored = sqlite3.connect(relay_process.db_path).execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert stored >= len(secrets)
    identity = a.call("identity")
    needles = [s.encode() for s in secrets] + [b"washington", b"moscow"]
    for key_hex in (identity["identity_key"], identity["signing_key"]):
        key = bytes.fromhex(key_hex)
        needles += [key, key_hex.encode()]
    for needle in needles:
        assert needle not in blob, f"the relay database contains {needle!r}"


def test_cli_errors_name_the_problem_without_a_traceback(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess], tmp_path: Path
) -> None:
    a = stations("alpha")
    cases = [
        (("send", "nowhere", "hello"), "no line 'nowhere'"),
        (("accept", "bc1-AAAA"), "invitation"),
        (("accept", "not an invitation"), "neither an invitation"),
        (("ack", "nowhere", "3"), "no line"),
        (("send", "x", "y", "--precedence", "URGENT"), "URGENT"),
    ]
    for args, expected in cases:
        result = a.cli(*args)
        assert result.returncode != 0, args
        assert expected in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    as_json = a.cli("send", "nowhere", "hello", "--json")
    assert json.loads(as_json.stderr)["error"]["code"] == "unknown_line"

    wrong = StationProcess(tmp_path, "wrongpass")
    result = wrong.cli("station", "run", "--passphrase-file", str(_write(tmp_path / "pw", "not it")))
    assert result.returncode == 1
    assert "passphrase does not open" in result.stderr and "Traceback" not in result.stderr

    stopped = StationProcess(tmp_path, "stopped")
    result = stopped.cli("lines")
    assert result.returncode == 1 and "not running" in result.stderr


def test_invitation_text_is_a_signed_single_line(
    relay_process: RelayProcess, stations: Callable[[str], StationProcess]
) -> None:
    a = stations("alpha")
    result = a.cli("invite", "--relay", relay_process.url, "--json")
    text = json.loads(result.stdout)["text"]
    assert "\n" not in text and text.startswith("bc1-")
    invitation = parse_invitation_text(text).invitation
    assert invitation.name == "alpha" and invitation.mailboxes[0].url == relay_process.url


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_flash_on_a_two_person_line_leaves_only_when_a_second_operator_releases_it(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    alpha, bravo = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
    (alpha.home / "station.toml").write_text('[station.lines.bravo]\nrelease = "flash"\n')
    for name, role in (("smith", "releaser"), ("jones", "releaser")):
        env = {**ENV, "BACKCHANNEL_OPERATOR_PASSWORD": f"{name}'s password"}
        assert cli(alpha.home, "operator", "add", name, "--role", role, env=env).returncode == 0
    try:
        alpha.start()
        bravo.start()
        pair(alpha, bravo, relay_process.url, inviter_line="bravo")
        held = json.loads(
            alpha.cli(
                "send", "bravo", "Launch detected.", "-p", "FLASH", "--operator", "smith", "--json"
            ).stdout
        )
        assert held["status"] == "awaiting release" and held["drafted_by"] == "smith"
        routine = alpha.call("send", line="bravo", text="routine goes at once", wait="delivered")
        assert routine["status"] == "delivered"
        assert [d["id"] for d in alpha.call("drafts")] == [held["id"]]
        assert [m["text"] for m in bravo.call("inbox")] == ["routine goes at once"]  # the FLASH waits

        def release(operator: str, *args: str) -> subprocess.CompletedProcess[str]:
            """The releaser proves who they are with their console password (here on stdin)."""
            return alpha.cli(
                "release", held["id"], "--operator", operator, "--password-file", "-", *args,
                stdin=f"{operator}'s password\n",
            )  # fmt: skip

        own = release("smith")
        assert own.returncode == 1 and "cannot release it" in own.stderr
        released = json.loads(release("jones", "--json").stdout)
        assert released["precedence"] == "FLASH" and released["seq"] > routine["seq"]
        wait_until(
            "the released FLASH to arrive",
            lambda: bravo.call("inbox")[0]["text"] == "Launch detected.",
        )
        again = release("jones")
        assert again.returncode == 1 and "already released" in again.stderr
        assert alpha.call("drafts") == []
    finally:
        alpha.stop()
        bravo.stop()
