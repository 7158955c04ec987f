"""Alarms (open and cleared, acknowledged by name) and the circuits the peer proposes."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from backchannel.console.pages import Pages
from backchannel.station.operators import Session
from backchannel.station.relay_url import shown


class AlarmPages(Pages):
    async def alarms_page(self, request: Request, session: Session, form: FormData | None) -> Response:
        alarms = self.station.list_alarms(include_cleared=True)
        return self.render(
            "alarms.html",
            session,
            title="Alarms",
            nav="alarms",
            raised=[a for a in alarms if a.state == "raised"],
            cleared=[a for a in alarms if a.state != "raised"][:50],
            # (a relay URL may carry its access token: shown masked, as everywhere)
            proposals=[{**p, "url": shown(str(p["url"]))} for p in self.station.circuit_proposals()],
        )

    async def circuit_verdict(self, request: Request, session: Session, form: FormData | None) -> Response:
        """Approve or reject a circuit the peer proposed (held by ``relay_policy = "ask"``)."""
        proposal, verdict = request.path_params["proposal"], request.path_params["verdict"]
        if verdict == "approve":
            view = await self.station.approve_circuit(proposal)
            detail = f"{proposal} {view.name}"
        elif verdict == "reject":
            result = self.station.reject_circuit(proposal)
            detail = f"{proposal} {result['line']} {shown(str(result['url']))}"
        else:
            return self.refused(session, 404, "Not found", "Approve or reject: nothing else.")
        self.audit(session, f"circuit_{verdict}", detail)
        return RedirectResponse("/alarms", 303)

    async def alarm_ack(self, request: Request, session: Session, form: FormData | None) -> Response:
        alarm_id = request.path_params["alarm"]
        view = self.station.ack_alarm(alarm_id, session.operator)
        if view.acknowledged_by == session.operator:
            self.audit(
                session, "alarm_ack", f"{alarm_id} {view.kind} {view.line or ''} {view.subject}".strip()
            )
        return RedirectResponse("/alarms", 303)
