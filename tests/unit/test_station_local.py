"""The Station facade without a relay: lifecycle errors, config, and two stations paired in-process.

Pairing here uses the offline stations of conftest.py: the invitation, the hello, the
welcome and every message travel by hand through ``Station.receive_batch``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backchannel.clock import FakeClock
from backchannel.console.settings import ConsoleSettings
from backchannel.errors import (
    ConfigError,
    InvalidArgument,
    InvalidInvitation,
    InvitationAlreadyAccepted,
    MessageTooLarge,
    StationAlreadyInitialised,
    StationNotInitialised,
    StorageError,
    UnknownLine,
    UnknownMessage,
    WrongPassphrase,
    all_error_classes,
    error_from_code,
)
from backchannel.proto import envelope
from backchannel.proto.envelope import Header, Kind
from backchannel.station.config import StationConfig
from backchannel.station.control import ControlServer
from backchannel.station.station import CONFIG, KEYSTORE, Station

PASS = "correct horse battery staple"
RELAY = "ws://relay.invalid:1"


def send(station: Station, line: str, text: str, **kw: Any) -> int:
    seq = asyncio.run(station.send(line, text, **kw)).seq
    assert seq is not None  # (a message, not a draft held for release)
    return seq


def carry(
    support: Any, src: Station, dst: Station, items: list[tuple[bytes, int]]
) -> list[tuple[bytes, int]]:
    """Deliver ``src``'s outbound frames ``items`` to ``dst``; returns what ``dst`` wants to send."""
    wanted: list[tuple[bytes, int]] = support.deliver(dst, *support.outbound(src, items))
    return wanted


# ---- lifecycle ---------------------------------------------------------------------------


def test_init_twice_is_station_already_initialised_and_leaves_the_station_alone(tmp_path: Path) -> None:
    Station.init(tmp_path, "alpha", PASS)
    before = (tmp_path / KEYSTORE).read_bytes()
    with pytest.raises(StationAlreadyInitialised):
        Station.init(tmp_path, "other", "another passphrase")
    assert (tmp_path / KEYSTORE).read_bytes() == before
    station = Station.open(tmp_path, PASS)
    assert station.name == "alpha"
    asyncio.run(station.close())


def test_open_with_a_wrong_passphrase_is_wrong_passphrase(tmp_path: Path) -> None:
    Station.init(tmp_path, "alpha", PASS)
    with pytest.raises(WrongPassphrase):
        Station.open(tmp_path, "not it")


def test_open_where_no_station_lives_is_station_not_initialised(tmp_path: Path) -> None:
    with pytest.raises(StationNotInitialised):
        Station.open(tmp_path / "empty", PASS)


@pytest.mark.parametrize(
    ("name", "passphrase"), [("", PASS), ("x" * 65, PASS), ("tab\there", PASS), ("ok", "")]
)
def test_init_refuses_bad_names_and_empty_passphrases(tmp_path: Path, name: str, passphrase: str) -> None:
    with pytest.raises(InvalidArgument):
        Station.init(tmp_path, name, passphrase)
    assert not (tmp_path / KEYSTORE).exists()


def test_an_opened_station_reports_its_identity(open_station: Callable[[str], Station]) -> None:
    station = open_station("alpha")
    ident = station.identity()
    assert ident["name"] == "alpha"
    assert len(bytes.fromhex(ident["identity_key"])) == 32
    assert len(bytes.fromhex(ident["signing_key"])) == 32
    assert station.lines() == [] and station.counters() == {}


def test_send_to_an_unknown_line_is_unknown_line(open_station: Callable[[str], Station]) -> None:
    station = open_station("alpha")
    with pytest.raises(UnknownLine):
        send(station, "nowhere", "hello")
    with pytest.raises(UnknownLine):
        station.inbox("nowhere")
    with pytest.raises(UnknownLine):
        station.verify("nowhere")


@pytest.mark.parametrize("text", ["", "hello", "bc1-", "bc1-AAAAAAAA", "bc1-" + "A" * 3000, "bc1-!!!!"])
def test_accepting_a_corrupt_invitation_is_invalid_invitation(
    open_station: Callable[[str], Station], text: str
) -> None:
    station = open_station("alpha")
    with pytest.raises(InvalidInvitation):
        asyncio.run(station.accept(text))
    assert station.lines() == []


def test_accepting_a_damaged_copy_of_a_real_invitation_is_invalid_invitation(
    open_station: Callable[[str], Station],
) -> None:
    alpha, bravo = open_station("alpha"), open_station("bravo")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    middle = len(text) // 2
    damaged = text[:middle] + ("B" if text[middle] != "B" else "C") + text[middle + 1 :]
    with pytest.raises(InvalidInvitation):
        asyncio.run(bravo.accept(damaged))


def test_invite_without_a_relay_is_invalid_argument(open_station: Callable[[str], Station]) -> None:
    station = open_station("alpha")
    with pytest.raises(InvalidArgument):
        asyncio.run(station.invite())
    with pytest.raises(InvalidArgument):
        asyncio.run(station.invite(relay="http://relay.example"))


# ---- config ------------------------------------------------------------------------------


def write_config(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


def test_config_defaults_apply_without_a_file(tmp_path: Path) -> None:
    assert StationConfig.load(tmp_path / "absent.toml") == StationConfig()
    assert StationConfig.load(None) == StationConfig()


def test_a_config_file_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        StationConfig.load(tmp_path / "typo.toml", required=True)
    with pytest.raises(ConfigError, match="cannot be read"):
        ConsoleSettings.load(tmp_path / "typo.toml", required=True)
    command = [sys.executable, "-m", "backchannel", "--home", str(tmp_path), "station", "run"]
    done = subprocess.run(
        [*command, "--config", str(tmp_path / "typo.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "typo.toml cannot be read" in done.stderr and "Traceback" not in done.stderr


def test_config_values_are_read_and_ints_become_floats(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "s.toml",
        '[station]\nrelay = "wss://relay.example"\ninvitation_ttl_hours = 2\nsend_window = 8\n',
    )
    config = StationConfig.load(path)
    assert config.relays == ("wss://relay.example",)
    assert config.invitation_ttl_hours == 2.0 and isinstance(config.invitation_ttl_hours, float)
    assert config.send_window == 8


def test_flags_override_the_file_and_none_flags_are_ignored(tmp_path: Path) -> None:
    path = write_config(tmp_path / "s.toml", "[station]\nsend_window = 8\n")
    config = StationConfig.load(path, send_window=16, relays=None)
    assert config.send_window == 16 and config.relays == ()


def test_deadlines_merge_with_defaults_and_lines_override_them(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "s.toml",
        "[station]\nlink_test_interval = 2\n[station.deadlines]\nFLASH = 30\n"
        "[station.lines.moscow.deadlines]\nFLASH = 5\n",
    )
    config = StationConfig.load(path)
    assert config.link_test_interval == 2.0
    assert config.deadlines_for("moscow")["FLASH"] == 5.0
    assert config.deadlines_for("other")["FLASH"] == 30.0
    assert config.deadlines_for("other")["ROUTINE"] == 86400.0


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[station.deadlines]\nURGENT = 5\n", "URGENT"),
        ("[station.deadlines]\nFLASH = -1\n", "FLASH"),
        ('[station]\nalarm_webhook = "ftp://x"\n', "alarm_webhook"),
        ("[station]\nalarm_command = []\n", "alarm_command"),
        ("[station]\nlink_test_interval = 0\n", "link_test_interval"),
    ],
)
def test_bad_alarm_and_deadline_settings_are_named(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        StationConfig.load(write_config(tmp_path / "s.toml", body))


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('[station]\nrelai = "ws://x"\n', "relai"),
        ('[station]\nsend_window = "many"\n', "send_window"),
        ("[station]\nsend_window = 1.5\n", "send_window"),
        ("[station]\nsend_window = true\n", "send_window"),
        ("[station]\nretry_max_seconds = false\n", "retry_max_seconds"),
        ('[station]\nrelay = "http://relay.example"\n', "relay"),
        ("[station]\nrelay = 5\n", "relay"),
        ("station = 5\n", "station"),
        ("[station\n", "cannot be read"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_problem(tmp_path: Path, body: str, named: str) -> None:
    path = write_config(tmp_path / "s.toml", body)
    with pytest.raises(ConfigError, match=named):
        StationConfig.load(path)


def test_a_bad_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="flags"):
        StationConfig.load(None, bogus=1)


def test_opening_a_station_with_a_bad_config_file_is_a_config_error(tmp_path: Path) -> None:
    Station.init(tmp_path, "alpha", PASS)
    write_config(tmp_path / CONFIG, "[station]\nunknown_setting = 1\n")
    with pytest.raises(ConfigError, match="unknown_setting"):
        Station.open(tmp_path, PASS)


@pytest.mark.parametrize("window", [0, -1])
def test_a_non_positive_send_window_is_a_config_error(tmp_path: Path, window: int) -> None:
    path = write_config(tmp_path / "s.toml", f"[station]\nsend_window = {window}\n")
    with pytest.raises(ConfigError):
        StationConfig.load(path)


# ---- errors and the control socket -------------------------------------------------------


def test_every_error_code_is_unique_and_rebuilds_its_class() -> None:
    classes = all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        rebuilt = error_from_code(cls.code, "the message")
        assert type(rebuilt) is cls
        assert str(rebuilt) == "the message"


def test_an_error_without_a_message_uses_the_first_docstring_line() -> None:
    assert (
        str(WrongPassphrase())
        == "The passphrase does not open this station's keystore. Check it and try again."
    )


def control(station: Station, request: bytes) -> dict[str, Any]:
    return asyncio.run(ControlServer(station)._handle(request))


def test_the_control_socket_answers_with_stable_error_codes(open_station: Callable[[str], Station]) -> None:
    station = open_station("alpha")
    ok = control(station, b'{"id": 1, "method": "identity"}')
    assert ok["id"] == 1 and ok["result"]["name"] == "alpha"
    unknown_line = control(station, b'{"id": 2, "method": "send", "params": {"line": "x", "text": "y"}}')
    assert unknown_line == {
        "id": 2,
        "error": {"code": "unknown_line", "message": unknown_line["error"]["message"]},
    }
    assert control(station, b'{"id": 3, "method": "launch"}')["error"]["code"] == "invalid_argument"
    bad_params = control(station, b'{"id": 4, "method": "lines", "params": {"nope": 1}}')
    assert bad_params["error"]["code"] == "invalid_argument"
    assert control(station, b"[1, 2]")["error"]["code"] == "invalid_argument"
    assert control(station, b"not json")["error"]["code"] == "invalid_argument"


def test_a_type_error_inside_a_handler_is_internal_not_bad_parameters(
    open_station: Callable[[str], Station], monkeypatch: pytest.MonkeyPatch
) -> None:
    station = open_station("alpha")

    def broken_lines() -> list[Any]:
        raise TypeError("a bug of ours")

    monkeypatch.setattr(station, "lines", broken_lines)
    answer = control(station, b'{"id": 5, "method": "lines"}')
    assert answer["error"]["code"] == "internal" and "a bug of ours" in answer["error"]["message"]

    def broken_identity() -> Any:
        raise ValueError("also ours")

    monkeypatch.setattr(station, "identity", broken_identity)
    assert control(station, b'{"id": 6, "method": "identity"}')["error"]["code"] == "internal"
    bad_params = control(station, b'{"id": 7, "method": "identity", "params": {"nope": 1}}')
    assert bad_params["error"] == {"code": "invalid_argument", "message": bad_params["error"]["message"]}
    assert "bad parameters" in bad_params["error"]["message"]


def test_a_request_that_is_not_utf8_is_invalid_argument(open_station: Callable[[str], Station]) -> None:
    assert control(open_station("alpha"), b"\x80\xff{}\n")["error"]["code"] == "invalid_argument"


# ---- two stations paired in-process ------------------------------------------------------


def test_pairing_in_process_establishes_the_line_on_both_sides(station_pair: Any) -> None:
    a, b = station_pair.inviter.lines()[0], station_pair.accepter.lines()[0]
    assert a.line_id == b.line_id == station_pair.line_id.hex()
    assert (a.role, b.role) == ("inviter", "accepter")
    assert a.state == b.state == "established"
    assert (a.peer_name, b.peer_name) == ("bravo", "alpha")
    assert a.transcript_head == b.transcript_head
    assert station_pair.inviter.pending_invitations() == []


def test_both_stations_show_the_same_safety_number(station_pair: Any) -> None:
    va = station_pair.inviter.verify(station_pair.inviter_line)
    vb = station_pair.accepter.verify(station_pair.accepter_line)
    assert va.safety_number == vb.safety_number
    assert len(va.safety_number) == 60
    assert not va.verified
    assert station_pair.inviter.verify(station_pair.inviter_line, confirm=True).verified
    assert station_pair.inviter.line(station_pair.inviter_line).verified


def test_a_message_arrives_once_and_its_receipt_marks_it_delivered(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq = send(a, station_pair.inviter_line, "DEFCON unchanged", precedence="flash")
    assert a.message(station_pair.inviter_line, seq, "out").status == "queued"
    frame = a.outbound_frame(lid, seq)
    receipts = support.deliver(b, frame)
    assert [(m.text, m.precedence, m.seq) for m in b.inbox()] == [("DEFCON unchanged", "FLASH", seq)]
    assert support.deliver(b, frame) == []  # a second copy, over another circuit
    assert len(b.inbox()) == 1
    assert b.counters() == {"duplicate": 1}
    assert carry(support, b, a, receipts) == []
    assert a.message(station_pair.inviter_line, seq, "out").status == "delivered"
    assert a.lines()[0].transcript_head == b.lines()[0].transcript_head


def test_frames_arriving_out_of_order_are_held_and_shown_in_order(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seqs = [send(a, station_pair.inviter_line, f"message {i}") for i in range(4)]
    frames = support.outbound(a, [(lid, s) for s in seqs])
    assert support.deliver(b, frames[3], frames[1]) == []
    assert b.inbox() == []
    support.deliver(b, frames[2])
    assert b.inbox() == []
    support.deliver(b, frames[0])
    assert sorted((m.seq, m.text) for m in b.inbox()) == [(s, f"message {i}") for i, s in enumerate(seqs)]
    assert b.lines()[0].received == 4


def test_rejected_frames_are_counted_and_never_cost_an_accepted_message(
    station_pair: Any, support: Any
) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    first = send(a, station_pair.inviter_line, "accepted before the garbage")
    support.deliver(b, a.outbound_frame(lid, first))
    second = send(a, station_pair.inviter_line, "accepted after the garbage")
    genuine = a.outbound_frame(lid, second)
    tampered = bytearray(genuine)
    tampered[-5] ^= 0x10
    foreign_line = genuine[:4] + os.urandom(16) + genuine[20:]
    # (Issue 11: the envelope travels wrapped in circuit frames; ``deliver`` wraps these under
    # the line's circuit keys, as a peer with a bug would send them, so the envelope checks
    # still meet them. Empty bytes are the relay's own: no circuit frame, ``unreadable_frame``.)
    support.deliver(b, bytes(tampered), genuine[:100], genuine + b"\x00", foreign_line, b"", os.urandom(300))
    assert b.counters() == {
        "decrypt_error": 1,
        "protocol_error": 3,
        "misaddressed": 1,
        "unreadable_frame": 1,
    }
    support.deliver(b, genuine)
    assert sorted(m.text for m in b.inbox()) == ["accepted after the garbage", "accepted before the garbage"]


def test_acknowledgement_travels_back_to_the_sender(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq = send(a, station_pair.inviter_line, "please confirm")
    carry(support, b, a, support.deliver(b, a.outbound_frame(lid, seq)))
    view = asyncio.run(b.ack(station_pair.accepter_line, seq, "Lt. Petrov"))
    assert view.status == "acknowledged"
    ack_seq = b.transcript(station_pair.accepter_line).sent_entries  # the frame ack() just sealed
    support.deliver(a, b.outbound_frame(lid, ack_seq))
    out = a.message(station_pair.inviter_line, seq, "out")
    assert (out.status, out.acknowledged_by) == ("acknowledged", "Lt. Petrov")
    with pytest.raises(UnknownMessage):
        asyncio.run(b.ack(station_pair.accepter_line, 999, "Lt. Petrov"))


def test_send_refuses_empty_oversized_and_unknown_precedence(station_pair: Any) -> None:
    a, line = station_pair.inviter, station_pair.inviter_line
    with pytest.raises(InvalidArgument):
        send(a, line, "")
    with pytest.raises(MessageTooLarge):
        send(a, line, "x" * 30_001)
    with pytest.raises(InvalidArgument):
        send(a, line, "x", precedence="URGENT")
    assert a.outbox() == []


def test_accepting_an_invitation_twice_is_invitation_already_accepted(
    open_station: Callable[[str], Station],
) -> None:
    alpha, bravo = open_station("alpha"), open_station("bravo")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    asyncio.run(bravo.accept(text))
    with pytest.raises(InvitationAlreadyAccepted):
        asyncio.run(bravo.accept(text))


def test_accepting_ones_own_invitation_is_refused(open_station: Callable[[str], Station]) -> None:
    alpha = open_station("alpha")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    with pytest.raises(InvalidArgument, match="this station"):
        asyncio.run(alpha.accept(text))


def test_an_expired_invitation_is_refused(open_station: Callable[[str], Station], clock: FakeClock) -> None:
    alpha, bravo = open_station("alpha"), open_station("bravo")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    clock.advance(alpha.config.invitation_ttl_hours * 3600 + 1)
    with pytest.raises(InvalidInvitation, match="expired"):
        asyncio.run(bravo.accept(text))


def test_a_second_accepters_hello_is_refused_and_counted(
    open_station: Callable[[str], Station], support: Any
) -> None:
    alpha, bravo, charlie = open_station("alpha"), open_station("bravo"), open_station("charlie")
    text = asyncio.run(alpha.invite(relay=RELAY)).text
    lid = bytes.fromhex(asyncio.run(bravo.accept(text)).line_id)
    asyncio.run(charlie.accept(text))
    assert support.deliver(alpha, bravo.outbound_frame(lid, 1)) != []
    assert support.deliver(alpha, charlie.outbound_frame(lid, 1)) == []
    assert alpha.counters() == {"invitation_already_used": 1}
    assert [line.peer_name for line in alpha.lines()] == ["bravo"]


def test_a_line_survives_closing_and_reopening_both_stations(
    station_pair: Any, support: Any, tmp_path: Path, clock: FakeClock
) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    seq1 = send(a, station_pair.inviter_line, "before the restart")
    to_send = support.deliver(b, a.outbound_frame(lid, seq1))
    asyncio.run(b.close())
    b2 = support.make_offline(Station.open(tmp_path / "bravo", PASS, clock=clock))
    try:
        seq2 = send(a, station_pair.inviter_line, "after the restart")
        to_send += support.deliver(b2, a.outbound_frame(lid, seq2))
        assert sorted(m.text for m in b2.inbox()) == ["after the restart", "before the restart"]
        reply = send(b2, b2.lines()[0].name, "reply after restart")
        receipts = carry(support, b2, a, [*to_send, (lid, reply)])
        assert carry(support, a, b2, receipts) == []
        assert [m.text for m in a.inbox()] == ["reply after restart"]
        assert a.message(station_pair.inviter_line, seq2, "out").status == "delivered"
        assert a.lines()[0].transcript_head == b2.lines()[0].transcript_head
    finally:
        asyncio.run(b2.close())
        b.store = b2.store  # already closed; keeps the fixture's own close harmless


def test_a_peer_cannot_crash_the_receiver_with_a_mime_tagged_payload(station_pair: Any, support: Any) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    live = b.mirror[lid]  # the peer's own line state: the attacker is the other station
    header = Header(Kind.DATA, lid, 1, live.state.next_seq, os.urandom(12))
    poison = envelope.seal(
        header, live.state.keys.to_inviter, live.session.encrypt(bytes.fromhex("d824626869"))
    )
    support.deliver(a, poison)  # must not raise: a bad frame is counted and dropped
    assert sum(a.counters().values()) == 1


def test_a_rolled_back_receipt_does_not_release_a_waiter(
    station_pair: Any, support: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id

    async def body() -> None:
        seq = (await a.send(station_pair.inviter_line, "wait for me")).seq
        waiter = a.waiters.register(lid, seq, "delivered")
        receipts = support.deliver(b, a.outbound_frame(lid, seq))

        def disk_full(*args: object, **kwargs: object) -> None:
            raise StorageError("disk full")

        with monkeypatch.context() as m:
            m.setattr(a.mirror, "persist", disk_full)
            with pytest.raises(StorageError):
                support.deliver(a, *support.outbound(b, receipts))
        support.deliver(a, os.urandom(64))  # an unrelated batch that commits and flushes
        status = a.message(station_pair.inviter_line, seq, "out").status
        assert status != "delivered"
        assert not waiter.done(), f"the waiter was released while the store says {status!r}"

    asyncio.run(body())


def test_the_two_person_rule_is_read_per_line_and_bad_rules_are_named(tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "s.toml",
        '[station.lines.moscow]\nrelease = "flash"\n[station.lines.kyiv]\nrelease = "all"\n',
    )
    config = StationConfig.load(path)
    assert config.needs_release("moscow", "FLASH") and not config.needs_release("moscow", "ROUTINE")
    assert config.needs_release("kyiv", "ROUTINE") and not config.needs_release("other", "FLASH")
    bad = write_config(tmp_path / "b.toml", '[station.lines.moscow]\nrelease = "sometimes"\n')
    with pytest.raises(ConfigError, match="release"):
        StationConfig.load(bad)


def test_an_internal_error_on_one_frame_leaves_it_at_its_relay_and_keeps_the_station_going(
    open_station: Callable[[str], Station], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backchannel.errors import StorageError
    from backchannel.station.relay_link import Delivery

    station = open_station("alpha")
    bug, busy, fine = (Delivery(bytes([i]) * 16, bytes([i]) * 16, b"x") for i in (1, 2, 3))

    def receive_batch(batch: list[Delivery]) -> list[tuple[bytes, int]]:
        if batch == [bug]:
            raise RuntimeError("a bug")
        if batch == [busy]:
            raise StorageError("disk busy")
        station.receiver.acks_due = list(batch)  # (what a committed batch may acknowledge)
        return []

    monkeypatch.setattr(station.receiver, "receive_batch", receive_batch)
    sendable, done, _ = station.receiver.receive_one_by_one([bug, busy, fine])
    assert sendable == [] and done == [fine]  # neither unstored frame is acknowledged to its relay
    assert station.links.deliveries.get_nowait() == busy  # it comes round again
    assert station.counters()["internal_error"] == 1


def test_a_spent_frame_is_exported_withheld_and_an_arbiter_refuses_it_until_covered(
    station_pair: Any, support: Any
) -> None:
    """Issue 8 changed this: an unreadable frame no longer verifies on the exporter's word
    ("spent"); it is exported as a withheld body (digest only), the station's own check lists
    it, and an arbiter refuses the export since no checkpoint its sender signed covers it."""
    import pytest

    from backchannel.errors import RecordInvalid
    from backchannel.proto.export import verify_export
    from backchannel.proto.identity import FIELDS

    a, b, lid = station_pair.inviter, station_pair.accepter, station_pair.line_id
    live = b.mirror[lid]  # the peer forges a genuine-looking frame whose content is unreadable
    header = Header(Kind.DATA, lid, 1, live.state.next_seq, os.urandom(12))
    support.deliver(a, envelope.seal(header, live.state.keys.to_inviter, live.session.encrypt(b"\xff")))
    doc = a.export_transcript(station_pair.inviter_line)
    withheld = [e for e in doc["entries"] if e.get("withheld")]
    assert [(e["direction"], e["seq"]) for e in withheld] == [(1, live.state.next_seq)]
    assert "payload" not in withheld[0] and "entry" not in withheld[0]
    where = f"entry {live.state.next_seq} of direction 1 (item {len(doc['entries'])})"
    own = verify_export(doc, None, require_signatures=doc["on_record"])
    assert own.withheld == (where,)
    if doc["on_record"]:
        assert own.unreadable == (where,)
        with pytest.raises(RecordInvalid) as refused:
            verify_export(doc, [{k: st.identity()[k] for k in FIELDS} for st in (a, b)])
        assert refused.value.reason == "withheld-uncovered"
    assert [x.kind for x in a.list_alarms()] == ["record_divergence"]
