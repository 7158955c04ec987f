"""Test only: light Argon2 parameters for the keystores and password hashes tests create.

Production code reads no test switch: the tests inject these parameters themselves. In the
pytest process ``tests/conftest.py`` calls :func:`install`; processes the tests start (the
CLI, ``station run``) get ``fast_site/`` on ``PYTHONPATH`` (see :data:`SITE`), whose
``sitecustomize`` calls it at interpreter start-up.
"""

from __future__ import annotations

from pathlib import Path

from backchannel.station.keystore import KdfParams, set_default_params
from backchannel.station.operators import HashParams, set_default_hash_params

LIGHT_KDF = KdfParams(memory_kib=1024, iterations=1, lanes=1)
LIGHT_HASH = HashParams(memory_kib=1024, iterations=1, lanes=1)

#: The directory whose ``sitecustomize`` installs the light parameters in a child process.
SITE = Path(__file__).parent / "fast_site"


def install() -> None:
    set_default_params(LIGHT_KDF)
    set_default_hash_params(LIGHT_HASH)
