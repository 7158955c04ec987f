"""Idempotency keys at the station API (``Station.send(idempotency_key=...)``), in-process.

The end-to-end case (a SIGKILL between storing and answering) is
``tests/faults/test_idempotent_send.py``; here: keys survive a reopen, bad keys are refused,
and a message held by the two-person rule keeps its key as a draft.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from backchannel.errors import IdempotencyKeyReused, InvalidArgument
from backchannel.station.views import DraftView, MessageView


def test_a_key_names_one_message_and_a_draft_keeps_its_key(station_pair: Any) -> None:
    station = station_pair.inviter
    line = station_pair.inviter_line
    first = asyncio.run(station.send(line, "one", idempotency_key="k-1"))
    again = asyncio.run(station.send(line, "one", idempotency_key="k-1"))
    assert isinstance(first, MessageView) and isinstance(again, MessageView)
    assert again.seq == first.seq and again.repeated and not first.repeated
    assert "repeated" not in first.to_json() and again.to_json()["repeated"] is True
    assert [m.text for m in station.outbox(line)].count("one") == 1
    with pytest.raises(IdempotencyKeyReused, match="k-1"):
        asyncio.run(station.send(line, "two", idempotency_key="k-1"))
    for bad in ("", "has space", "x" * 129, "é"):
        with pytest.raises(InvalidArgument):
            asyncio.run(station.send(line, "three", idempotency_key=bad))

    station.config = replace(station.config, line_release={line: "flash"})
    held = {"precedence": "FLASH", "operator": "smith", "idempotency_key": "d-1"}
    draft = asyncio.run(station.send(line, "held", **held))
    same = asyncio.run(station.send(line, "held", **held))
    assert isinstance(draft, DraftView) and isinstance(same, DraftView) and same.id == draft.id
    assert len(station.drafts()) == 1


def test_a_flash_refused_unverified_cannot_slip_out_as_an_older_draft(station_pair: Any) -> None:
    """A FLASH drafted before the line refused FLASH unverified is refused at release too."""
    from backchannel.errors import FlashRefused
    from backchannel.station.operators import Operators

    station = station_pair.inviter
    line = station_pair.inviter_line
    station.config = replace(station.config, line_release={line: "flash"})
    Operators(station.store).add("jones", "releaser", "jones's password")
    draft = asyncio.run(station.send(line, "held", precedence="FLASH", operator="smith"))
    assert isinstance(draft, DraftView)
    station.config = replace(station.config, line_refuse_flash={line: True})
    with pytest.raises(FlashRefused):
        asyncio.run(station.send(line, "another", precedence="FLASH", operator="smith"))
    with pytest.raises(FlashRefused):
        asyncio.run(station.release(draft.id, "jones", "jones's password"))
    assert [d.id for d in station.drafts()] == [draft.id]  # still held, nothing sent
    station.verify(line, confirm=True)
    sent = asyncio.run(station.release(draft.id, "jones", "jones's password"))
    assert sent.precedence == "FLASH"
