"""The record of a line: its transcript's chain head, checkpoint agreement, and the export."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from backchannel.console.pages import Pages
from backchannel.errors import BackchannelError
from backchannel.station.operators import Session


class TranscriptPages(Pages):
    async def transcript_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        view = self.station.transcript(line.line_id)
        record: dict[str, Any] | None = None
        record_error = ""
        checker = getattr(self.station, "verify_transcript", None)
        if callable(checker):
            try:
                record = checker(line.line_id)
            except BackchannelError as exc:
                record_error = str(exc)
        return self.render(
            "transcript.html",
            session,
            title=f"Transcript of {line.name}",
            nav="lines",
            line=line,
            t=view,
            record=record,
            record_error=record_error,
            can_export=callable(getattr(self.station, "export_transcript", None)),
        )

    async def transcript_export(self, request: Request, session: Session, form: FormData | None) -> Response:
        line = self.station.line(request.path_params["line"])
        exporter = getattr(self.station, "export_transcript", None)
        if not callable(exporter):
            return self.refused(session, 404, "Not available", "Exporting the transcript is not built yet.")
        document = exporter(line.line_id)
        self.audit(session, "transcript_export", line.name)
        filename = "".join(c if c.isalnum() or c in "-_" else "_" for c in line.name)
        return JSONResponse(
            document,
            headers={"content-disposition": f'attachment; filename="transcript-{filename}.json"'},
        )
