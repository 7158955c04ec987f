"""Cover traffic per line: the rate and FLASH policy a line overrides (``line cover``)."""

from __future__ import annotations

from backchannel.station.store.base import StoreBase


class CoverRoom(StoreBase):
    def line_covers(self) -> dict[bytes, tuple[float | None, str | None]]:
        """Every line's own cover setting, by line: (rate, flash); None follows the station's."""
        rows = self._x("SELECT line_id, rate, flash FROM line_cover").fetchall()
        return {bytes(r["line_id"]): (r["rate"], r["flash"]) for r in rows}

    def set_line_cover(self, line_id: bytes, rate: float | None, flash: str | None) -> None:
        """Override the rate and/or FLASH policy of one line (None keeps what it had)."""
        self._x(
            "INSERT INTO line_cover (line_id, rate, flash) VALUES (?, ?, ?) ON CONFLICT (line_id) DO UPDATE"
            " SET rate = COALESCE(excluded.rate, rate), flash = COALESCE(excluded.flash, flash)",
            (line_id, rate, flash),
        )
