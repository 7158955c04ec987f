"""``backchannel passphrase``: the real CLI changes the keystore passphrase, atomically, 0600."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from backchannel.station.keystore import open_keystore

from support.stations import ENV, PASSPHRASE, StationProcess, cli

NEW = "a new and longer passphrase"


def written(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    return path


def test_the_passphrase_command_reseals_the_keystore_and_refuses_a_short_one(tmp_path: Path) -> None:
    station = StationProcess(tmp_path, "alpha")
    keystore = station.home / "keystore.bcks"
    store_key = open_keystore(keystore, PASSPHRASE)
    old_file, new_file = written(tmp_path / "old", PASSPHRASE), written(tmp_path / "new", NEW)

    short = station.cli("passphrase", "--new-passphrase-file", str(written(tmp_path / "s", "short")))
    assert short.returncode == 1 and "at least 12 characters" in short.stderr, short.stderr
    wrong = station.cli(
        "passphrase", "--passphrase-file", str(new_file), "--new-passphrase-file", str(new_file)
    )
    assert wrong.returncode == 1 and "does not open" in wrong.stderr
    assert open_keystore(keystore, PASSPHRASE) == store_key  # both refusals changed nothing

    env = {k: v for k, v in ENV.items() if k != "BACKCHANNEL_PASSPHRASE"}
    changed = cli(
        station.home,
        "passphrase",
        "--passphrase-file",
        str(old_file),
        "--new-passphrase-file",
        str(new_file),
        "--json",
        env=env,
    )
    assert changed.returncode == 0 and json.loads(changed.stdout)["changed"], changed.stderr
    assert open_keystore(keystore, NEW) == store_key
    assert stat.S_IMODE(os.stat(keystore).st_mode) == 0o600
    assert not keystore.with_suffix(".tmp").exists()
    refused = cli(station.home, "station", "run", "--passphrase-file", str(old_file), env=env)
    assert refused.returncode == 1 and "does not open" in refused.stderr
