"""A station's home directory: create one (keystore, database, identity) and open one.

The keystore holds the store key, sealed under the operator's passphrase; the database holds
everything else, the secret parts sealed at rest with that key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backchannel.clock import Rng, SystemRng
from backchannel.errors import InvalidArgument, StationAlreadyInitialised, StationNotInitialised
from backchannel.proto.invitation import valid_name
from backchannel.proto.primitives import MLDSA_SEED_LEN, require_mlkem
from backchannel.proto.session import Identity
from backchannel.station.keystore import AtRest, check_new_passphrase, create_keystore, open_keystore
from backchannel.station.private import secure_home
from backchannel.station.store import Store

KEYSTORE = "keystore.bcks"
DATABASE = "station.db"
CONFIG = "station.toml"


def init_home(home: Path, name: str, passphrase: str) -> None:
    """Create a new station in ``home``: keystore, database and identity."""
    require_mlkem()
    if not valid_name(name):
        raise InvalidArgument("a station name must be 1 to 64 bytes of printable text")
    check_new_passphrase(passphrase)
    if (home / KEYSTORE).exists():
        raise StationAlreadyInitialised(f"a station already lives in {home}; it was left untouched")
    secure_home(home)
    store_key = create_keystore(home / KEYSTORE, passphrase)
    store = Store.open(home / DATABASE)
    identity = Identity.generate()
    with store.transaction():
        store.set_meta("name", name.encode("utf-8"))
        store.set_meta("account", identity.pickle(store_key).encode("ascii"))
        store.set_meta("mldsa", AtRest(store_key).seal(SystemRng().bytes(MLDSA_SEED_LEN), b"mldsa-seed"))
    store.close()


@dataclass
class Opened:
    store: Store
    atrest: AtRest
    identity: Identity
    name: str


def open_home(home: Path, passphrase: str, rng: Rng) -> Opened:
    """Open an existing station's home; raises ``WrongPassphrase`` for a wrong passphrase."""
    require_mlkem()
    if not (home / KEYSTORE).exists():
        raise StationNotInitialised(f"no station lives in {home}. Run `backchannel init` first.")
    store_key = open_keystore(home / KEYSTORE, passphrase)
    secure_home(home)
    store = Store.open(home / DATABASE)
    account = store.get_meta("account")
    name = store.get_meta("name")
    if account is None or name is None:
        store.close()
        raise StationNotInitialised(f"the station in {home} was not fully initialised; init again")
    identity = Identity.from_pickle(account.decode("ascii"), store_key)
    return Opened(store, AtRest(store_key, rng), identity, name.decode("utf-8"))
