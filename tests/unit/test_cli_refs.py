"""Message references as typed: LINE:in/SEQ, LINE:out/SEQ, and the older forms where unambiguous."""

from __future__ import annotations

import pytest

from backchannel.cli.refs import Ref, parse_ref, received_ref
from backchannel.errors import InvalidArgument


@pytest.mark.parametrize(
    ("typed", "ref"),
    [
        (("moscow:in/4",), Ref("moscow", 4, "in")),
        (("moscow:out/16",), Ref("moscow", 16, "out")),
        (("moscow:4",), Ref("moscow", 4, None)),
        (("moscow", "4"), Ref("moscow", 4, None)),
        (("line:with:colons:in/7",), Ref("line:with:colons", 7, "in")),
        (("washington-embassy-night-desk:in/123456",), Ref("washington-embassy-night-desk", 123456, "in")),
    ],
)
def test_the_printed_forms_parse(typed: tuple[str, ...], ref: Ref) -> None:
    assert parse_ref(*typed) == ref


def test_what_inbox_prints_is_what_ack_takes() -> None:
    assert received_ref("moscow:in/4") == Ref("moscow", 4, "in")
    assert received_ref("moscow", "4") == Ref("moscow", 4, "in")  # a bare number: received, for ack
    assert received_ref("moscow:4").shown() == "moscow:in/4"


@pytest.mark.parametrize(
    "typed", [("moscow",), ("moscow:in/",), ("moscow:in/x",), ("moscow", "four"), (":in/4",)]
)
def test_a_malformed_reference_names_the_forms(typed: tuple[str, ...]) -> None:
    with pytest.raises(InvalidArgument, match=r"LINE:in/SEQ \(received\) or LINE:out/SEQ \(sent\)"):
        parse_ref(*typed)


def test_acknowledging_a_sent_message_is_refused_with_the_received_form() -> None:
    with pytest.raises(InvalidArgument, match=r"moscow:out/16 is a message this station sent.*moscow:in/16"):
        received_ref("moscow:out/16")
