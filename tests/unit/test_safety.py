"""The safety number: 60 digits, the same on both screens, different if any key differs."""

from __future__ import annotations

import pytest

from backchannel.proto.safety import grouped, safety_number, station_fingerprint
from backchannel.proto.session import Identity


@pytest.fixture(scope="module")
def keys() -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    a, b = Identity.generate(), Identity.generate()
    return (a.identity_key, a.signing_key), (b.identity_key, b.signing_key)


def test_both_stations_compute_the_same_number(keys: tuple[tuple[bytes, bytes], ...]) -> None:
    ours, theirs = keys
    assert safety_number(ours, theirs) == safety_number(theirs, ours)


def test_the_number_is_sixty_decimal_digits(keys: tuple[tuple[bytes, bytes], ...]) -> None:
    number = safety_number(*keys)
    assert len(number) == 60
    assert number.isdigit() and number.isascii()


def test_the_number_is_the_two_fingerprints_in_ascending_order(keys: tuple[tuple[bytes, bytes], ...]) -> None:
    ours, theirs = keys
    a, b = station_fingerprint(*ours), station_fingerprint(*theirs)
    assert len(a) == len(b) == 30
    assert safety_number(ours, theirs) == min(a, b) + max(a, b)


def test_a_fingerprint_is_deterministic() -> None:
    assert station_fingerprint(b"\x01" * 32, b"\x02" * 32) == station_fingerprint(b"\x01" * 32, b"\x02" * 32)


@pytest.mark.parametrize("which", ["our-identity", "our-signing", "their-identity", "their-signing"])
def test_the_number_changes_if_any_one_key_changes(keys: tuple[tuple[bytes, bytes], ...], which: str) -> None:
    ours, theirs = keys
    substitute = Identity.generate().identity_key
    changed_ours, changed_theirs = list(ours), list(theirs)
    if which == "our-identity":
        changed_ours[0] = substitute
    elif which == "our-signing":
        changed_ours[1] = substitute
    elif which == "their-identity":
        changed_theirs[0] = substitute
    else:
        changed_theirs[1] = substitute
    before = safety_number(ours, theirs)
    after = safety_number((changed_ours[0], changed_ours[1]), (changed_theirs[0], changed_theirs[1]))
    assert after != before


def test_swapping_a_stations_two_keys_changes_its_fingerprint() -> None:
    assert station_fingerprint(b"\x01" * 32, b"\x02" * 32) != station_fingerprint(b"\x02" * 32, b"\x01" * 32)


def test_grouped_gives_twelve_blocks_of_five(keys: tuple[tuple[bytes, bytes], ...]) -> None:
    number = safety_number(*keys)
    blocks = grouped(number).split(" ")
    assert len(blocks) == 12
    assert all(len(b) == 5 for b in blocks)
    assert "".join(blocks) == number
