"""The safety number: 60 digits, the same on both screens, different if any key differs."""

from __future__ import annotations

import pytest

from backchannel.proto.primitives import mldsa_public
from backchannel.proto.safety import grouped, safety_number, station_fingerprint
from backchannel.proto.session import Identity

Keys = tuple[bytes, bytes, bytes]


@pytest.fixture(scope="module")
def keys() -> tuple[Keys, Keys]:
    a, b = Identity.generate(), Identity.generate()
    return (a.identity_key, a.signing_key, mldsa_public(b"a" * 32)), (
        b.identity_key,
        b.signing_key,
        mldsa_public(b"b" * 32),
    )


def test_both_stations_compute_the_same_number(keys: tuple[Keys, ...]) -> None:
    ours, theirs = keys
    assert safety_number(ours, theirs) == safety_number(theirs, ours)


def test_the_number_is_sixty_decimal_digits(keys: tuple[Keys, ...]) -> None:
    number = safety_number(*keys)
    assert len(number) == 60
    assert number.isdigit() and number.isascii()


def test_the_number_is_the_two_fingerprints_in_ascending_order(keys: tuple[Keys, ...]) -> None:
    ours, theirs = keys
    a, b = station_fingerprint(*ours), station_fingerprint(*theirs)
    assert len(a) == len(b) == 30
    assert safety_number(ours, theirs) == min(a, b) + max(a, b)


def test_a_fingerprint_is_deterministic() -> None:
    assert station_fingerprint(b"\x01" * 32, b"\x02" * 32, b"") == station_fingerprint(
        b"\x01" * 32, b"\x02" * 32, b""
    )


@pytest.mark.parametrize("side", ["ours", "theirs"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["identity", "signing", "record"])
def test_the_number_changes_if_any_one_key_changes(keys: tuple[Keys, ...], side: str, which: int) -> None:
    ours, theirs = keys
    substitute = mldsa_public(b"c" * 32) if which == 2 else Identity.generate().identity_key
    changed = list(ours if side == "ours" else theirs)
    changed[which] = substitute
    new: Keys = (changed[0], changed[1], changed[2])
    before = safety_number(ours, theirs)
    after = safety_number(new, theirs) if side == "ours" else safety_number(ours, new)
    assert after != before


def test_swapping_a_stations_two_keys_changes_its_fingerprint() -> None:
    assert station_fingerprint(b"\x01" * 32, b"\x02" * 32, b"") != station_fingerprint(
        b"\x02" * 32, b"\x01" * 32, b""
    )


def test_grouped_gives_twelve_blocks_of_five(keys: tuple[Keys, ...]) -> None:
    number = safety_number(*keys)
    blocks = grouped(number).split(" ")
    assert len(blocks) == 12
    assert all(len(b) == 5 for b in blocks)
    assert "".join(blocks) == number
