"""Sending: seal the next entry of our direction; what to store, what to queue after the commit.

Encrypt once: the sealed frame is stored with the new session state in the same transaction,
and every retry and every circuit sends those very bytes (PROTOCOL §6).
"""

from __future__ import annotations

from collections.abc import Callable

from backchannel.clock import Rng
from backchannel.proto import line as proto_line
from backchannel.proto.engine import effects as fx
from backchannel.proto.line import LineState, SealedFrame
from backchannel.proto.payloads import Payload
from backchannel.proto.session import OlmSession


def seal(
    state: LineState,
    session: OlmSession,
    payload: Payload,
    rng: Rng,
    signer: Callable[[bytes], bytes] | None,
) -> tuple[LineState, list[fx.Effect], SealedFrame]:
    """Seal ``payload`` as our next entry; the effect records it in the transcript store."""
    state, sealed = proto_line.seal_payload(state, session, payload, rng, signer)
    direction = state.out_direction
    entry = fx.StoreEntry(
        state.line_id, direction, sealed.seq, state.transcript.heads[direction], sealed.payload
    )
    return state, [entry], sealed


def send(
    state: LineState,
    session: OlmSession,
    payload: Payload,
    kind: str,
    rng: Rng,
    signer: Callable[[bytes], bytes] | None,
) -> tuple[LineState, list[fx.Effect], SealedFrame]:
    """Seal, keep and (after the commit) queue one payload of ours: the whole send event."""
    state, effects, sealed = seal(state, session, payload, rng, signer)
    effects += [
        fx.StoreOutbound(state.line_id, sealed.seq, kind, sealed.frame),
        fx.SaveLine(state.line_id),
        fx.QueueFrames(state.line_id, (sealed.seq,)),
    ]
    return state, effects, sealed
