"""Message references as the operator types them: ``LINE:in/SEQ`` (received), ``LINE:out/SEQ`` (sent).

Every command prints a message as ``LINE:in/SEQ`` or ``LINE:out/SEQ`` (the station's
``MessageView.ref``), and every command that takes a message accepts that form back, so what
``inbox`` prints can be pasted into ``ack`` or ``show``. The form has no character a shell
treats specially. SEQ is the line's sequence number in that direction, the number in the
record, equal at both ends. Sent and received entries are numbered apart, so a bare number
(``LINE SEQ`` or the old ``LINE:SEQ``) is accepted only where the direction is implied (``ack``
takes received messages only); elsewhere it is refused with the forms to use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from backchannel.errors import InvalidArgument

_REF = re.compile(r"^(?P<line>.+?):(?:(?P<direction>in|out)/)?(?P<seq>[0-9]+)$")
FORMS = "LINE:in/SEQ (received) or LINE:out/SEQ (sent), as inbox, outbox and status print them"


@dataclass(frozen=True)
class Ref:
    line: str
    seq: int
    direction: str | None  # "in", "out", or None when the operator gave a bare number

    def shown(self, direction: str | None = None) -> str:
        return f"{self.line}:{direction or self.direction}/{self.seq}"


def parse_ref(message: str, seq: str | None = None) -> Ref:
    """``LINE:in/SEQ``, ``LINE:out/SEQ``, ``LINE:SEQ``, or ``LINE`` followed by ``SEQ``."""
    if seq is not None:
        if not seq.isdigit():
            raise InvalidArgument(f"{seq!r} is not a message number; give {FORMS}")
        return Ref(message, int(seq), None)
    found = _REF.match(message)
    if found is None:
        raise InvalidArgument(f"{message!r} names no message; give {FORMS}")
    return Ref(found["line"], int(found["seq"]), found["direction"])


def received_ref(message: str, seq: str | None = None) -> Ref:
    """A reference to a received message (``ack``): a bare number means received, ``out/`` is refused."""
    ref = parse_ref(message, seq)
    if ref.direction == "out":
        raise InvalidArgument(
            f"{ref.shown()} is a message this station sent; only received messages are acknowledged "
            f"(here: {ref.shown('in')}, as `backchannel inbox` prints them)"
        )
    return Ref(ref.line, ref.seq, "in")
