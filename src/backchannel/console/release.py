"""Release authority (the two-person rule): the drafts held for release, and releasing one.

The station checks the rule (a releaser, never the drafter) and audits every release and
every refusal; the console shows the refusal in words and says that nothing was sent.
"""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from backchannel.console.pages import Pages
from backchannel.console.views import release_scope, sentence
from backchannel.errors import InvalidArgument, LineNotReady, ReleaseRefused, UnknownMessage
from backchannel.station.operators import Session, UnknownOperator


class ReleasePages(Pages):
    async def release_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        drafts = self.station.drafts()
        lines = {line.name: line for line in self.station.lines()}
        return self.render(
            "release.html",
            session,
            title="Release",
            nav="release",
            drafts=drafts,
            lines=lines,
            rules=[(name, release_scope(self.station, name)) for name in lines],
        )

    async def release(self, request: Request, session: Session, form: FormData | None) -> Response:
        draft_id = request.path_params["draft"]
        try:  # the station checks the two-person rule and writes the audit row, refusal or release
            sent = await self.station.release_as(draft_id, session.operator, via="console")
        except (InvalidArgument, LineNotReady, UnknownMessage, ReleaseRefused, UnknownOperator) as exc:
            status = 404 if isinstance(exc, UnknownMessage) else 409 if isinstance(exc, LineNotReady) else 403
            return self.refused(session, status, "Not released", f"{sentence(str(exc))} Nothing was sent.")
        line_id = self.station.line(sent.line).line_id
        return RedirectResponse(f"/line/{line_id}?released={sent.seq}#out-{sent.seq}", 303)
