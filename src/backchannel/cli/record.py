"""CLI commands for the record: ``transcript show|verify|export|verify-export|checkpoint`` and
``identity`` (the public keys a third party needs to verify an export).

``transcript verify-export`` runs without a station: it needs only the export and the two
stations' identity files, so an archive, a court or an arbiter can run it on a machine that
has never seen the line. With ``--json`` a refusal is printed on stdout as
``{"verified": false, "error": {"code", "reason", "message"}}`` (exit status 1), the reason
naming the step of the procedure in docs/PROTOCOL.md §11.5 that refused it.
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
    @click.option(
        "--withhold",
        multiple=True,
        metavar="D:N",
        help="Leave out the body of entry N of direction D (its digest stays; a checkpoint its sender "
        "signed must cover it for the export to verify). Repeatable.",
    )
    @state_decorator
    def transcript_export(state: Any, line: str, fmt: str, out: Path, withhold: tuple[str, ...]) -> None:
        """Export LINE's whole record: JSON (verifiable) or a printable HTML report."""
        doc = state.call("export_transcript", line=line, withhold=list(withhold))
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
        help="A station's identity file (`backchannel identity --json`); give both stations', in any order.",
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
        """Verify an exported record with nothing but the two stations' identity files.

        Compare each fingerprint printed with the half of the safety number the two operators
        read to each other (`backchannel verify`): the key files prove their own consistency,
        not whose station they are.
        """
        from backchannel.proto.export import verify_export

        # The bytes, not parsed here: the procedure parses them strictly (no duplicate names),
        # at its own step, so a file that is not valid JSON is refused by name like the rest.
        doc = _read(export_file, "export")
        keys = [_read(path, "key file") for path in key_files]
        try:
            result = verify_export(doc, keys, require_signatures=not off_record)
        except RecordInvalid as exc:
            if not as_json:
                raise
            error = {"code": exc.code, "reason": exc.reason, "message": str(exc)}
            click.echo(json.dumps({"verified": False, "error": error}))
            raise SystemExit(1) from None
        out = {
            "verified": True,
            "line_id": result.line_id,
            "on_record": result.on_record,
            "entries": list(result.counts),
            "head": result.head,
            "exported_by": result.exported_by,
            "exported_at": result.exported_at,
            "signers": [
                {"direction": d, "role": s.role, "name": s.name, "fingerprint": s.fingerprint}
                for d, s in enumerate(result.signers)
            ],
            "checkpoints": list(result.checkpoints),
            "covered_by_checkpoints": list(result.covered),
            "withheld": list(result.withheld),
        }
        emit(as_json, out, _print_verified)

    @cli.command()
    @json_option
    @state_decorator
    def identity(state: Any, as_json: bool) -> None:
        """This station's identity file: public keys, fingerprint, self-signature (for arbiters)."""
        from backchannel.proto.identity import FIELDS
        from backchannel.proto.safety import grouped

        result = state.call("identity")
        keys = {k: result[k] for k in FIELDS}
        emit(
            as_json,
            keys,
            lambda v: render.console.print(
                render.lit(
                    f"Station {v['name']}\n  fingerprint {grouped(v['fingerprint'])}  (its half of the "
                    f"safety number on lines on the record)\n  Ed25519     {v['ed25519']}\n"
                    f"  ML-DSA-65   {v['mldsa65'][:64]}… ({len(v['mldsa65']) // 2} bytes; --json for the "
                    "identity file an arbiter needs)",
                    keep="\n",
                )
            ),
        )


def _print_verified(v: dict[str, Any]) -> None:
    checkpoints = len(v["checkpoints"])
    lines = [
        f"[green]Verified[/]: {v['entries'][0]} + {v['entries'][1]} entries and {checkpoints} "
        f"checkpoint{'' if checkpoints == 1 else 's'} of line {render.lit(v['line_id'])}, "
        f"head {render.lit(v['head'])}"
        + ("" if v["on_record"] else " (off the record: consistency only, no signatures)")
    ]
    for s in v["signers"]:
        lines.append(
            f"  direction {s['direction']} ({s['role']}) signed by {render.lit(s['name'])}, "
            f"fingerprint {render.lit(s['fingerprint'])}"
        )
    lines.append(
        f"  exported and sealed by the {render.lit(v['exported_by'])}; the exporter's clock says "
        f"{_utc(v['exported_at'])} (a claim, not a proven time)"
    )
    if v["on_record"]:
        spans = [f"1–{n}" if n else "none" for n in v["covered_by_checkpoints"]]
        lines.append(
            f"  post-quantum (ML-DSA-65) checkpoints cover entries {spans[0]} of direction 0 and "
            f"{spans[1]} of direction 1; later entries rest on Ed25519 alone"
        )
    lines += [
        f"  [yellow]body withheld by the exporter[/] (no text, digest only): {render.lit(w)}"
        for w in v["withheld"]
    ]
    lines.append(
        "  Compare each fingerprint with the half of the safety number the operators read aloud. "
        "The export cannot prove that no entries came after its last one."
    )
    render.console.print("\n".join(lines))


def _utc(ms: int) -> str:
    return render.when(ms / 1000)  # the CLI's one convention: UTC, marked Z


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"the {what} {path} cannot be read: {exc.strerror or exc}") from None
