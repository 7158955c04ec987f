"""An operator's send: the checks every caller gets, idempotency keys, then the outbox or a draft.

Theory of operation
-------------------
Every path a message can come by (the CLI and any program on the control socket, the
console, the Python API) reaches :meth:`Sends.send`, so the rules that decide whether and
how a message is sent live here, once:

- **Idempotency keys** (``send --id KEY``). A client whose ``send`` got no answer (the station
  was killed between storing the message and replying) cannot tell whether it was accepted.
  With a key it simply sends again: the key is stored in the very transaction that stores the
  message (``outbox.idempotency_key``, unique per line), so after any crash either both exist
  or neither does, and a retry finds the original and returns it (the same reference, marked
  ``repeated``) instead of sealing a second copy. A key names one message: reusing it for a
  different text, precedence or line is :class:`~backchannel.errors.IdempotencyKeyReused`,
  never a silent resend. A message held by the two-person rule keeps its key on its draft.
  Keys are looked up before the send joins the group commit, and again inside the commit's
  transaction (two retries racing in one turn of the event loop store one message).
- **FLASH on an unverified line** is refused when the line's config says so
  (``refuse_flash_unverified``): the console asks its operator to tick a box, the CLI warns,
  but the refusal itself is the station's, so no caller can skip it.
"""

from __future__ import annotations

from collections.abc import Callable

from backchannel.errors import FlashRefused, IdempotencyKeyReused, InvalidArgument
from backchannel.proto.payloads import Precedence
from backchannel.station.config import StationConfig
from backchannel.station.lines import Lines
from backchannel.station.liveline import LiveLine
from backchannel.station.outbox import Outbox, check_message
from backchannel.station.reading import Views
from backchannel.station.release import Releases
from backchannel.station.store import SendKeyRow, Store
from backchannel.station.views import DraftView, MessageView

#: Longest idempotency key: room for a UUID, a hash or a script's own "job-42/step-3" naming.
MAX_KEY = 128


def check_key(key: object) -> str | None:
    """An idempotency key: 1 to 128 printable ASCII characters (no spaces), or None."""
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY or not all(33 <= ord(c) < 127 for c in key):
        raise InvalidArgument(
            f"an idempotency key (--id) is 1 to {MAX_KEY} printable ASCII characters without spaces"
        )
    return key


class Sends:
    def __init__(
        self,
        lines: Lines,
        outbox: Outbox,
        releases: Releases,
        views: Views,
        store: Store,
        config: Callable[[], StationConfig],
    ) -> None:
        self._lines = lines
        self._outbox = outbox
        self._releases = releases
        self._views = views
        self._store = store
        self._config = config
        outbox.on_key = self.existing
        releases.before_release = self.refuse_flash_unverified

    async def send(
        self,
        line: str,
        text: str,
        precedence: str | Precedence,
        wait: str | None,
        timeout: float,
        operator: str | None,
        idempotency_key: str | None,
    ) -> MessageView | DraftView:
        live = self._lines.find(line)
        prec = check_message(text, precedence, wait)
        key = check_key(idempotency_key)
        if key is not None:
            found = self.existing(key, live, prec, text)
            if found is not None:
                return await self._repeat(live, found, wait, timeout)
        self.refuse_flash_unverified(live, prec)
        if self._config().needs_release(live.row.name, prec.value):
            return self._releases.hold(live, prec, text, operator, key)
        seq, repeated = await self._outbox.send_message(live, prec, text, wait, timeout, key)
        view = self._views.message(live.row.name, seq, "out")
        return view.marked_repeated() if repeated else view

    def refuse_flash_unverified(self, live: LiveLine, precedence: Precedence) -> None:
        """FLASH on a line never verified, when its config says so: refused, for every caller."""
        if precedence is not Precedence.FLASH or live.row.verified_at is not None:
            return
        if self._config().refuses_flash_unverified(live.row.name):
            raise FlashRefused(
                f"line {live.row.name!r} refuses FLASH until its safety number is verified: compare "
                f"it with the other operator (backchannel verify {live.row.name}), or send at "
                "IMMEDIATE. Nothing was sent."
            )

    def existing(self, key: str, live: LiveLine, precedence: Precedence, text: str) -> SendKeyRow | None:
        """What ``key`` already names, if it names this very message; refused if another."""
        found = self._store.find_send_key(key)
        if found is None:
            return None
        if found.draft_id is not None:
            context = b"draft" + found.draft_id.encode()
            same_text = self._lines.atrest.open(found.body_sealed, context).decode("utf-8") == text
        else:
            assert found.seq is not None
            same_text = self._lines.text(found.line_id, "out", found.seq, found.body_sealed) == text
        if found.line_id != live.line_id or found.precedence != precedence.value or not same_text:
            raise IdempotencyKeyReused(
                f"the key {key!r} already names {self._describe(found)}, with another "
                f"{'line' if found.line_id != live.line_id else 'text or precedence'}: a retry must "
                "repeat the original send exactly, and a new message needs a new key. Nothing was sent."
            )
        return found

    def _describe(self, found: SendKeyRow) -> str:
        name = self._lines.name(found.line_id)
        if found.seq is not None:
            return f"message {name}:out/{found.seq}"
        return f"draft {found.draft_id} on line {name}"

    async def _repeat(
        self, live: LiveLine, found: SendKeyRow, wait: str | None, timeout: float
    ) -> MessageView | DraftView:
        if found.seq is None:
            assert found.draft_id is not None
            return self._releases.draft(found.draft_id)
        await self._outbox.wait_for(live, found.seq, wait, timeout)
        return self._views.message(live.row.name, found.seq, "out").marked_repeated()
