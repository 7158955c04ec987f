"""CLI rendering: peer-controlled text is shown literally, controls as visible escapes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from backchannel.cli import render
from backchannel.console.templating import environment


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, [brackets] and ünïcödé 王", "plain text, [brackets] and ünïcödé 王"),
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07", "bell\\x07"),
        ("c1\x9b1m", "c1\\x9b1m"),
        ("del\x7f", "del\\x7f"),
        ("\u202eevil", "\\u202eevil"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("a\u2028b", "a\\u2028b"),
        ("tab\there", "tab\\x09here"),
        ("nul\x00", "nul\\x00"),
        ("\U000e0001tag", "\\U000e0001tag"),
    ],
)
def test_visible_escapes_every_non_printable_character(text: str, shown: str) -> None:
    assert render.visible(text) == shown


def test_visible_keeps_only_what_it_is_told_to() -> None:
    assert render.visible("one\ntwo\x1b", keep="\n") == "one\ntwo\\x1b"


def printed(*objects: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, highlight=False, emoji=False).print(*objects)
    return out.getvalue()


def test_markup_in_peer_text_is_printed_as_typed() -> None:
    assert (
        printed(f"said: {render.lit('[/] [bold]x[/bold] :smile:')}") == "said: [/] [bold]x[/bold] :smile:\n"
    )


def test_a_message_shows_markup_and_escapes_literally_and_keeps_its_line_breaks() -> None:
    message = {
        "ref": "line:1",
        "precedence": "FLASH",
        "status": "received",
        "text": "[/]\nsecond line \x1b]0;title\x07",
        "direction": "in",
        "created_at": None,
        "delivered_at": None,
        "acknowledged_at": 1795638600.0,
        "acknowledged_by": "[red]op[/red]",
    }
    out = printed(render.messages_table([message], "Inbox"))
    # The whole body, its own line break kept (indented under the message), nothing obeyed.
    assert "  [/]\n  second line \\x1b]0;title\\x07\n" in out
    assert "[red]op[/red]" in out
    assert all(c == "\n" or c.isprintable() for c in out)


def test_the_console_escapes_html() -> None:
    template = environment().from_string("{{ name }}")
    assert template.render(name="<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
