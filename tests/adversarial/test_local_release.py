"""Attack: ``backchannel release DRAFT --operator nobody-at-all``.

On a line under the two-person rule a FLASH waits as a draft until a *second* operator, one
with release authority, releases it. The console checked that; the CLI and the control
socket took any name at all: a FLASH drafted by smith was released under a name that is no
operator, and no audit row was written, although the README promises releases are audited.

The defence (``station.release``): every release, whichever path it comes by, names an
operator who exists, has the releaser (or admin) role, is not the drafter, and proves it
(the console session, or their console password given to the CLI); every release and every
refused release is a row of the audit log. The test drives the real CLI against a real
station: four refusals (no such operator, wrong role, the drafter, a wrong password), then
the valid release, and reads the audit log back with ``backchannel audit``.
"""

from __future__ import annotations

import json
from pathlib import Path

from support.figures import figure
from support.relays import start_relay
from support.stations import ENV, StationProcess, cli, pair

PASSWORDS = {"smith": "smith's own password", "jones": "jones's own password", "brown": "brown's password"}
ROLES = {"smith": "releaser", "jones": "releaser", "brown": "operator"}


def add_operator(station: StationProcess, name: str) -> None:
    env = {**ENV, "BACKCHANNEL_OPERATOR_PASSWORD": PASSWORDS[name]}
    result = cli(station.home, "operator", "add", name, "--role", ROLES[name], env=env)
    assert result.returncode == 0, result.stderr


def release(station: StationProcess, draft: str, operator: str, password: str) -> dict[str, object]:
    """``backchannel release`` as a script runs it: the password on stdin (--password-file -)."""
    result = station.cli(
        "release", draft, "--operator", operator, "--password-file", "-", "--json", stdin=password + "\n"
    )
    if result.returncode == 0:
        return {"released": json.loads(result.stdout)}
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error: dict[str, object] = json.loads(result.stderr)["error"]
    return error


def test_a_release_by_no_operator_is_refused_and_every_attempt_is_audited(tmp_path: Path) -> None:
    relay = start_relay(tmp_path)
    alpha, bravo = StationProcess(tmp_path, "alpha"), StationProcess(tmp_path, "bravo")
    (alpha.home / "station.toml").write_text('[station.lines.bravo]\nrelease = "flash"\n')
    for name in PASSWORDS:
        add_operator(alpha, name)
    try:
        alpha.start()
        bravo.start()
        pair(alpha, bravo, relay.url, inviter_line="bravo")
        drafted = alpha.cli(
            "send", "bravo", "Launch detected.", "-p", "FLASH", "--operator", "smith", "--json"
        )
        draft = json.loads(drafted.stdout)["id"]

        attempts = [
            ("nobody-at-all", "a guess at nothing", "unknown_operator", "no operator 'nobody-at-all'"),
            ("brown", PASSWORDS["brown"], "release_refused", "role"),
            ("smith", PASSWORDS["smith"], "release_refused", "cannot release it"),
            ("jones", "not jones's password", "login_refused", ""),
        ]
        for operator, password, code, says in attempts:
            error = release(alpha, draft, operator, password)
            assert error.get("code") == code and says in str(error.get("message")), (operator, error)
        assert [d["id"] for d in alpha.call("drafts")] == [draft]  # still held: nothing left
        assert alpha.call("outbox", line="bravo") == []

        released = release(alpha, draft, "jones", PASSWORDS["jones"])["released"]
        assert isinstance(released, dict) and released["precedence"] == "FLASH"
        assert alpha.call("drafts") == []

        audit = alpha.cli("audit", "--json")
        assert audit.returncode == 0, audit.stderr
        entries = sorted(json.loads(audit.stdout), key=lambda e: e["id"])  # oldest first
        rows = [(e["operator"], e["action"], e["detail"]) for e in entries]
    finally:
        alpha.stop()
        bravo.stop()
        relay.stop()
    refusals = [r for r in rows if r[1] == "release_refused"]
    releases = [r for r in rows if r[1] == "release"]
    figure("refused releases in the audit log", len(refusals), "rows")
    figure("releases in the audit log", len(releases), "rows")
    assert [r[0] for r in refusals] == ["nobody-at-all", "brown", "smith", "jones"], refusals
    assert all(draft in r[2] for r in refusals)
    assert len(releases) == 1 and releases[0][0] == "jones"
    assert f"bravo:{released['seq']} FLASH draft {draft}, drafted by smith" in releases[0][2]
