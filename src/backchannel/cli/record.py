"""CLI commands for the record: ``transcript show|verify|export|verify-export|checkpoint`` and
``identity`` (the public keys a third party needs to verify an export).

``transcript verify-export`` runs without a station: it needs only the export and the two
stations' public keys, so an archive, a court or an arbiter can run it on a machine that
has never seen the line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from backchannel.cli import render
from backchannel.cli.report import html_report
from backchannel.errors import InvalidArgument, RecordInvalid
from backchannel.station.private import write_private

Decorator = Callable[[Callable[..., None]], Callable[..., None]]


def register(
    cli: click.Group,
    transcript: click.Group,
    state_decorator: Decorator,
    json_option: Decorator,
    emit: Callable[[bool, Any, Callable[[Any], None]], None],
) -> None:
    """Attach the record commands to the CLI (called once by ``cli.main``)."""

    @transcript.command("show")
    @click.argument("line")
    @click.option("--limit", type=int, default=50, show_default=True, help="Latest entries to show.")
    @json_option
    @state_decorator
    def transcript_show(state: Any, line: str, limit: int, as_json: bool) -> None:
        """The latest entries of LINE's record, both directions, with their chain hashes."""
        doc = state.call("export_transcript", line=line)
        entries = doc["entries"][-limit:]
        result = {
            "line": doc["line"],
            "on_record": doc["on_record"],
            "head": doc["head"],
            "counts": doc["counts"],
            "entries": entries,
        }
        emit(as_json, result, lambda v: render.console.print(render.transcript_table(v)))

    @transcript.command("verify")
    @click.argument("line")
    @json_option
    @state_decorator
    def transcript_verify(state: Any, line: str, as_json: bool) -> None:
        """Check LINE's chain, every signature (on the record) and the latest checkpoints."""
        result = state.call("verify_transcript", line=line)

        def human(v: dict[str, Any]) -> None:
            mode = "on the record" if v["on_record"] else "off the record"
            render.console.print(
                f"[green]The record of line {render.lit(v['line'])} verifies[/] ({mode}): "
                f"{v['entries'][0]} + {v['entries'][1]} entries, head {render.lit(v['head'])}"
            )
            last = v["last_checkpoint"]
            if last:
                render.console.print(
                    render.lit(f"Latest checkpoint from the peer: {last['status']} {last['detail']}")
                )
            else:
                render.console.print("No checkpoint received from the peer yet.")
            for cp in v["diverged"]:
                render.console.print(f"[bold red]Divergence[/]: {render.lit(cp['detail'])}")

        emit(as_json, result, human)

    @transcript.command("checkpoint")
    @click.argument("line")
    @json_option
    @state_decorator
    def transcript_checkpoint(state: Any, line: str, as_json: bool) -> None:
        """Send a signed checkpoint of LINE now; the other station compares it with its record."""
        result = state.call("checkpoint", line=line)
        emit(
            as_json,
            result,
            lambda v: render.console.print(
                render.lit(f"Checkpoint sent on {v['line']} as entry {v['seq']} (head {v['head'][:16]}…)")
            ),
        )

    @transcript.command("export")
    @click.argument("line")
    @click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True)
    @click.option(
        "--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="File to write."
    )
    @state_decorator
    def transcript_export(state: Any, line: str, fmt: str, out: Path) -> None:
        """Export LINE's whole record: JSON (verifiable) or a printable HTML report."""
        doc = state.call("export_transcript", line=line)
        text = json.dumps(doc, indent=1, sort_keys=True) if fmt == "json" else html_report(doc)
        write_private(out, text.encode("utf-8"))  # 0600: the record of the line is secret
        mode = "on the record: verifiable" if doc["on_record"] else "off the record: NOT verifiable by others"
        render.console.print(
            render.lit(f"Wrote {len(doc['entries'])} entries of line {doc['line']} to {out} ({mode}).")
        )

    @transcript.command("verify-export")
    @click.argument("export_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
    @click.option(
        "--keys",
        "key_files",
        multiple=True,
        required=True,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="A station's public keys (`backchannel identity --json`); give both stations'.",
    )
    @click.option(
        "--off-record",
        "off_record",
        is_flag=True,
        help="Only check the chain of an off-the-record export (it proves nothing to others).",
    )
    @json_option
    def transcript_verify_export(
        export_file: Path, key_files: tuple[Path, ...], off_record: bool, as_json: bool
    ) -> None:
        """Verify an exported transcript with nothing but the two stations' public keys."""
        from backchannel.proto.record import verify_export

        doc = _load_json(export_file, "export")
        keys = [_load_json(path, "key file") for path in key_files]
        roles = _assign_keys(doc, keys)
        result = verify_export(doc, roles, require_signatures=not off_record)
        out = {
            "verified": True,
            "line_id": result.line_id,
            "on_record": result.on_record,
            "entries": list(result.counts),
            "head": result.head,
            "checkpoints": result.checkpoints,
            "spent": list(result.spent),
        }
        emit(
            as_json,
            out,
            lambda v: render.console.print(
                f"[green]Verified[/]: {v['entries'][0]} + {v['entries'][1]} entries and {v['checkpoints']} "
                f"checkpoint{'' if v['checkpoints'] == 1 else 's'} of line {render.lit(v['line_id'])}, "
                f"head {render.lit(v['head'])}"
                + ("" if v["on_record"] else " (off the record: consistency only, no signatures)")
                + "".join(
                    f"\n[yellow]unreadable when received, content not proven[/]: {render.lit(w)}"
                    for w in v["spent"]
                )
            ),
        )

    @cli.command()
    @json_option
    @state_decorator
    def identity(state: Any, as_json: bool) -> None:
        """This station's public keys and fingerprint (give them to whoever verifies a record)."""
        result = state.call("identity")
        keys = {k: result[k] for k in ("name", "ed25519", "mldsa65", "fingerprint")}
        emit(
            as_json,
            keys,
            lambda v: render.console.print(
                render.lit(
                    f"Station {v['name']}\n  fingerprint {v['fingerprint']}\n  Ed25519     {v['ed25519']}\n"
                    f"  ML-DSA-65   {v['mldsa65'][:64]}… ({len(v['mldsa65']) // 2} bytes; --json for all)",
                    keep="\n",
                )
            ),
        )


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"the {what} {path} is not readable JSON: {exc}") from None


def _assign_keys(doc: Any, keys: list[Any]) -> dict[str, dict[str, str]]:
    """Match the given key files to the export's two roles by Ed25519 key."""
    if not isinstance(doc, dict) or "stations" not in doc:
        raise RecordInvalid("this is not a backchannel transcript export")
    roles: dict[str, dict[str, str]] = {}
    for role in ("inviter", "accepter"):
        wanted = doc["stations"][role]["ed25519"]
        match = [k for k in keys if isinstance(k, dict) and k.get("ed25519") == wanted]
        if not match:
            raise RecordInvalid(
                f"none of the key files is the {role}'s ({doc['stations'][role].get('name')})"
            )
        roles[role] = match[0]
    return roles
