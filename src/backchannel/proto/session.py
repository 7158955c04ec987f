"""Olm, via vodozemac: the station identity and the ratchet sessions of a line.

We never implement the ratchet; we only feed it. Two rules from DESIGN.md shape this module:
Olm sessions are fed strictly in order (the envelope layer guarantees it), and every
vodozemac exception is mapped to our own errors here, at the boundary.

An Olm message travels as ``type (1) | ciphertext`` where type is Olm's own
(0 = pre-key, 1 = normal).
"""

from __future__ import annotations

import base64

import vodozemac

from backchannel.errors import DecryptError, ProtocolError, WrongPassphrase


def _ed25519_bytes(key: vodozemac.Ed25519PublicKey) -> bytes:
    text = key.to_base64()
    return base64.b64decode(text + "=" * (-len(text) % 4))


class OlmSession:
    """One Olm session of a line. Not thread-safe; the station serialises access."""

    def __init__(self, session: vodozemac.Session) -> None:
        self._session = session

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def encrypt(self, plaintext: bytes) -> bytes:
        message_type, ciphertext = self._session.encrypt(plaintext).to_parts()
        return bytes([message_type]) + ciphertext

    def decrypt(self, data: bytes) -> bytes:
        message = decode_olm(data)
        try:
            return self._session.decrypt(message)
        except ValueError:
            raise DecryptError() from None

    def pickle(self, key: bytes) -> str:
        return self._session.pickle(key)

    @classmethod
    def from_pickle(cls, pickled: str, key: bytes) -> OlmSession:
        try:
            return cls(vodozemac.Session.from_pickle(pickled, key))
        except ValueError:
            raise WrongPassphrase("a stored session cannot be opened with this key") from None


def decode_olm(data: bytes) -> vodozemac.AnyOlmMessage:
    if len(data) < 2 or data[0] not in (0, 1):
        raise ProtocolError("the Olm message is malformed")
    try:
        return vodozemac.AnyOlmMessage.from_parts(data[0], data[1:])
    except ValueError:
        raise ProtocolError("the Olm message is malformed") from None


class Identity:
    """A station's long-term identity: an Olm account (Curve25519 + Ed25519 keys)."""

    def __init__(self, account: vodozemac.Account) -> None:
        self._account = account

    @classmethod
    def generate(cls) -> Identity:
        return cls(vodozemac.Account())

    @property
    def identity_key(self) -> bytes:
        return self._account.curve25519_key.to_bytes()

    @property
    def signing_key(self) -> bytes:
        return _ed25519_bytes(self._account.ed25519_key)

    def sign(self, message: bytes) -> bytes:
        signature = self._account.sign(message).to_base64()
        return base64.b64decode(signature + "=" * (-len(signature) % 4))

    def new_one_time_key(self) -> bytes:
        """Generate, publish and return one fresh one-time key (for one invitation)."""
        before = set(self._account.one_time_keys)
        self._account.generate_one_time_keys(1)
        fresh = [k for key_id, k in self._account.one_time_keys.items() if key_id not in before]
        self._account.mark_keys_as_published()
        return fresh[0].to_bytes()

    def outbound_session(self, their_identity: bytes, their_one_time: bytes) -> OlmSession:
        try:
            session = self._account.create_outbound_session(
                vodozemac.Curve25519PublicKey.from_bytes(their_identity),
                vodozemac.Curve25519PublicKey.from_bytes(their_one_time),
            )
        except ValueError:
            raise ProtocolError("the peer's Olm keys are not valid") from None
        return OlmSession(session)

    def inbound_session(self, their_identity: bytes, data: bytes) -> tuple[OlmSession, bytes]:
        """Open the session from the peer's first (pre-key) message; returns its plaintext."""
        message = decode_olm(data)
        pre_key = message.to_pre_key()
        if pre_key is None:
            raise ProtocolError("the first Olm message of a line must be a pre-key message")
        try:
            session, plaintext = self._account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_bytes(their_identity), pre_key
            )
        except ValueError:
            raise DecryptError() from None
        return OlmSession(session), plaintext

    def pickle(self, key: bytes) -> str:
        return self._account.pickle(key)

    @classmethod
    def from_pickle(cls, pickled: str, key: bytes) -> Identity:
        try:
            return cls(vodozemac.Account.from_pickle(pickled, key))
        except ValueError:
            raise WrongPassphrase("the station identity cannot be opened with this key") from None
