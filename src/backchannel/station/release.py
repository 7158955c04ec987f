"""Release authority, the two-person rule: a message waits until a second operator releases it.

A line may require that its FLASH (or all) messages be released by another operator
(``[station.lines.NAME] release = "flash"``). Such a message is kept as a *draft*, its text
sealed at rest; it is not sealed for the line, has no sequence number and nothing of it
leaves the station. Releasing it seals and stores it like any message, and marks the draft
released in the same transaction, so a draft can be sent once only. The drafter may not
release their own draft; who may release is the console's business (the releaser role).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from backchannel.errors import InvalidArgument, LineNotReady, UnknownMessage
from backchannel.proto.invitation import valid_name
from backchannel.proto.payloads import Precedence
from backchannel.station.liveline import LiveLine
from backchannel.station.views import DraftView, MessageView

if TYPE_CHECKING:
    from backchannel.station.station import Station


class Releases:
    def __init__(self, station: Station) -> None:
        self._s = station
        self._releasing: set[str] = set()

    def hold(self, live: LiveLine, precedence: Precedence, text: str, operator: str | None) -> DraftView:
        if operator is None or not valid_name(operator):
            raise InvalidArgument(
                f"line {live.row.name!r} needs a second operator to release {precedence.value} messages: "
                "say who drafts this one (--operator NAME)"
            )
        draft_id = self._s._rng.bytes(6).hex()
        with self._s._store.transaction():
            body = self._s._atrest.seal(text.encode("utf-8"), b"draft" + draft_id.encode())
            self._s._store.add_draft(
                draft_id, live.line_id, precedence.value, body, operator, self._s._clock.now()
            )
        return self.draft(draft_id)

    def drafts(self, line: str | None = None) -> list[DraftView]:
        """Messages awaiting release by a second operator (visible to everyone)."""
        line_id = self._s._line(line).line_id if line else None
        return [self._draft_view(d) for d in self._s._store.drafts(line_id)]

    def draft(self, draft_id: str) -> DraftView:
        found = self._s._store.draft(draft_id)
        if found is None:
            raise UnknownMessage(f"there is no draft {draft_id!r}; `backchannel drafts` lists them")
        return self._draft_view(found)

    async def release(
        self, draft_id: str, operator: str, wait: str | None = None, timeout: float = 30.0
    ) -> MessageView:
        """Release a held message: it is sealed and sent now. The drafter may not release it."""
        found = self._s._store.draft(draft_id)
        if found is None:
            raise UnknownMessage(f"there is no draft {draft_id!r}; `backchannel drafts` lists them")
        _, line_id, precedence, body, drafted_by, _, released_by, _, seq = found
        if released_by is not None:
            raise LineNotReady(f"draft {draft_id} was already released by {released_by} as message {seq}")
        if not valid_name(operator):
            raise InvalidArgument("an operator name of 1 to 64 bytes of printable text is required")
        if operator == drafted_by:
            raise InvalidArgument(
                "the operator who drafted a message cannot release it: a second operator must"
            )
        if draft_id in self._releasing:
            raise LineNotReady(f"draft {draft_id} is being released already")
        live = self._s._lines[line_id]
        text = self._s._atrest.open(body, b"draft" + draft_id.encode()).decode("utf-8")
        self._releasing.add(draft_id)
        try:
            seq, waiter = await self._s._queue_send(
                live, Precedence(precedence), text, wait, (draft_id, operator)
            )
        finally:
            self._releasing.discard(draft_id)
        if waiter is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        return self._s.message(live.row.name, seq, "out")

    def _draft_view(self, d: tuple[Any, ...]) -> DraftView:
        draft_id, line_id, precedence, body, drafted_by, created, released_by, released_at, seq = d
        text = self._s._atrest.open(body, b"draft" + draft_id.encode()).decode("utf-8")
        return DraftView(
            draft_id,
            self._s.line_name(line_id),
            precedence,
            text,
            drafted_by,
            created,
            "released" if released_by else "awaiting release",
            released_by,
            released_at,
            seq,
        )
