"""A hostile relay must not stall a line by filling the reassembly with entries that never complete.

The attack (a relay without keys, on one circuit of a line with two): entries 12 … 80 of the
peer arrived whole through the honest relay and are *held* (entry 11 is missing on every
circuit for a while, so they wait for it). The station restarts: the reassembly starts empty,
its floor is ``delivered_upto`` = 10, and the held entries are no longer known to it as done. The
hostile relay kept its copies of those entries (it ignores ACKs) and pushes the first fragment of
each, never the second: every one becomes an incomplete entry the honest relay will never
complete (it deleted its copies long ago). Before the fix the reassembly's bound (MAX_PARTIAL
incomplete entries) then refused entry 11 itself when it finally came through the honest relay,
and again at every end-to-end resend: the held entries could never be released, the floor never
rose, and the hostile partials were never dropped. The line was stalled for good.

The reassembly keeps its last slot for the entry next in order (``delivered_upto + 1``), so the
entry that releases everything is always taken.
"""

from __future__ import annotations

from backchannel.proto import wire
from backchannel.proto.reassembly import MAX_PARTIAL, Assembled, Partial, Reassembly, Refused
from backchannel.proto.wire import CHUNK, Fragment

from support.figures import figure

LINE = b"L" * 16
DELIVERED_UPTO = 10
GAP = DELIVERED_UPTO + 1


def fragments(seq: int) -> list[Fragment]:
    """The two fragments of a medium message (a 4 153-byte envelope: two frames)."""
    data = bytes((seq * 7 + i) % 251 for i in range(CHUNK + 98))
    chunks = wire.split(data)
    return [Fragment(seq, i, len(chunks), c) for i, c in enumerate(chunks)]


def test_replayed_fragments_of_held_entries_cannot_keep_out_the_entry_next_in_order() -> None:
    r: Reassembly[str] = Reassembly()
    r.drop_below(LINE, DELIVERED_UPTO)  # the station's start: the floor is what it delivered
    held = range(GAP + 1, GAP + 1 + 3 * MAX_PARTIAL)
    refused_replays = 0
    for seq in held:  # the hostile relay replays the first fragment of every held entry
        result = r.add(LINE, fragments(seq)[0], f"hostile {seq}")
        refused_replays += isinstance(result, Refused)
    assert r.partial_count(LINE) <= MAX_PARTIAL

    first, second = fragments(GAP)  # the missing entry, at last, through the honest relay
    results = [r.add(LINE, first, "honest 0"), r.add(LINE, second, "honest 1")]
    refusals_of_the_gap = sum(isinstance(result, Refused) for result in results)
    figure("hostile replays refused by the bound", refused_replays, "fragments")
    figure("refusals of the entry next in order", refusals_of_the_gap, "fragments")
    assert isinstance(results[0], Partial)
    assert isinstance(results[1], Assembled) and results[1].seq == GAP
    assert r.partial_count(LINE) <= MAX_PARTIAL

    # Delivered: the held entries follow, the floor jumps, and every hostile copy is answered.
    dropped = r.drop_below(LINE, held[-1])
    assert r.partial_count(LINE) == 0
    assert len(dropped) == 3 * MAX_PARTIAL - refused_replays
