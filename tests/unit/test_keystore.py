"""The keystore file (the store key under a passphrase) and AtRest (values under the store key)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backchannel.clock import FakeRng
from backchannel.errors import CorruptKeystore, WrongPassphrase
from backchannel.station.keystore import (
    HEADER,
    MAGIC,
    VERSION,
    AtRest,
    change_passphrase,
    create_keystore,
    default_params,
    open_keystore,
)

from support.fast_kdf import LIGHT_KDF as TEST_PARAMS

PASS = "correct horse battery staple"
FILE_SIZE = HEADER.size + 32 + 16


@pytest.fixture
def keystore(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "keystore.bcks"
    return path, create_keystore(path, PASS)


def header(memory: int = 1024, iterations: int = 1, lanes: int = 1) -> bytes:
    return HEADER.pack(MAGIC, VERSION, memory, iterations, lanes, b"s" * 16, b"n" * 12)


def test_a_created_keystore_opens_with_its_passphrase(keystore: tuple[Path, bytes]) -> None:
    path, store_key = keystore
    assert len(store_key) == 32
    assert open_keystore(path, PASS) == store_key


def test_the_keystore_file_is_private_and_has_the_documented_size(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    assert path.stat().st_size == FILE_SIZE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes()[:5] == MAGIC + bytes([VERSION])
    assert not path.with_suffix(".tmp").exists()


def test_the_store_key_is_not_in_the_file_in_clear(keystore: tuple[Path, bytes]) -> None:
    path, store_key = keystore
    assert store_key not in path.read_bytes()


def test_tests_use_the_light_kdf_parameters(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    _, _, memory, iterations, lanes, _, _ = HEADER.unpack_from(path.read_bytes())
    assert (memory, iterations, lanes) == (TEST_PARAMS.memory_kib, TEST_PARAMS.iterations, TEST_PARAMS.lanes)


def test_no_environment_switch_weakens_the_kdf_of_a_real_process() -> None:
    """The light parameters are injected by the tests; the old switch does nothing any more."""
    assert default_params() == TEST_PARAMS  # (injected in this process by tests/conftest.py)
    probe = (
        "from backchannel.station.keystore import KdfParams, default_params\n"
        "from backchannel.station.operators import HashParams, default_hash_params\n"
        "assert default_params() == KdfParams() and default_params().memory_kib >= 65536\n"
        "assert default_hash_params() == HashParams() and default_hash_params().memory_kib >= 65536\n"
    )
    env = {"BACKCHANNEL_TEST_FAST_KDF": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_wrong_passphrase_is_wrong_passphrase(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    with pytest.raises(WrongPassphrase):
        open_keystore(path, PASS + "!")
    with pytest.raises(WrongPassphrase):
        open_keystore(path, "")


def test_the_same_rng_gives_the_same_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    key_a = create_keystore(a, PASS, rng=FakeRng(b"k"))
    key_b = create_keystore(b, PASS, rng=FakeRng(b"k"))
    assert key_a == key_b
    assert a.read_bytes() == b.read_bytes()


def test_a_missing_keystore_is_corrupt_keystore(tmp_path: Path) -> None:
    with pytest.raises(CorruptKeystore):
        open_keystore(tmp_path / "absent", PASS)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"BCKS",
        b"\x00" * FILE_SIZE,
        b"XXXX" + b"\x01" + b"\x00" * (FILE_SIZE - 5),
        b"not a keystore at all, just some text that happens to be long enough to matter",
    ],
    ids=["empty", "magic-only", "zeros", "wrong-magic", "text"],
)
def test_a_file_that_is_not_a_keystore_is_corrupt_keystore(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keystore.bcks"
    path.write_bytes(content)
    with pytest.raises(CorruptKeystore):
        open_keystore(path, PASS)


def test_a_truncated_or_extended_keystore_is_corrupt_keystore(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    data = path.read_bytes()
    for damaged in (data[:-1], data + b"\x00", data[: HEADER.size]):
        path.write_bytes(damaged)
        with pytest.raises(CorruptKeystore):
            open_keystore(path, PASS)


def test_another_version_is_corrupt_keystore(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    data = path.read_bytes()
    path.write_bytes(data[:4] + bytes([VERSION + 1]) + data[5:])
    with pytest.raises(CorruptKeystore, match="version"):
        open_keystore(path, PASS)


@pytest.mark.parametrize(
    ("memory", "iterations", "lanes"),
    [(4, 1, 1), (1024, 0, 1), (1024, 101, 1), (1024, 1, 0), (1024, 1, 17), (4 * 1024 * 1024 + 1, 1, 1)],
)
def test_implausible_kdf_parameters_are_corrupt_keystore(
    tmp_path: Path, memory: int, iterations: int, lanes: int
) -> None:
    path = tmp_path / "keystore.bcks"
    path.write_bytes(header(memory, iterations, lanes) + bytes(48))
    with pytest.raises(CorruptKeystore, match="implausible"):
        open_keystore(path, PASS)


def test_kdf_parameters_that_argon2_refuses_are_corrupt_keystore(tmp_path: Path) -> None:
    path = tmp_path / "keystore.bcks"
    path.write_bytes(header(memory=8, iterations=1, lanes=2) + bytes(48))
    with pytest.raises(CorruptKeystore):
        open_keystore(path, PASS)


@pytest.mark.parametrize("offset", [5, 9, 13, 14, HEADER.size - 1, HEADER.size, FILE_SIZE - 1])
def test_any_changed_byte_stops_the_keystore_opening(keystore: tuple[Path, bytes], offset: int) -> None:
    """The header is associated data: even a plausible parameter change breaks the seal."""
    path, _ = keystore
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises((WrongPassphrase, CorruptKeystore)):
        open_keystore(path, PASS)


def test_change_passphrase_keeps_the_store_key_and_retires_the_old_passphrase(
    keystore: tuple[Path, bytes],
) -> None:
    path, store_key = keystore
    change_passphrase(path, PASS, "a new passphrase")
    assert open_keystore(path, "a new passphrase") == store_key
    with pytest.raises(WrongPassphrase):
        open_keystore(path, PASS)
    assert not path.with_suffix(".tmp").exists()


def test_change_passphrase_with_the_wrong_old_passphrase_changes_nothing(
    keystore: tuple[Path, bytes],
) -> None:
    path, store_key = keystore
    before = path.read_bytes()
    with pytest.raises(WrongPassphrase):
        change_passphrase(path, "wrong", "new")
    assert path.read_bytes() == before
    assert open_keystore(path, PASS) == store_key


def test_change_passphrase_uses_a_fresh_salt(keystore: tuple[Path, bytes]) -> None:
    path, _ = keystore
    salt_before = HEADER.unpack_from(path.read_bytes())[5]
    change_passphrase(path, PASS, PASS)
    assert HEADER.unpack_from(path.read_bytes())[5] != salt_before


# ---- AtRest ------------------------------------------------------------------------------


def test_at_rest_round_trips_a_value_under_its_context() -> None:
    atrest = AtRest(b"k" * 32)
    sealed = atrest.seal(b"secret value", b"line-keys" + b"L" * 16)
    assert b"secret value" not in sealed
    assert atrest.open(sealed, b"line-keys" + b"L" * 16) == b"secret value"


def test_at_rest_refuses_a_value_moved_to_another_context() -> None:
    atrest = AtRest(b"k" * 32)
    sealed = atrest.seal(b"body of message 1", b"body" + b"L" * 16 + b"in" + (1).to_bytes(8, "big"))
    with pytest.raises(CorruptKeystore):
        atrest.open(sealed, b"body" + b"L" * 16 + b"in" + (2).to_bytes(8, "big"))


def test_at_rest_refuses_another_store_key() -> None:
    sealed = AtRest(b"k" * 32).seal(b"x", b"ctx")
    with pytest.raises(CorruptKeystore):
        AtRest(b"j" * 32).open(sealed, b"ctx")


@pytest.mark.parametrize("damage", ["flip-nonce", "flip-tag", "truncate", "empty"])
def test_at_rest_refuses_a_damaged_value(damage: str) -> None:
    atrest = AtRest(b"k" * 32)
    sealed = bytearray(atrest.seal(b"value", b"ctx"))
    if damage == "flip-nonce":
        sealed[0] ^= 1
    elif damage == "flip-tag":
        sealed[-1] ^= 1
    elif damage == "truncate":
        sealed = sealed[:20]
    else:
        sealed = bytearray()
    with pytest.raises(CorruptKeystore):
        atrest.open(bytes(sealed), b"ctx")


def test_at_rest_uses_a_fresh_nonce_for_every_value() -> None:
    atrest = AtRest(b"k" * 32)
    a, b = atrest.seal(b"same", b"ctx"), atrest.seal(b"same", b"ctx")
    assert a[:12] != b[:12]
    assert a != b
