"""An idempotent send survives a SIGKILL between accepting the message and answering the client.

The sending station runs with ``support/kill_site`` (a test-only fault point): the send that
finds ``die-after-send`` in the station's directory is stored and committed, then the process
is SIGKILLed before the control socket answers. The client saw only a closed connection. It
restarts the station and sends again with the same key: it gets the original reference
(``repeated``), and the peer receives exactly one copy. A key reused for another text or
line is refused; two retries racing in one group commit store one message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backchannel.errors import IdempotencyKeyReused, TransportError
from backchannel.station.control import ControlClient

from support.figures import figure
from support.relays import start_relay
from support.stations import ENV, StationProcess, pair, wait_until

KILL_SITE = Path(__file__).resolve().parent.parent / "support" / "kill_site"
TEXT = "Stand down the exercise at 0600Z"


def test_send_retried_after_sigkill_between_accept_and_answer_is_delivered_once(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    path = os.pathsep.join(p for p in (str(KILL_SITE), ENV.get("PYTHONPATH", "")) if p)
    alpha = StationProcess(tmp_path, "alpha", env={**ENV, "PYTHONPATH": path})
    bravo = StationProcess(tmp_path, "bravo")
    try:
        alpha.start()
        bravo.start()
        a_line, b_line = pair(alpha, bravo, relay.url)

        (alpha.home / "die-after-send").touch()
        with pytest.raises(TransportError):
            alpha.call("send", line=a_line, text=TEXT, precedence="FLASH", idempotency_key="drill-7")
        assert alpha.proc is not None and alpha.proc.wait(10) == -9  # killed, not answered
        alpha.start()

        first = alpha.call(
            "send", line=a_line, text=TEXT, precedence="FLASH", idempotency_key="drill-7", wait="delivered"
        )
        again = alpha.call("send", line=a_line, text=TEXT, precedence="FLASH", idempotency_key="drill-7")
        assert first["repeated"] and again["repeated"]
        assert first["ref"] == again["ref"] and first["status"] == "delivered"

        with pytest.raises(IdempotencyKeyReused, match="drill-7"):
            alpha.call("send", line=a_line, text=TEXT + "!", precedence="FLASH", idempotency_key="drill-7")
        with pytest.raises(IdempotencyKeyReused):
            alpha.call("send", line=a_line, text=TEXT, precedence="ROUTINE", idempotency_key="drill-7")

        # Two sends with one key in the same group commit (pipelined): one message.
        with ControlClient(alpha.home) as client:
            raced = client.pipeline(
                [("send", {"line": a_line, "text": "race", "idempotency_key": "race-1"})] * 3
            )
        assert len({r["seq"] for r in raced}) == 1, raced
        assert sum(1 for r in raced if not r.get("repeated")) == 1

        def received(text: str) -> list[dict[str, object]]:
            return [m for m in bravo.call("inbox", line=b_line) if m["text"] == text]

        wait_until("the race message at bravo", lambda: received("race"))
        copies = len(received(TEXT))
        sent = [m for m in alpha.call("outbox", line=a_line) if m["text"] == TEXT]
        figure("copies delivered after SIGKILL and retry with the same key", copies, "messages")
        assert copies == 1 and len(sent) == 1
        assert len(received("race")) == 1
    finally:
        alpha.kill()
        bravo.kill()
        relay.stop()
