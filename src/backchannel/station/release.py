"""Release authority, the two-person rule: a message waits until a second operator releases it.

A line may require that its FLASH (or all) messages be released by another operator
(``[station.lines.NAME] release = "flash"``). Such a message is kept as a *draft*, its text
sealed at rest; it is not sealed for the line, has no sequence number and nothing of it
leaves the station. Releasing it seals and stores it like any message, and marks the draft
released in the same transaction, so a draft can be sent once only.

The rule is checked here, for every path a release can come by (the console, the CLI, any
program on the control socket), not by the callers: the releasing operator must

- exist (an account of :mod:`backchannel.station.operators`),
- prove it: the console session did (:meth:`Releases.release_as`), else the operator's console
  password, checked like a login and counting toward its lockout (:meth:`Releases.release`),
- hold release authority (:data:`RELEASE_ROLES`), and
- not be the drafter.

Every release and every refused release is a row of the audit log: a refusal when it is
refused, a release in the very transaction that stores the message, so no message leaves
under the rule without its row.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from backchannel.errors import (
    BackchannelError,
    InvalidArgument,
    LineNotReady,
    ReleaseRefused,
    UnknownMessage,
)
from backchannel.proto.invitation import valid_name
from backchannel.proto.payloads import Precedence
from backchannel.station.lines import Lines
from backchannel.station.liveline import LiveLine
from backchannel.station.operators import Operators
from backchannel.station.outbox import Outbox
from backchannel.station.reading import Views
from backchannel.station.store import Store
from backchannel.station.views import DraftView, MessageView

#: Roles with release authority (the console's ``release`` permission names the same two).
RELEASE_ROLES = ("releaser", "admin")


class Releases:
    def __init__(self, lines: Lines, outbox: Outbox, views: Views, store: Store) -> None:
        self._lines = lines
        self._outbox = outbox
        self._views = views
        self._store = store
        self._clock = lines.clock
        self._rng = lines.rng
        self._releasing: set[str] = set()
        self._operators: Operators | None = None
        #: The checks every send gets, again at release time (set by ``sends.Sends``): a draft
        #: written before the line's config refused FLASH on it unverified must not slip out.
        self.before_release: Callable[[LiveLine, Precedence], None] | None = None

    def hold(
        self, live: LiveLine, precedence: Precedence, text: str, operator: str | None, key: str | None = None
    ) -> DraftView:
        if operator is None or not valid_name(operator):
            raise InvalidArgument(
                f"line {live.row.name!r} needs a second operator to release {precedence.value} messages: "
                "say who drafts this one (--operator NAME)"
            )
        draft_id = self._rng.bytes(6).hex()
        with self._store.transaction():
            body = self._lines.atrest.seal(text.encode("utf-8"), b"draft" + draft_id.encode())
            self._store.add_draft(
                draft_id, live.line_id, precedence.value, body, operator, self._clock.now(), key
            )
        return self.draft(draft_id)

    def drafts(self, line: str | None = None) -> list[DraftView]:
        """Messages awaiting release by a second operator (visible to everyone)."""
        line_id = self._lines.find(line).line_id if line else None
        return [self._draft_view(d) for d in self._store.drafts(line_id)]

    def draft(self, draft_id: str) -> DraftView:
        found = self._store.draft(draft_id)
        if found is None:
            raise UnknownMessage(f"there is no draft {draft_id!r}; `backchannel drafts` lists them")
        return self._draft_view(found)

    async def release(
        self,
        draft_id: str,
        operator: str,
        password: str | None = None,
        wait: str | None = None,
        timeout: float = 30.0,
    ) -> MessageView:
        """A release from the control socket (the CLI): ``operator`` proves it with their password."""
        return await self._release(draft_id, operator, password, "control socket", wait, timeout)

    async def release_as(
        self, draft_id: str, operator: str, via: str, wait: str | None = None, timeout: float = 30.0
    ) -> MessageView:
        """A release by an operator the caller already authenticated (the console's session)."""
        return await self._release(draft_id, operator, None, via, wait, timeout)

    async def _release(
        self,
        draft_id: Any,
        operator: Any,
        password: Any,
        via: str,
        wait: str | None,
        timeout: float,
    ) -> MessageView:
        who = operator if isinstance(operator, str) and valid_name(operator) else repr(operator)[:64]
        try:
            live, text, precedence, note = await self._authorise(draft_id, operator, password, via)
            if self.before_release is not None:
                self.before_release(live, precedence)
            self._releasing.add(draft_id)
            try:
                seq, waiter, _ = await self._outbox.queue_message(
                    live, precedence, text, wait, (draft_id, operator, note)
                )
            finally:
                self._releasing.discard(draft_id)
        except BackchannelError as exc:
            detail = f"draft {str(draft_id)[:32]}: {exc} (via {via})"
            with contextlib.suppress(BackchannelError), self._store.transaction():
                self._store.add_audit(self._clock.now(), who[:128], "release_refused", detail[:1000])
            raise
        if waiter is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        return self._views.message(live.row.name, seq, "out")

    async def _authorise(
        self, draft_id: Any, operator: Any, password: Any, via: str
    ) -> tuple[LiveLine, str, Precedence, str]:
        """Everything the two-person rule asks, in order; raises the first thing that fails."""
        if not isinstance(operator, str) or not valid_name(operator):
            raise InvalidArgument("an operator name of 1 to 64 bytes of printable text is required")
        if not isinstance(draft_id, str):
            raise InvalidArgument("a draft id is required")
        _, line_id, precedence, body, drafted_by, *_ = self._pending(draft_id)
        accounts = await self._accounts()
        account = accounts.get(operator)  # UnknownOperator
        if via == "control socket":
            if not isinstance(password, str) or not password:
                raise InvalidArgument(
                    f"releasing takes {operator}'s console password (asked on the terminal, "
                    "or --password-file FILE)"
                )
            await accounts.authenticate(operator, password)  # LoginRefused, LoginThrottled
        if account.role not in RELEASE_ROLES:
            raise ReleaseRefused(
                f"operator {operator} has the {account.role} role: only a releaser or an admin may "
                "release a held message"
            )
        if operator == drafted_by:
            raise ReleaseRefused(
                "the operator who drafted a message cannot release it: a second operator must"
            )
        self._pending(draft_id)  # again: another release may have gone through while we checked
        if draft_id in self._releasing:
            raise LineNotReady(f"draft {draft_id} is being released already")
        text = self._lines.atrest.open(body, b"draft" + draft_id.encode()).decode("utf-8")
        return self._lines[line_id], text, Precedence(precedence), f"drafted by {drafted_by} (via {via})"

    def _pending(self, draft_id: str) -> tuple[Any, ...]:
        found = self._store.draft(draft_id)
        if found is None:
            raise UnknownMessage(f"there is no draft {draft_id!r}; `backchannel drafts` lists them")
        released_by, seq = found.released_by, found.seq
        if released_by is not None:
            raise LineNotReady(f"draft {draft_id} was already released by {released_by} as message {seq}")
        return tuple(found)

    async def _accounts(self) -> Operators:
        """The operator accounts, made on first use (its decoy hash costs one Argon2id run)."""
        if self._operators is None:
            store, clock = self._store, self._clock
            self._operators = await asyncio.to_thread(lambda: Operators(store, clock=clock))
        return self._operators

    def _draft_view(self, d: tuple[Any, ...]) -> DraftView:
        draft_id, line_id, precedence, body, drafted_by, created, released_by, released_at, seq = d
        text = self._lines.atrest.open(body, b"draft" + draft_id.encode()).decode("utf-8")
        return DraftView(
            draft_id,
            self._lines.name(line_id),
            precedence,
            text,
            drafted_by,
            created,
            "released" if released_by else "awaiting release",
            released_by,
            released_at,
            seq,
        )
