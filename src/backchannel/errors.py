"""The one error tree of backchannel.

Every failure a user or a program can see is one of these classes. The docstring of each
class is written for the operator: the CLI prints it (with the specific message) instead of
a traceback. Third-party exceptions are mapped to these at the boundary where they arise.

- ``LocalError``: you misused the API or the CLI (wrong passphrase, unknown line, ...).
- ``RemoteError``: a peer or a relay sent something wrong. Parsers of anything that arrives
  from the network raise only this family (a property test checks it).
- ``StorageError``, ``TransportError``, ``ConfigError``: the disk, the network, the config.

A ``DecryptError`` never says why decryption failed: that would be an oracle.
"""

from __future__ import annotations


class BackchannelError(Exception):
    """Something went wrong in backchannel."""

    #: A short stable machine name, used in ``--json`` output and on the control socket.
    code: str = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self)


# ---- local: the caller's mistake -------------------------------------------------------


class LocalError(BackchannelError):
    """The request cannot be carried out as given."""

    code = "local_error"


class WrongPassphrase(LocalError):
    """The passphrase does not open this station's keystore. Check it and try again."""

    code = "wrong_passphrase"


class UnknownLine(LocalError):
    """There is no line by that name or id. `backchannel lines` lists the lines."""

    code = "unknown_line"


class UnknownMessage(LocalError):
    """There is no such message on that line. `backchannel inbox` lists the messages."""

    code = "unknown_message"


class InvitationAlreadyAccepted(LocalError):
    """This invitation has already been accepted here; each invitation pairs one line once."""

    code = "invitation_already_accepted"


class StationNotInitialised(LocalError):
    """No station lives in this directory yet. Run `backchannel init` first."""

    code = "station_not_initialised"


class StationAlreadyInitialised(LocalError):
    """A station already lives in this directory; it was left untouched."""

    code = "station_already_initialised"


class StationNotRunning(LocalError):
    """The station is not running. Start it with `backchannel station run`."""

    code = "station_not_running"


class StationAlreadyRunning(LocalError):
    """Another station process already runs in this directory."""

    code = "station_already_running"


class MessageTooLarge(LocalError):
    """The message is too long for one frame. Split it into several messages."""

    code = "message_too_large"


class InvalidArgument(LocalError):
    """An argument is not valid."""

    code = "invalid_argument"


class LineNotReady(LocalError):
    """The line cannot take this action in its current state."""

    code = "line_not_ready"


class UnsafeControlSocket(LocalError):
    """The control socket's directory is not private to you, so another local user could
    plant a socket there and pose as the station. The message names the directory and the fix."""

    code = "unsafe_control_socket"


class ReleaseRefused(LocalError):
    """This operator may not release that message: releasing takes a second operator, not the
    drafter, with the releaser or admin role. Nothing was sent."""

    code = "release_refused"


class InsecureRelayURL(LocalError):
    """A plain ``ws://`` relay URL names an address that is not loopback, so frames and the
    relay's access token would cross the network in clear. Use ``wss://`` (with the relay's
    ``#pin=…``, printed by ``backchannel relay pin``), or allow plain WebSocket explicitly
    (``allow_plain = true`` in [station], or ``station run --insecure-plain``)."""

    code = "insecure_relay_url"


class IdempotencyKeyReused(LocalError):
    """This idempotency key (send --id) already names another message: a different text,
    precedence or line. A retry must repeat the original send exactly; a new message needs a
    new key. Nothing was sent."""

    code = "idempotency_key_reused"


class FlashRefused(LocalError):
    """This line refuses FLASH messages until its safety number is verified
    (refuse_flash_unverified in the station's config). Compare the safety numbers
    (`backchannel verify LINE`), or send at a lower precedence. Nothing was sent."""

    code = "flash_refused"


# ---- remote: a peer or relay misbehaved ------------------------------------------------


class RemoteError(BackchannelError):
    """A peer or a relay sent something that is not valid."""

    code = "remote_error"


class ProtocolError(RemoteError):
    """Received data does not follow the backchannel protocol (malformed or truncated)."""

    code = "protocol_error"


class UnsupportedVersion(ProtocolError):
    """Received data uses a protocol version this software does not speak."""

    code = "unsupported_version"


class FrameTooLarge(ProtocolError):
    """A frame is larger than the protocol allows."""

    code = "frame_too_large"


class UnprintableName(ProtocolError):
    """A name from the peer (its station name in the hello, or the name of the operator who
    acknowledged a message) is not 1 to 64 bytes of printable text, so the frame was refused.

    A conforming station never sends such a name; the peer runs modified software or is
    hostile. The refusal is counted and raised as an alarm; the line itself keeps working.
    """

    code = "unprintable_name"


class DecryptError(RemoteError):
    """A frame could not be authenticated or decrypted; it was dropped."""

    code = "decrypt_error"


class ReplayError(RemoteError):
    """A frame that was already received arrived again; the copy was dropped."""

    code = "replay"


class MisaddressedFrame(RemoteError):
    """A frame arrived for a line or direction this station does not have; it was dropped."""

    code = "misaddressed"


class InvalidInvitation(RemoteError):
    """The invitation is damaged, forged or not an invitation. Ask for a fresh copy."""

    code = "invalid_invitation"


class InvitationAlreadyUsed(RemoteError):
    """A second party tried to accept an invitation that already paired a line."""

    code = "invitation_already_used"


class BadSignature(RemoteError):
    """A signature does not verify."""

    code = "bad_signature"


class RecordInvalid(RemoteError):
    """The transcript does not verify: it was altered, truncated, or signed by other keys."""

    code = "record_invalid"

    def __init__(self, message: str | None = None, reason: str = "malformed") -> None:
        super().__init__(message)
        #: Which step of the arbiter's procedure refused it (docs/PROTOCOL.md §11.5), e.g.
        #: "same-station" or "seal": stable, so another verifier can be compared with this one.
        self.reason = reason


class RelayPinMismatch(RemoteError):
    """The relay presented a TLS certificate whose public key is not the one pinned in its URL
    (``#pin=…``), so the station refused it before sending anything. Someone may be posing as
    the relay; or its operator changed its key, and then the line needs the new pin (a circuit
    added with the new URL). The message names the expected and the presented pin."""

    code = "relay_pin_mismatch"


class RelayRefused(RemoteError):
    """The relay refused the request."""

    code = "relay_refused"

    def __init__(self, message: str | None = None, relay_code: int = 0) -> None:
        super().__init__(message)
        self.relay_code = relay_code


# ---- environment -----------------------------------------------------------------------


class StorageError(BackchannelError):
    """The station's or relay's database could not be read or written.

    ``kind`` says what failed, for the relay's metrics: ``connection`` (the database server
    is unreachable or the connection broke), ``disk_full``, ``read_only``, ``io`` or ``other``.
    """

    code = "storage_error"

    def __init__(self, message: str = "", kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


class CorruptKeystore(StorageError):
    """The keystore file is damaged or is not a backchannel keystore."""

    code = "corrupt_keystore"


class TransportError(BackchannelError):
    """The network connection failed."""

    code = "transport_error"


class ConfigError(BackchannelError):
    """The configuration is not valid."""

    code = "config_error"


def all_error_classes() -> list[type[BackchannelError]]:
    """Every error class, for the control socket to map codes back to types."""
    seen: list[type[BackchannelError]] = []
    stack: list[type[BackchannelError]] = [BackchannelError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_from_code(code: str, message: str) -> BackchannelError:
    """Rebuild an error raised in another process from its code and message."""
    for cls in all_error_classes():
        if cls.code == code:
            err = cls.__new__(cls)
            BackchannelError.__init__(err, message)
            return err
    return BackchannelError(message)
