#!/usr/bin/env python3
"""Generate the protocol test vectors in ``docs/vectors/`` from the code.

    python tools/gen_vectors.py            # (re)write docs/vectors/*.json
    python tools/gen_vectors.py --check    # exit 1 if the files on disk differ

Every input is fixed: byte strings come from ``fixed(label, n)``, which is
``FakeRng(b"backchannel vectors/" + label).bytes(n)`` (SHA-256 in counter mode, see
``backchannel.clock.FakeRng``), so the output is the same on every run and every machine.
Bytes are written as lowercase hex.

Two inputs cannot be produced deterministically through the library and are constants here:

- the ML-KEM-768 ciphertext (encapsulation randomness belongs to ``cryptography``): it was
  produced once by ``mlkem_encapsulate(mlkem_public(fixed("mlkem-seed", 64)))`` and is
  stored below; decapsulating it is deterministic;
- Olm ciphertexts (vodozemac draws its own randomness): no vector holds a real one. Where a
  frame carries Olm bytes, the vectors use a labelled placeholder, and the Olm layer is
  tested by round trip (tests/conformance/test_vectors.py), never by bytes.

``tests/conformance/test_vectors.py`` checks the code against every value here and runs this
script with ``--check``, so docs/PROTOCOL.md, the vectors and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from backchannel.clock import FakeRng
from backchannel.errors import BadSignature
from backchannel.proto import envelope, frames, keyschedule, transcript, wire
from backchannel.proto.encoding import cbor_encode
from backchannel.proto.envelope import Header, Kind
from backchannel.proto.export import EXPORT_FORMAT, SEAL_CONTEXT
from backchannel.proto.invitation import (
    INVITATION_CONTEXT,
    Invitation,
    MailboxCapability,
    SignedInvitation,
    encode_invitation,
)
from backchannel.proto.keyschedule import derive_line_keys
from backchannel.proto.payloads import (
    Acknowledged,
    Checkpoint,
    Circuits,
    Delivered,
    Hello,
    LinkTest,
    LinkTestReply,
    Message,
    Payload,
    Precedence,
    Welcome,
    decode_payload,
    encode_payload,
    hello_binding,
)
from backchannel.proto.primitives import (
    aead_open,
    aead_seal,
    argon2id,
    ed25519_public_from_seed,
    ed25519_sign,
    hmac_sha256,
    mldsa_public,
    mldsa_sign,
    mldsa_verify,
    mlkem_decapsulate,
    mlkem_public,
    sha256,
    x25519,
    x25519_public,
)
from backchannel.proto.record import (
    CHECKPOINT_CONTEXT,
    ENTRY_CONTEXT,
    RECENT,
    SHORT,
    Seen,
    checkpoint_message,
    compare_checkpoint,
    decode_entry,
    encode_entry,
    entry_message,
    short_hashes,
)
from backchannel.proto.relay_pin import pin_text, with_pin
from backchannel.proto.safety import grouped, safety_number, station_fingerprint
from backchannel.proto.transcript import Transcript
from backchannel.relay.mailbox import message_id
from backchannel.station.keystore import HEADER as KEYSTORE_HEADER
from backchannel.station.keystore import AtRest, KdfParams, create_keystore
from backchannel.tls import spki_pin

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "vectors"
FORMAT = 1
GENERATOR = "tools/gen_vectors.py"

#: ML-KEM-768 ciphertext encapsulated once to mlkem_public(fixed("mlkem-seed", 64)).
MLKEM_CIPHERTEXT = bytes.fromhex(
    "8edf143aa51660d1ed6f0c222cb8b22cc7c2d5a18ca4f94a518de34d8478561c9c5fadf8de3455716bd335aa9b3dfaf1"
    "2f90c543d3d96321214d158565a171389cdd5da13d09c0bfd96932ba8b6db69e970a52d0356486987f0d3c1bb8b9086d"
    "c188dbef1d48279f26516d7f2ea29150ab8c209664a26dd5dbf6645bcda6e937717ef177475050b3d920eeb317ca166a"
    "4fbe68aacf72b8d482899add4906e6e6a66bf6b231f9e3b644ac04bb2221e5b1dac76cd21d43193e59f231e428cd1bde"
    "700fdca1521a05eec5ce531963b355c128efd03f2964b38bc918637fdadd54f1d4575afe8fefb9c6350ed8d7325628e0"
    "8637b87220cb3ef44524f0edcff4aaa9b257de0db27cf346987ccaa5ac0ffdf87ecaa3ce597dd17ec8b1bc1bb5741cd6"
    "b93ec02a0e25eb10c96e4e8c896ce98112d0c19f9c3da46d0120c6d039312a4e294252dace74f52f3c9bdce6a7e6aab3"
    "d162f8a8b0184692c3cc663bb6f55813922a1b66d038b6f4787249828756608624f723de7db9049e78fe9219b31633f6"
    "c2e91ed17869734a6e075d9b1fdb674566afa800110a22c6cc2d0ce5c8ae66f9dccc0f86b61174152f061ab4d2a83b7f"
    "d6d05e361a457cdb60ab5598c959e96df45f1f8de33751075bc139e682b75577a4573ea075fa50fda2bd9d3eef367391"
    "a9604a49ca09079299451738e2727132a342c9cb0c2b8ce741f7f09fd253545d36ace2825b5054c47498ecd4c06dbd44"
    "0a89f09fe6ae78bf1f6f71ba3aa8b75741441f226efcf4dba0e9ebd63d21411347280ed3d8fbe970665870b9e08a8ea4"
    "92929c07cb99e1462e3c6749c0e1a5de5078b7e2d4eb92c05ddae7ae59a46c34489740370eaf77f3aef18eced1551d28"
    "425cd94a600de5149cc1418b4ea664bfa57a71b959cb5e2aac56988cc9a2d0fe4f79334e333d41f5bd86939df141b36e"
    "7a9c7eac9b739a8709ad5cafaafb1c541187b12af654e05128a41e34c12b8ee002257bec7e46650ceedc1451ba2306fa"
    "3e013b34038fbeb333db9b5d97b0f496040cc71e840a35671341a618d92f373067f500440eed1d33969871a44cfd4374"
    "6c96c7af1bd3a878e1a881ebbffa3ea9b6f2b1b70f7c148b059ee827df1345bbb6b8242469bbf765f36c1ec2fee1e16f"
    "739573c7da9791c9b2790fefbae5b551bfac443de9f9e27c2872e467e7b08da8851c7dd7ec6f90d7bac82da01cdaa04f"
    "a184ccaf86f0e47ace5143895c3576a543378b608e66e5cc9c97c5bb73a30cc826cd0ebeec059533e97e1f7f4b2282b2"
    "6e3a3b30a2e5ddbbaaec603ff0eb55555913fb0febd76ab3fe42b9e35f72b4275686a798b40b2ecda54abcd12eec7c43"
    "17170b689e638899d64ab191c27afedca6a778853193d8161481f4c9fa972d867c3e0baa11efeba1e4c48e9fe638e9cd"
    "df75597558591fe1b3fd4832f62c04505906bc20ae02d0ec405f6530b21c11f86e8e8c6b4849ed77efdc58ffffa3d20f"
    "34f4991c93addb298e02e701ef3fd748324c8419fd91fe4274d359b84c0d7f8f"
)

#: Stands in for an Olm message inside vectors (real Olm ciphertexts are not reproducible).
OLM_PLACEHOLDER_NOTE = "placeholder bytes where a real frame carries an Olm message (type byte | ciphertext)"


def fixed(label: str, n: int) -> bytes:
    """The fixed input called ``label``: n bytes of FakeRng(b"backchannel vectors/" + label)."""
    return FakeRng(b"backchannel vectors/" + label.encode("ascii")).bytes(n)


def h(data: bytes) -> str:
    return data.hex()


def flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


def error_name(fn: Any, *args: Any) -> str:
    """Run ``fn`` and return the class name of the exception it must raise."""
    try:
        fn(*args)
    except Exception as exc:
        return type(exc).__name__
    raise AssertionError(f"{fn.__name__}{args!r:.60} did not raise")


def doc(description: str, **body: Any) -> dict[str, Any]:
    return {"format": FORMAT, "generator": GENERATOR, "description": description, **body}


# ---- the shared world: one inviter, one accepter, one invitation, one pairing ------------------

MLKEM_SEED = fixed("mlkem-seed", 64)
LINE_ID = fixed("line-id", 16)
INVITER_IK_SECRET = fixed("inviter/identity-secret", 32)
INVITER_ED_SEED = fixed("inviter/signing-seed", 32)
INVITER_OTK_SECRET = fixed("inviter/one-time-secret", 32)
PAIRING_SECRET = fixed("inviter/pairing-secret", 32)
ACCEPTER_IK_SECRET = fixed("accepter/identity-secret", 32)
ACCEPTER_ED_SEED = fixed("accepter/signing-seed", 32)
ACCEPTER_EPHEMERAL = fixed("accepter/ephemeral-secret", 32)
CREATED_MS = 1_700_000_000_000
EXPIRES_MS = CREATED_MS + 72 * 3600 * 1000


def inviter_keys() -> tuple[bytes, bytes]:
    return x25519_public(INVITER_IK_SECRET), ed25519_public_from_seed(INVITER_ED_SEED)


def accepter_keys() -> tuple[bytes, bytes]:
    return x25519_public(ACCEPTER_IK_SECRET), ed25519_public_from_seed(ACCEPTER_ED_SEED)


def capability(label: str, url: str) -> MailboxCapability:
    return MailboxCapability(url, fixed(label + "/send-id", 16), fixed(label + "/send-seed", 32))


def invitation_one() -> Invitation:
    ik, ed = inviter_keys()
    return Invitation(
        line_id=LINE_ID,
        name="Alpha duty desk",
        identity_key=ik,
        signing_key=ed,
        one_time_key=x25519_public(INVITER_OTK_SECRET),
        pairing_key=x25519_public(PAIRING_SECRET),
        kem_key=mlkem_public(MLKEM_SEED),
        mailboxes=(capability("inviter/mailbox-1", "wss://relay-one.example:7400"),),
        created_at=CREATED_MS,
        expires_at=EXPIRES_MS,
        on_record=False,
    )


def invitation_two() -> Invitation:
    return dataclasses.replace(
        invitation_one(),
        line_id=fixed("line-id-2", 16),
        name="Станция Альфа",
        mailboxes=(
            capability("inviter/mailbox-1", "wss://relay-one.example:7400"),
            capability("inviter/mailbox-2", "ws://127.0.0.1:7401"),
        ),
        on_record=True,
        pq_key=mldsa_public(fixed("inviter/mldsa-seed", 32)),
    )


def relay_certificate() -> bytes:
    """A relay's certificate, reproducibly: Ed25519 signs deterministically, and every field
    is fixed (PROTOCOL §3.1: the pin is the SHA-256 of its SubjectPublicKeyInfo)."""
    key = Ed25519PrivateKey.from_private_bytes(fixed("relay/tls-key", 32))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "backchannel relay")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(fixed("relay/tls-serial", 8), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=7300))
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def relay_pin_url() -> str:
    return with_pin("wss://relay-one.example:7400", spki_pin(relay_certificate()))


def invitation_three() -> Invitation:
    """Invitation 0 naming its relay by URL and pin (wss://…#pin=…): the same bytes but the URL."""
    return dataclasses.replace(
        invitation_one(),
        name="Alpha duty desk (pinned relay)",
        mailboxes=(capability("inviter/mailbox-1", relay_pin_url()),),
    )


def sign_invitation(inv: Invitation) -> SignedInvitation:
    return encode_invitation(inv, ed25519_sign(INVITER_ED_SEED, inv.signed_message()))


def raw_invitation_blob(body_map: dict[str, Any]) -> bytes:
    """An invitation blob around an arbitrary body map, validly signed (for negative tests)."""
    body = cbor_encode(body_map)
    signature = ed25519_sign(INVITER_ED_SEED, INVITATION_CONTEXT + body)
    return b"BCI\x01" + struct.pack(">H", len(body)) + body + signature


def pairing_secrets() -> dict[str, bytes]:
    signed = sign_invitation(invitation_one())
    inv = signed.invitation
    x_secret = x25519(ACCEPTER_EPHEMERAL, inv.pairing_key)
    kem_secret = mlkem_decapsulate(MLKEM_SEED, MLKEM_CIPHERTEXT)
    keys = derive_line_keys(x_secret, kem_secret, signed.digest, inv.line_id)
    return {
        "digest": signed.digest,
        "x25519_secret": x_secret,
        "mlkem_secret": kem_secret,
        "to_accepter": keys.to_accepter,
        "to_inviter": keys.to_inviter,
    }


def hello_payload() -> Hello:
    ik, _ = accepter_keys()
    digest = sign_invitation(invitation_one()).digest
    binding = ed25519_sign(ACCEPTER_ED_SEED, hello_binding(LINE_ID, ik, digest))
    return Hello(
        "Bravo duty desk", (capability("accepter/mailbox-1", "wss://relay-one.example:7400"),), binding
    )


def hello_envelope() -> tuple[Header, bytes, bytes]:
    """The accepter's hello envelope of the shared pairing: (header, inner, envelope bytes)."""
    ik, ed = accepter_keys()
    olm = b"\x00" + fixed("olm-placeholder/hello", 120)
    inner = ik + ed + olm
    header = Header(
        Kind.HELLO,
        LINE_ID,
        1,
        1,
        fixed("hello/nonce", 12),
        x25519_public(ACCEPTER_EPHEMERAL),
        MLKEM_CIPHERTEXT,
    )
    return header, inner, envelope.seal(header, pairing_secrets()["to_inviter"], inner)


# ---- relay_frames.json ---------------------------------------------------------------------------


def frame_vector(description: str, frame: frames.Frame) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(frame):
        value = getattr(frame, f.name)
        fields[f.name] = h(value) if isinstance(value, bytes) else int(value) if f.name == "code" else value
    return {
        "description": description,
        "frame": type(frame).__name__,
        "fields": fields,
        "encoded": h(frames.encode(frame)),
    }


def relay_frames() -> dict[str, Any]:
    recv_seed, send_seed = fixed("relay/recv-seed", 32), fixed("relay/send-seed", 32)
    recv_key, send_key = ed25519_public_from_seed(recv_seed), ed25519_public_from_seed(send_seed)
    recv_id, send_id = fixed("relay/recv-id", 16), fixed("relay/send-id", 16)
    nonce = fixed("relay/session-nonce", 32)
    payload = fixed("relay/payload", 48)
    msg_id = message_id(payload)
    sub_msg = frames.auth_message(nonce, frames.FrameType.SUBSCRIBE, recv_id)
    send_msg = frames.auth_message(nonce, frames.FrameType.AUTH_SEND, send_id)
    sub_sig, send_sig = ed25519_sign(recv_seed, sub_msg), ed25519_sign(send_seed, send_msg)

    vectors = [
        frame_vector(
            "CREATE: the two Ed25519 public keys of a new mailbox", frames.Create(1, recv_key, send_key)
        ),
        frame_vector(
            "SUBSCRIBE: receive key proven over the session nonce", frames.Subscribe(2, recv_id, sub_sig)
        ),
        frame_vector(
            "AUTH_SEND: send key proven over the session nonce", frames.AuthSend(3, send_id, send_sig)
        ),
        frame_vector("SEND: an opaque payload (normally an envelope)", frames.Send(4, send_id, payload)),
        frame_vector("SEND with an empty payload (legal in the codec)", frames.Send(5, send_id, b"")),
        frame_vector("ACK: delete a delivered frame", frames.Ack(6, recv_id, msg_id)),
        frame_vector("PING with the largest request id", frames.Ping(0xFFFFFFFF)),
        frame_vector("WELCOME: pushed first on every connection, request id 0", frames.Welcome(nonce)),
        frame_vector("OK: answer to SUBSCRIBE, AUTH_SEND, ACK, PING", frames.Ok(2)),
        frame_vector("CREATED: the relay's two random mailbox ids", frames.Created(1, recv_id, send_id)),
        frame_vector("STORED: durable; msg_id = SHA-256(payload)[:16]", frames.Stored(4, msg_id)),
        frame_vector("DELIVER: pushed, request id 0", frames.Deliver(recv_id, msg_id, payload)),
        frame_vector(
            "ERROR: code and UTF-8 text",
            frames.Error(4, frames.RelayErrorCode.MAILBOX_FULL, "mailbox is full (100000 frames waiting)"),
        ),
        frame_vector("ERROR with empty text", frames.Error(0, frames.RelayErrorCode.MALFORMED, "")),
    ]

    def header(version: int, ftype: int, rid: int) -> bytes:
        return frames.HEADER.pack(version, ftype, rid)

    ok_create = frames.encode(frames.Create(1, recv_key, send_key))
    malformed_inputs: list[tuple[str, bytes, int]] = [
        ("empty input", b"", frames.MAX_PAYLOAD),
        ("shorter than the 6-byte header", header(1, 0x06, 7)[:5], frames.MAX_PAYLOAD),
        ("version 2", header(2, 0x06, 7), frames.MAX_PAYLOAD),
        ("version 0 with a CREATE body", b"\x00" + ok_create[1:], frames.MAX_PAYLOAD),
        ("unknown frame type 0x07", header(1, 0x07, 7), frames.MAX_PAYLOAD),
        ("unknown frame type 0x85", header(1, 0x85, 7), frames.MAX_PAYLOAD),
        ("CREATE one byte short", ok_create[:-1], frames.MAX_PAYLOAD),
        ("CREATE one byte long", ok_create + b"\x00", frames.MAX_PAYLOAD),
        ("PING with a body", header(1, 0x06, 7) + b"\x00", frames.MAX_PAYLOAD),
        ("OK with a body", header(1, 0x81, 7) + b"\x00", frames.MAX_PAYLOAD),
        ("SEND shorter than its mailbox id", header(1, 0x04, 7) + send_id[:15], frames.MAX_PAYLOAD),
        ("SEND payload over a 16-byte limit", header(1, 0x04, 7) + send_id + bytes(17), 16),
        ("frame longer than header + 32 + limit", header(1, 0x84, 0) + bytes(32 + 17), 16),
        ("DELIVER without a msg_id", header(1, 0x84, 0) + recv_id + msg_id[:8], frames.MAX_PAYLOAD),
        ("WELCOME with a short nonce", header(1, 0x80, 0) + nonce[:31], frames.MAX_PAYLOAD),
        ("STORED with a short msg_id", header(1, 0x83, 4) + msg_id[:15], frames.MAX_PAYLOAD),
        ("ERROR without its code", header(1, 0x8F, 4) + b"\x00", frames.MAX_PAYLOAD),
        ("ERROR text not UTF-8", header(1, 0x8F, 4) + b"\x00\x01\xff\xfe", frames.MAX_PAYLOAD),
    ]
    malformed = [
        {
            "description": d,
            "input": h(data),
            "max_payload": limit,
            "error": error_name(frames.decode, data, limit),
        }
        for d, data, limit in malformed_inputs
    ]
    return doc(
        "Relay frames: frames.encode/decode. Each WebSocket binary message is one frame: "
        "version (1) = 1 | type (1) | request id (4, big-endian) | body.",
        constants={
            "version": frames.VERSION,
            "header_len": frames.HEADER.size,
            "id_len": frames.ID_LEN,
            "key_len": frames.KEY_LEN,
            "sig_len": frames.SIG_LEN,
            "nonce_len": frames.NONCE_LEN,
            "max_payload": frames.MAX_PAYLOAD,
            "auth_context": h(frames.AUTH_CONTEXT),
            "frame_types": {t.name: int(t) for t in frames.FrameType},
            "error_codes": {c.name: int(c) for c in frames.RelayErrorCode},
        },
        frames=vectors,
        auth=[
            {
                "description": "SUBSCRIBE authorisation: signed by the mailbox's receive key",
                "nonce": h(nonce),
                "frame_type": int(frames.FrameType.SUBSCRIBE),
                "mailbox_id": h(recv_id),
                "message": h(sub_msg),
                "signer_seed": h(recv_seed),
                "public_key": h(recv_key),
                "signature": h(sub_sig),
            },
            {
                "description": "AUTH_SEND authorisation: signed by the mailbox's send key",
                "nonce": h(nonce),
                "frame_type": int(frames.FrameType.AUTH_SEND),
                "mailbox_id": h(send_id),
                "message": h(send_msg),
                "signer_seed": h(send_seed),
                "public_key": h(send_key),
                "signature": h(send_sig),
            },
        ],
        msg_ids=[{"payload": h(p), "msg_id": h(message_id(p))} for p in (payload, b"", hello_envelope()[2])],
        malformed=malformed,
    )


# ---- envelope.json -------------------------------------------------------------------------------


def pad_inner(n: int) -> bytes:
    """The inner used by the padding vectors: byte i is (7*i + 1) mod 256."""
    return bytes((7 * i + 1) % 256 for i in range(n))


def header_fields(header: Header) -> dict[str, Any]:
    return {
        "kind": int(header.kind),
        "line_id": h(header.line_id),
        "direction": header.direction,
        "seq": header.seq,
        "nonce": h(header.nonce),
        "hello_key": h(header.hello_key),
        "hello_kem": h(header.hello_kem),
    }


def envelope_vectors() -> dict[str, Any]:
    key = fixed("envelope/data-key", 32)
    data_header = Header(Kind.DATA, LINE_ID, 0, 7, fixed("envelope/data-nonce", 12))
    data_inner = b"\x01" + fixed("olm-placeholder/data", 150)
    data_env = envelope.seal(data_header, key, data_inner)
    hello_header, hello_inner, hello_env = hello_envelope()
    hello_key = pairing_secrets()["to_inviter"]

    padding = []
    for n in (0, 1, 100, 252, 253, 1020, 1021, 4092, 4093, 16380, 16381, 32764):
        padded = envelope.pad(pad_inner(n))
        entry: dict[str, Any] = {
            "inner_len": n,
            "padded_len": len(padded),
            "padded_sha256": h(sha256(padded)),
        }
        if len(padded) <= 256:
            entry["padded"] = h(padded)
        padding.append(entry)
    too_large = {"inner_len": 32765, "error": error_name(envelope.pad, pad_inner(32765))}

    def with_length(length: int, size: int, tail: bytes = b"") -> bytes:
        body = struct.pack(">I", length) + bytes(size - 4)
        return body[: size - len(tail)] + tail

    unpad_bad = [
        ("255 bytes: not a bucket size", bytes(255)),
        ("257 bytes: not a bucket size", bytes(257)),
        ("length 253 in the 256 bucket (out of range)", with_length(253, 256)),
        ("non-zero padding byte", with_length(10, 256, b"\x01")),
    ]
    unpad_malformed = [
        {"description": d, "padded": h(p), "error": error_name(envelope.unpad, p)} for d, p in unpad_bad
    ]

    # Tampered and malformed envelopes. "stage" says where the code must reject it.
    def seal_raw(header: Header, padded: bytes) -> bytes:
        ad = header.encode()
        return ad + aead_seal(key, header.nonce, padded, ad)

    bad_padding_env = seal_raw(data_header, with_length(10, 256, b"\x01"))
    bad_length_env = seal_raw(data_header, with_length(300, 256))
    cases: list[tuple[str, str, str, bytes, int]] = [
        ("sequence number byte flipped (header is AD)", "open", "data", flip(data_env, 28), 0),
        ("line id byte flipped", "open", "data", flip(data_env, 4), 0),
        ("nonce byte flipped", "open", "data", flip(data_env, 29), 0),
        ("ciphertext byte flipped", "open", "data", flip(data_env, 60), 0),
        ("tag byte flipped", "open", "data", flip(data_env, len(data_env) - 1), 0),
        ("hello ML-KEM ciphertext byte flipped (AD)", "open", "hello", flip(hello_env, 41 + 32 + 5), 0),
        ("hello X25519 key byte flipped (AD)", "open", "hello", flip(hello_env, 41 + 3), 0),
        ("opened with the other direction's key", "open", "data_wrong_key", data_env, 0),
        ("padding not zero (validly sealed)", "open", "data", bad_padding_env, 0),
        ("inner length beyond the bucket (validly sealed)", "open", "data", bad_length_env, 0),
        ("truncated by one byte", "parse", "data", data_env[:-1], 0),
        ("one extra byte", "parse", "data", data_env + b"\x00", 0),
        ("shorter than the 41-byte header", "parse", "data", data_env[:40], 0),
        ("bad magic", "parse", "data", b"BD" + data_env[2:], 0),
        ("version 2", "parse", "data", data_env[:2] + b"\x02" + data_env[3:], 0),
        ("unknown kind 3", "parse", "data", data_env[:3] + b"\x03" + data_env[4:], 0),
        ("direction 2", "parse", "data", data_env[:20] + b"\x02" + data_env[21:], 0),
        ("sequence number 0", "parse", "data", data_env[:21] + bytes(8) + data_env[29:], 0),
        ("hello kind in direction 0", "parse", "data", data_env[:3] + b"\x01" + data_env[4:], 0),
        ("hello truncated inside its ML-KEM ciphertext", "parse", "hello", hello_env[: 41 + 600], 0),
        ("larger than the largest envelope", "parse", "data", data_env, envelope.MAX_ENVELOPE + 1),
    ]
    keys = {"data": key, "hello": hello_key, "data_wrong_key": fixed("envelope/other-key", 32)}
    tampered = []
    for description, stage, which, data, grow_to in cases:
        if grow_to:
            data = data + bytes(grow_to - len(data))
        k = keys[which]

        def attempt(data: bytes = data, k: bytes = k) -> None:
            envelope.open_sealed(envelope.parse(data), k)

        entry = {"description": description, "stage": stage, "key": h(k)}
        if grow_to:
            entry["input_prefix"] = h(data_env)
            entry["zero_fill_to"] = grow_to
        else:
            entry["input"] = h(data)
        entry["error"] = error_name(attempt)
        if stage == "open":
            envelope.parse(data)  # must parse: rejection happens when opening
        tampered.append(entry)

    return doc(
        "The envelope (envelope.py): header, padding, seal/parse/open. The AEAD is "
        "ChaCha20-Poly1305; associated data = every byte before the ciphertext.",
        notes=[
            "Olm ciphertexts are not reproducible (vodozemac draws its own randomness). The "
            "inner of every envelope here is " + OLM_PLACEHOLDER_NOTE + "; the hello inner is "
            "accepter identity key (32) | accepter signing key (32) | Olm message.",
            "Padding vectors use inner byte i = (7*i + 1) mod 256.",
        ],
        constants={
            "magic": h(envelope.MAGIC),
            "version": envelope.VERSION,
            "header_len": envelope.HEADER_LEN,
            "hello_extra_len": envelope.HELLO_EXTRA_LEN,
            "buckets": list(envelope.BUCKETS),
            "length_prefix": envelope.LENGTH_PREFIX,
            "max_inner": envelope.MAX_INNER,
            "tag_len": 16,
            "max_envelope": envelope.MAX_ENVELOPE,
            "kinds": {k.name: int(k) for k in Kind},
        },
        headers=[
            {
                "description": "data header",
                "fields": header_fields(data_header),
                "encoded": h(data_header.encode()),
            },
            {
                "description": "hello header (with the accepter's X25519 key and ML-KEM ciphertext)",
                "fields": header_fields(hello_header),
                "encoded": h(hello_header.encode()),
            },
        ],
        padding=padding,
        pad_too_large=too_large,
        unpad_malformed=unpad_malformed,
        seal=[
            {
                "description": "data envelope",
                "header": header_fields(data_header),
                "key": h(key),
                "inner": h(data_inner),
                "associated_data": h(data_header.encode()),
                "padded_len": len(envelope.pad(data_inner)),
                "envelope": h(data_env),
            },
            {
                "description": "hello envelope of the shared pairing (key: to_inviter of keyschedule.json)",
                "header": header_fields(hello_header),
                "key": h(hello_key),
                "inner": h(hello_inner),
                "associated_data": h(hello_header.encode()),
                "padded_len": len(envelope.pad(hello_inner)),
                "envelope": h(hello_env),
            },
        ],
        tampered=tampered,
    )


# ---- keyschedule.json ----------------------------------------------------------------------------


def schedule_case(
    description: str, x: bytes, k: bytes, digest: bytes, line_id: bytes, psk: bytes
) -> dict[str, Any]:
    keys = derive_line_keys(x, k, digest, line_id, psk)
    return {
        "description": description,
        "x25519_secret": h(x),
        "mlkem_secret": h(k),
        "invitation_digest": h(digest),
        "line_id": h(line_id),
        "preshared": h(psk),
        "hkdf_ikm": h(x + k + psk),
        "hkdf_salt": h(digest),
        "hkdf_info": h(keyschedule.LINE_KEYS_INFO + line_id),
        "to_accepter": h(keys.to_accepter),
        "to_inviter": h(keys.to_inviter),
    }


def keyschedule_vectors() -> dict[str, Any]:
    a, b = fixed("x25519/a-secret", 32), fixed("x25519/b-secret", 32)
    shared = x25519(a, x25519_public(b))
    assert shared == x25519(b, x25519_public(a))
    kem_secret = mlkem_decapsulate(MLKEM_SEED, MLKEM_CIPHERTEXT)
    digest, line_id = fixed("keyschedule/digest", 32), fixed("keyschedule/line-id", 16)
    p = pairing_secrets()
    signed = sign_invitation(invitation_one())
    _, _, hello_env = hello_envelope()
    return doc(
        "The hybrid key agreement of pairing and the line key schedule (keyschedule.py): "
        "okm = HKDF-SHA256(ikm = x25519_secret | mlkem_secret | preshared, salt = SHA-256(invitation "
        "blob), info = LINE_KEYS_INFO | line_id, L = 64); to_accepter = okm[0:32], to_inviter = okm[32:64].",
        constants={"line_keys_info": h(keyschedule.LINE_KEYS_INFO), "okm_len": 64},
        x25519={
            "a_secret": h(a),
            "a_public": h(x25519_public(a)),
            "b_secret": h(b),
            "b_public": h(x25519_public(b)),
            "shared": h(shared),
        },
        mlkem768={
            "note": "the ciphertext was produced once by encapsulation (library randomness) and is "
            "a constant of the generator; decapsulation and mlkem_public(seed) are deterministic",
            "seed": h(MLKEM_SEED),
            "public": h(mlkem_public(MLKEM_SEED)),
            "ciphertext": h(MLKEM_CIPHERTEXT),
            "shared": h(kem_secret),
        },
        derive=[
            schedule_case("without pre-shared material", shared, kem_secret, digest, line_id, b""),
            schedule_case(
                "with 32 bytes of pre-shared material",
                shared,
                kem_secret,
                digest,
                line_id,
                fixed("keyschedule/preshared", 32),
            ),
        ],
        pairing={
            "description": "the shared pairing: invitation 0 of invitation.json, the hello of envelope.json",
            "invitation_blob": h(signed.blob),
            "inviter_pairing_secret": h(PAIRING_SECRET),
            "inviter_kem_seed": h(MLKEM_SEED),
            "accepter_ephemeral_secret": h(ACCEPTER_EPHEMERAL),
            "hello_key": h(x25519_public(ACCEPTER_EPHEMERAL)),
            "hello_kem": h(MLKEM_CIPHERTEXT),
            "x25519_secret": h(p["x25519_secret"]),
            "mlkem_secret": h(p["mlkem_secret"]),
            "invitation_digest": h(p["digest"]),
            "line_id": h(LINE_ID),
            "to_accepter": h(p["to_accepter"]),
            "to_inviter": h(p["to_inviter"]),
            "hello_envelope": h(hello_env),
        },
    )


# ---- invitation.json -----------------------------------------------------------------------------


def invitation_fields(inv: Invitation) -> dict[str, Any]:
    return {
        "line_id": h(inv.line_id),
        "name": inv.name,
        "identity_key": h(inv.identity_key),
        "signing_key": h(inv.signing_key),
        "one_time_key": h(inv.one_time_key),
        "pairing_key": h(inv.pairing_key),
        "kem_key": h(inv.kem_key),
        "mailboxes": [
            {"url": m.url, "send_id": h(m.send_id), "send_key": h(m.send_key)} for m in inv.mailboxes
        ],
        "created_at": inv.created_at,
        "expires_at": inv.expires_at,
        "on_record": inv.on_record,
        "pq_key": h(inv.pq_key),
    }


def invitation_vectors() -> dict[str, Any]:
    from backchannel.proto.invitation import parse_invitation, parse_invitation_text

    valid = []
    for inv in (invitation_one(), invitation_two(), invitation_three()):
        signed = sign_invitation(inv)
        valid.append(
            {
                "fields": invitation_fields(inv),
                "signer_seed": h(INVITER_ED_SEED),
                "body": h(inv.body()),
                "signed_message": h(inv.signed_message()),
                "signature": h(signed.blob[-64:]),
                "blob": h(signed.blob),
                "text": signed.text(),
                "digest": h(signed.digest),
            }
        )

    signed = sign_invitation(invitation_one())
    blob, text = signed.blob, signed.text()
    body_map = cbor2.loads(invitation_one().body())
    record_map = cbor2.loads(invitation_two().body())
    body_len = len(invitation_one().body())
    noncanonical = cbor2.dumps(dict(reversed(list(body_map.items()))))
    assert noncanonical != invitation_one().body()
    wrapped = "\n  ".join(text[i : i + 60] for i in range(0, len(text), 60)) + "\n"
    bad_blobs = [
        ("empty", b""),
        ("body byte flipped (signature fails)", flip(blob, 6 + 40)),
        ("signature byte flipped", flip(blob, len(blob) - 10)),
        ("truncated by one byte", blob[:-1]),
        ("one trailing byte", blob + b"\x00"),
        ("wrong magic", b"BCX" + blob[3:]),
        ("version 2", blob[:3] + b"\x02" + blob[4:]),
        ("body length field one too large", blob[:4] + struct.pack(">H", body_len + 1) + blob[6:]),
        ("validly signed, with an unknown field", raw_invitation_blob({**body_map, "extra": 1})),
        ("validly signed, with no mailbox", raw_invitation_blob({**body_map, "mailboxes": []})),
        ("validly signed, inner version 2", raw_invitation_blob({**body_map, "v": 2})),
        (
            "validly signed, ML-KEM key one byte short",
            raw_invitation_blob({**body_map, "mlkem": body_map["mlkem"][:-1]}),
        ),
        (
            "validly signed, mailbox URL not ws:// or wss://",
            raw_invitation_blob(
                {**body_map, "mailboxes": [{**body_map["mailboxes"][0], "url": "https://relay.example"}]}
            ),
        ),
        ("validly signed, name of 65 characters", raw_invitation_blob({**body_map, "name": "n" * 65})),
        (
            "validly signed, relay URL with a pin one character short",
            raw_invitation_blob(
                {**body_map, "mailboxes": [{**body_map["mailboxes"][0], "url": relay_pin_url()[:-1]}]}
            ),
        ),
        (
            "validly signed, pin on a plain ws:// relay URL",
            raw_invitation_blob(
                {
                    **body_map,
                    "mailboxes": [
                        {**body_map["mailboxes"][0], "url": relay_pin_url().replace("wss://", "ws://", 1)}
                    ],
                }
            ),
        ),
        (
            "validly signed, relay URL with a fragment other than #pin=",
            raw_invitation_blob(
                {**body_map, "mailboxes": [{**body_map["mailboxes"][0], "url": RELAY_ONE + "#x=1"}]}
            ),
        ),
        (
            "validly signed, on the record without an ML-DSA-65 key",
            raw_invitation_blob({k: v for k, v in record_map.items() if k != "pq"}),
        ),
        (
            "validly signed, off the record with an ML-DSA-65 key",
            raw_invitation_blob({**body_map, "pq": record_map["pq"]}),
        ),
        (
            "validly signed, ML-DSA-65 key one byte short",
            raw_invitation_blob({**record_map, "pq": record_map["pq"][:-1]}),
        ),
        (
            "validly signed, body not in canonical CBOR (map keys reversed)",
            b"BCI\x01"
            + struct.pack(">H", len(noncanonical))
            + noncanonical
            + ed25519_sign(INVITER_ED_SEED, INVITATION_CONTEXT + noncanonical),
        ),
    ]
    corrupt = [
        {"description": d, "form": "blob", "input": h(b), "error": error_name(parse_invitation, b)}
        for d, b in bad_blobs
    ]
    bad_texts = [
        ("wrong prefix bc2-", "bc2-" + text[4:]),
        ("no prefix", text[4:]),
        ("characters outside base64url", "bc1-" + "@" * 40),
        ("base64url of a truncated blob", text[:-3]),
    ]
    corrupt += [
        {"description": d, "form": "text", "input": t, "error": error_name(parse_invitation_text, t)}
        for d, t in bad_texts
    ]
    assert parse_invitation_text(wrapped).blob == blob
    return doc(
        "The invitation (invitation.py): binary form 'BCI' | version (1) = 1 | body length (2) | "
        "body (canonical CBOR) | Ed25519 signature (64) over INVITATION_CONTEXT | body; text form "
        "'bc1-' + base64url(blob) without padding; digest = SHA-256(blob). Signed with a fixed Ed25519 "
        "seed (the wire format is plain Ed25519, whoever signs: a station signs with its Olm account key).",
        constants={
            "magic": h(b"BCI"),
            "version": 1,
            "text_prefix": "bc1-",
            "context": h(INVITATION_CONTEXT),
            "max_relays": 8,
        },
        valid=valid,
        text_with_whitespace={
            "description": "white space and line breaks anywhere in the text form are ignored",
            "text": wrapped,
            "digest": h(signed.digest),
        },
        corrupt=corrupt,
        relay_pin=relay_pin_vector(),
    )


def relay_pin_vector() -> dict[str, Any]:
    cert = relay_certificate()
    spki = (
        x509.load_der_x509_certificate(cert)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return {
        "description": "a relay URL's pin (PROTOCOL §3.1): SHA-256 of the certificate's "
        "SubjectPublicKeyInfo (DER), unpadded base64url, after '#pin=' in a wss:// URL",
        "certificate": h(cert),
        "spki": h(spki),
        "pin": pin_text(hashlib.sha256(spki).digest()),
        "url": relay_pin_url(),
        "connect_url": "wss://relay-one.example:7400",
    }


# ---- payloads.json -------------------------------------------------------------------------------


RELAY_ONE = "wss://relay-one.example:7400"
RELAY_TWO = "wss://relay-two.example:7400"
RELAY_THREE = "wss://relay-three.example:7400"


def payload_list() -> list[tuple[str, Payload]]:
    return [
        ("hello: the accepter's first payload", hello_payload()),
        ("welcome: the inviter's first payload", Welcome()),
        (
            "msg, FLASH, non-ASCII text",
            Message(Precedence.FLASH, "Stand down. Отбой. 停止。", CREATED_MS + 60_000),
        ),
        ("msg, ROUTINE", Message(Precedence.ROUTINE, "Hourly link test.", CREATED_MS + 3_600_000)),
        ("msg, IMMEDIATE, empty text", Message(Precedence.IMMEDIATE, "", CREATED_MS + 1)),
        ("msg, PRIORITY", Message(Precedence.PRIORITY, "Confirm receipt.", CREATED_MS + 2)),
        ("delivered: cumulative receipt", Delivered(3, CREATED_MS + 61_000)),
        ("ack: operator read message 2", Acknowledged(2, "Lt. Ivanova", CREATED_MS + 62_000)),
        # Appended, never inserted: transcript_vectors() picks payloads above by position.
        ("test: link test 7", LinkTest(7, CREATED_MS + 3_600_000)),
        (
            "test-reply: test 7 arrived through two circuits; held back 2 s for slower copies",
            LinkTestReply(7, (RELAY_ONE, RELAY_TWO), CREATED_MS + 3_602_050, 2_000),
        ),
        (
            "test-reply: test 8 answered with no circuit listed",
            LinkTestReply(8, (), CREATED_MS + 7_202_000, 0),
        ),
        (
            "circuits: add the sender's mailbox on a new relay",
            Circuits((capability("accepter/mailbox-3", RELAY_THREE),), ()),
        ),
        ("circuits: remove a relay", Circuits((), (RELAY_ONE,))),
    ]


def payload_fields(payload: Payload) -> dict[str, Any]:
    if isinstance(payload, Hello):
        return {
            "name": payload.name,
            "mailboxes": [
                {"url": m.url, "send_id": h(m.send_id), "send_key": h(m.send_key)} for m in payload.mailboxes
            ],
            "binding_signature": h(payload.binding_signature),
        }
    if isinstance(payload, Message):
        return {"precedence": payload.precedence.value, "text": payload.text, "sent_at": payload.sent_at}
    if isinstance(payload, Delivered):
        return {"upto": payload.upto, "at": payload.at}
    if isinstance(payload, Acknowledged):
        return {"seq": payload.seq, "operator": payload.operator, "at": payload.at}
    if isinstance(payload, LinkTest):
        return {"test_id": payload.test_id, "at": payload.at}
    if isinstance(payload, LinkTestReply):
        return {
            "test_id": payload.test_id,
            "circuits": list(payload.circuits),
            "at": payload.at,
            "held": payload.held,
        }
    if isinstance(payload, Circuits):
        return {
            "add": [{"url": m.url, "send_id": h(m.send_id), "send_key": h(m.send_key)} for m in payload.add],
            "remove": list(payload.remove),
        }
    return {}


def payload_vectors() -> dict[str, Any]:

    ik, ed = accepter_keys()
    digest = sign_invitation(invitation_one()).digest
    binding_msg = hello_binding(LINE_ID, ik, digest)
    msg = {"t": "msg", "p": "ROUTINE", "text": "x", "at": 1}
    reply = {"t": "test-reply", "id": 1, "circuits": [RELAY_ONE], "at": 1, "held": 0}
    change = Circuits((capability("accepter/mailbox-3", RELAY_THREE),), ()).to_cbor()
    bad: list[tuple[str, bytes]] = [
        ("not CBOR", b"\xff"),
        ("a CBOR array, not a map", cbor_encode(["msg"])),
        ("unknown type", cbor_encode({"t": "nope"})),
        ("unknown field", cbor_encode({**msg, "x": 1})),
        ("missing field", cbor_encode({"t": "msg", "p": "ROUTINE", "text": "x"})),
        ("unknown precedence", cbor_encode({**msg, "p": "URGENT"})),
        ("map keys not in canonical order", cbor2.dumps({"text": "x", "t": "msg", "p": "ROUTINE", "at": 1})),
        (
            "integer not in shortest form",
            cbor_encode({"t": "delivered", "upto": 3, "at": 1})[:-1] + b"\x18\x03",
        ),
        ("trailing byte", cbor_encode(msg) + b"\x00"),
        ("CBOR tag 1 (an epoch date: not plain data)", cbor2.dumps(cbor2.CBORTag(1, 0))),
        ("unknown CBOR tag 99", cbor2.dumps(cbor2.CBORTag(99, 0))),
        (
            "CBOR tag 2 (a bignum, 2^128, where an integer belongs)",
            cbor2.dumps(
                {"t": "delivered", "upto": cbor2.CBORTag(2, b"\x01" + bytes(16)), "at": 1}, canonical=True
            ),
        ),
        ("negative timestamp", cbor_encode({**msg, "at": -1})),
        ("timestamp 2^63", cbor_encode({**msg, "at": 2**63})),
        ("boolean where an integer belongs", cbor_encode({"t": "delivered", "upto": True, "at": 1})),
        ("ack operator of 65 bytes", cbor_encode({"t": "ack", "seq": 1, "op": "o" * 65, "at": 1})),
        (
            "ack operator of 33 two-byte characters (66 bytes)",
            cbor_encode({"t": "ack", "seq": 1, "op": "Д" * 33, "at": 1}),
        ),
        ("msg text of 30001 bytes", cbor_encode({**msg, "text": "x" * 30_001})),
        (
            "hello with 9 mailboxes",
            cbor_encode(
                {**hello_payload().to_cbor(), "mailboxes": [hello_payload().to_cbor()["mailboxes"][0]] * 9}
            ),
        ),
        ("hello signature of 63 bytes", cbor_encode({**hello_payload().to_cbor(), "sig": bytes(63)})),
        ("test without id", cbor_encode({"t": "test", "at": 1})),
        ("test id 2^63", cbor_encode({"t": "test", "id": 2**63, "at": 1})),
        (
            "test-reply without held (missing field)",
            cbor_encode({k: v for k, v in reply.items() if k != "held"}),
        ),
        ("test-reply with negative held", cbor_encode({**reply, "held": -1})),
        ("test-reply circuits not an array", cbor_encode({**reply, "circuits": RELAY_ONE})),
        ("test-reply listing 9 circuits", cbor_encode({**reply, "circuits": [RELAY_ONE] * 9})),
        ("test-reply listing an empty URL", cbor_encode({**reply, "circuits": [""]})),
        ("test-reply listing a URL of 513 characters", cbor_encode({**reply, "circuits": ["w" * 513]})),
        ("test-reply listing a URL that is bytes", cbor_encode({**reply, "circuits": [RELAY_ONE.encode()]})),
        ("circuits without remove", cbor_encode({"t": "circuits", "add": []})),
        ("circuits adding 9 mailboxes", cbor_encode({**change, "add": [change["add"][0]] * 9})),
        (
            "circuits adding a mailbox whose URL is not ws:// or wss://",
            cbor_encode({**change, "add": [{**change["add"][0], "url": "https://relay.example"}]}),
        ),
        (
            "circuits adding a mailbox with a 15-byte send_id",
            cbor_encode({**change, "add": [{**change["add"][0], "send_id": bytes(15)}]}),
        ),
        ("circuits removing 9 relays", cbor_encode({**change, "remove": [RELAY_ONE] * 9})),
        # Names must be printable (PROTOCOL §9): appended, so earlier vectors keep their places.
        (
            "hello name with an escape sequence",
            cbor_encode({**hello_payload().to_cbor(), "name": "a\x1b[2J"}),
        ),
        ("hello name empty", cbor_encode({**hello_payload().to_cbor(), "name": ""})),
        ("ack operator with a newline", cbor_encode({"t": "ack", "seq": 1, "op": "a\nb", "at": 1})),
        ("ack operator with a bidi override", cbor_encode({"t": "ack", "seq": 1, "op": "\u202eab", "at": 1})),
        (
            "test-reply listing a URL with a control character",
            cbor_encode({**reply, "circuits": ["ws://a\x07"]}),
        ),
    ]
    malformed = []
    for description, data in bad:
        if description == "msg text of 30001 bytes":
            entry = {"description": description, "input_sha256": h(sha256(data)), "input_len": len(data)}
        else:
            entry = {"description": description, "input": h(data)}
        entry["error"] = error_name(decode_payload, data)
        malformed.append(entry)
    return doc(
        "Payloads (payloads.py): canonical CBOR maps with a type tag 't', carried inside Olm.",
        constants={
            "hello_binding_context": h(b"backchannel/v1 hello binding\x00"),
            "max_text_bytes": 30_000,
            "max_name_bytes": 64,
            "max_relays": 8,
            "max_url_chars": 512,
        },
        payloads=[
            {
                "description": d,
                "type": p.to_cbor()["t"],
                "fields": payload_fields(p),
                "cbor": h(encode_payload(p)),
            }
            for d, p in payload_list()
        ],
        hello_binding={
            "description": "signed by the accepter's Ed25519 (Olm) key; here a fixed seed",
            "line_id": h(LINE_ID),
            "identity_key": h(ik),
            "invitation_digest": h(digest),
            "message": h(binding_msg),
            "signer_seed": h(ACCEPTER_ED_SEED),
            "signing_key": h(ed),
            "signature": h(ed25519_sign(ACCEPTER_ED_SEED, binding_msg)),
        },
        malformed=malformed,
        malformed_note="the 30001-byte text is given by rule: the msg map {t, p: ROUTINE, text: 'x' * 30001, "
        "at: 1}, checked by length and SHA-256",
    )


# ---- transcript.json -----------------------------------------------------------------------------


def transcript_vectors() -> dict[str, Any]:
    cbors = {d: encode_payload(p) for d, p in payload_list()}
    names = list(cbors)
    order = [  # (direction, seq, payload)
        (1, 1, names[0]),  # hello
        (0, 1, names[1]),  # welcome
        (1, 2, names[2]),  # msg
        (0, 2, names[3]),  # msg
        (0, 3, names[6]),  # delivered
        (1, 3, names[7]),  # ack
    ]
    t = Transcript.start(LINE_ID)
    entries = []
    for direction, seq, name in order:
        payload = cbors[name]
        t = t.append(direction, seq, payload)
        entries.append(
            {
                "direction": direction,
                "seq": seq,
                "payload": h(payload),
                "payload_sha256": h(sha256(payload)),
                "head": h(t.heads[direction]),
                "line_head": h(t.head()),
            }
        )
    final = t.head()
    alternate = [1, 3, 4, 0, 2, 5]  # same per-direction order, another interleaving
    t2 = Transcript.start(LINE_ID)
    for i in alternate:
        direction, seq, name = order[i]
        t2 = t2.append(direction, seq, cbors[name])
    assert t2.head() == final
    empty = Transcript.start(LINE_ID)
    return doc(
        "The transcript hash chains (transcript.py). h[d][0] = SHA-256(GENESIS | line_id | d); "
        "h[d][n] = SHA-256(ENTRY | line_id | d | n (8) | h[d][n-1] | SHA-256(entry)); "
        "head = SHA-256(HEAD | line_id | n0 (8) | h[0][n0] | n1 (8) | h[1][n1]). The chain takes any "
        "byte strings; here bare payloads stand in for the entry bytes a station hashes (the entry "
        "wraps the payload, see record.json, which has chains over real entries).",
        constants={
            "genesis": h(transcript.GENESIS),
            "entry": h(transcript.ENTRY),
            "head": h(transcript.HEAD),
        },
        line_id=h(LINE_ID),
        genesis=[h(empty.heads[0]), h(empty.heads[1])],
        empty_line_head=h(empty.head()),
        entries=entries,
        final_counts=[t.counts[0], t.counts[1]],
        final_line_head=h(final),
        alternate_order=alternate,
        alternate_order_note="appending the entries in this order (indices into 'entries') gives the same "
        "final line head: each direction has one writer, so interleaving does not matter",
    )


# ---- safety.json ---------------------------------------------------------------------------------


def safety_vectors() -> dict[str, Any]:
    a = (*inviter_keys(), mldsa_public(INVITER_MLDSA_SEED))
    b = (*accepter_keys(), mldsa_public(ACCEPTER_MLDSA_SEED))
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    off = safety_number((a[0], a[1], b""), (b[0], b[1], b""))
    return doc(
        "Safety numbers (safety.py): fingerprint = 30 digits from iterated SHA-512 over "
        "0x0002 | identity_key | signing_key | record_key (the ML-DSA-65 key on a line on the record, "
        "empty off it); safety number = both fingerprints in ascending order.",
        constants={"iterations": 5200, "version": "0002"},
        stations=[
            {
                "description": description,
                "identity_key": h(keys[0]),
                "signing_key": h(keys[1]),
                "record_key": h(keys[2]),
                "fingerprint": station_fingerprint(*keys),
                "fingerprint_off_record": station_fingerprint(keys[0], keys[1], b""),
            }
            for description, keys in (
                ("the inviter of the shared pairing", a),
                ("the accepter of the shared pairing", b),
            )
        ],
        safety_number=number,
        grouped=grouped(number),
        safety_number_off_record=off,
        grouped_off_record=grouped(off),
    )


# ---- keystore.json -------------------------------------------------------------------------------

KEYSTORE_PASSPHRASE = "correct horse battery staple — Ω"
KEYSTORE_RNG_SEED = b"backchannel vectors/keystore"
AT_REST_RNG_SEED = b"backchannel vectors/at-rest"
LIGHT_KDF = KdfParams(memory_kib=1024, iterations=1, lanes=1)


def keystore_file() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keystore.bcks"
        create_keystore(path, KEYSTORE_PASSPHRASE, params=LIGHT_KDF, rng=FakeRng(KEYSTORE_RNG_SEED))
        return path.read_bytes()


def at_rest_items() -> list[tuple[str, bytes, bytes]]:
    """(description, context, plaintext) for each kind of value the station seals at rest."""
    recv_id, send_id = fixed("at-rest/recv-id", 16), fixed("at-rest/send-id", 16)
    p = pairing_secrets()
    return [
        ("mailbox receive key seed", b"recv-key" + recv_id, fixed("at-rest/recv-seed", 32)),
        ("peer mailbox send key seed", b"send-key" + send_id, fixed("at-rest/send-seed", 32)),
        ("line keys: to_accepter | to_inviter", b"line-keys" + LINE_ID, p["to_accepter"] + p["to_inviter"]),
        (
            "pending invitation: X25519 secret | ML-KEM seed",
            b"invitation" + LINE_ID,
            PAIRING_SECRET + MLKEM_SEED,
        ),
        ("received message body 5", b"body" + LINE_ID + b"in" + (5).to_bytes(8, "big"), "Отбой.".encode()),
        ("sent message body 2", b"body" + LINE_ID + b"out" + (2).to_bytes(8, "big"), b"Hourly link test."),
        # Appended, never inserted: the nonces are drawn in this order.
        (
            "an issued invitation's binary form",
            b"invitation-blob" + LINE_ID,
            sign_invitation(invitation_one()).blob,
        ),
        (
            "transcript entry 1 of direction 0 (the welcome off the record, record.json)",
            b"entry" + LINE_ID + b"\x00" + (1).to_bytes(8, "big"),
            record_conversation(False)[1]["entry"],
        ),
        ("the station's ML-DSA-65 record key seed", b"mldsa-seed", fixed("inviter/mldsa-seed", 32)),
    ]


def keystore_vectors() -> dict[str, Any]:
    from backchannel.station.keystore import open_keystore

    data = keystore_file()
    rng = FakeRng(KEYSTORE_RNG_SEED)
    store_key, salt, nonce = rng.bytes(32), rng.bytes(16), rng.bytes(12)
    header = data[: KEYSTORE_HEADER.size]
    kek = argon2id(
        KEYSTORE_PASSPHRASE.encode(),
        salt,
        memory_kib=LIGHT_KDF.memory_kib,
        iterations=LIGHT_KDF.iterations,
        lanes=LIGHT_KDF.lanes,
    )

    def open_bytes(blob: bytes, passphrase: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "keystore.bcks"
            path.write_bytes(blob)
            return open_keystore(path, passphrase)

    assert open_bytes(data, KEYSTORE_PASSPHRASE) == store_key
    off_iter = 4 + 1 + 4  # offset of the iterations field
    bad = [
        ("wrong passphrase", data, "correct horse battery staple"),
        ("one byte short", data[:-1], KEYSTORE_PASSPHRASE),
        ("bad magic", b"BCKX" + data[4:], KEYSTORE_PASSPHRASE),
        ("version 2", data[:4] + b"\x02" + data[5:], KEYSTORE_PASSPHRASE),
        (
            "iterations 0 (implausible)",
            data[:off_iter] + struct.pack(">I", 0) + data[off_iter + 4 :],
            KEYSTORE_PASSPHRASE,
        ),
        ("memory 4 KiB (implausible)", data[:5] + struct.pack(">I", 4) + data[9:], KEYSTORE_PASSPHRASE),
        (
            "iterations changed 1 -> 2 (header is AD)",
            data[:off_iter] + struct.pack(">I", 2) + data[off_iter + 4 :],
            KEYSTORE_PASSPHRASE,
        ),
        ("salt byte flipped", flip(data, 14 + 3), KEYSTORE_PASSPHRASE),
        ("ciphertext byte flipped", flip(data, len(data) - 20), KEYSTORE_PASSPHRASE),
    ]
    errors = [
        {"description": d, "file": h(b), "passphrase": p, "error": error_name(open_bytes, b, p)}
        for d, b, p in bad
    ]

    at_rest = AtRest(store_key, FakeRng(AT_REST_RNG_SEED))
    sealed = []
    for description, context, plaintext in at_rest_items():
        sealed.append(
            {
                "description": description,
                "context": h(context),
                "plaintext": h(plaintext),
                "sealed": h(at_rest.seal(plaintext, context)),
            }
        )
    return doc(
        "The keystore file and at-rest sealing (station/keystore.py). File: 'BCKS' | version (1) = 1 | "
        "memory KiB (4) | iterations (4) | lanes (1) | salt (16) | nonce (12) | ChaCha20-Poly1305 of the "
        "32-byte store key under Argon2id(passphrase, salt) with the 42-byte header as AD. Light KDF "
        "parameters for speed; production defaults are 65536 KiB, 3 iterations, 2 lanes.",
        passphrase=KEYSTORE_PASSPHRASE,
        kdf={
            "memory_kib": LIGHT_KDF.memory_kib,
            "iterations": LIGHT_KDF.iterations,
            "lanes": LIGHT_KDF.lanes,
        },
        rng_seed=h(KEYSTORE_RNG_SEED),
        rng_note="FakeRng(rng_seed) yields store_key (32), then salt (16), then nonce (12)",
        store_key=h(store_key),
        salt=h(salt),
        nonce=h(nonce),
        header=h(header),
        passphrase_key=h(kek),
        file=h(data),
        errors=errors,
        at_rest={
            "description": "AtRest.seal(plaintext, context) = nonce (12) | "
            "ChaCha20-Poly1305(store_key, nonce, plaintext, ad = context); "
            "nonces from FakeRng(rng_seed), drawn in the order listed",
            "store_key": h(store_key),
            "rng_seed": h(AT_REST_RNG_SEED),
            "values": sealed,
        },
    )


# ---- record.json ---------------------------------------------------------------------------------

INVITER_MLDSA_SEED = fixed("inviter/mldsa-seed", 32)
ACCEPTER_MLDSA_SEED = fixed("accepter/mldsa-seed", 32)
RECORD_LINE_ID = invitation_two().line_id  # the line of invitation 1 of invitation.json: on the record

#: ML-DSA-65 signature by INVITER_MLDSA_SEED over the checkpoint message of the on-the-record
#: conversation below. ML-DSA signing in OpenSSL is hedged (randomised), so it was produced once;
#: record_vectors() checks that it verifies and, if the conversation ever changes, stops and
#: prints a fresh one to paste here.
MLDSA_CHECKPOINT_SIGNATURE = bytes.fromhex(
    "4817385c5d4c815acda42d2aa7d855debf562b092fc1f3b66c24047c3db09e5cc7c9f3aacc99312bd8f1c9539ff94c7c"
    "1afb1664efb8348ceb675ef988232003307c2eda2b956ca1214f27c47458cef18f212e21ae6d64bef1eb14a6b89dc323"
    "d486d4a371756cb0151079ec45da9a4e1563d421622a31396de1c928d579ec1641a1afb5e0513f19260e0a61a928692e"
    "66e1b06a7c75b3c5bc91d2883f7ed1712c3ddc7b2075b44e389e61f953b1e0b7ee69d6bdf08d18a1ec8e351aab307ac9"
    "d3526816a6229151e90a2b49a3e8594f9ace1495dbc8b048273bbae0e7abf5ba802bbf59523da39dc2b49c231ef41f93"
    "f2a832fe80311ee704525db9e9657a5f8157e496a7318693e76dc4bd19f5ea7eb634b6ec67a815d7eed68f0f15218d05"
    "41f597eb0635bea96bce2f021d73db46c782f4a9360cadd4ecac439ec78949d6f8e886dcd5fd7cbb7c2beb5ed89757c6"
    "566a329551d9f60cada09dcf9dfe94d55cd744aef355e1583d13992392c238639837d614343427b2a74f718aa4754806"
    "90bc417baf99faeaf22d86b02e4b3e10f6a01b27e469e233dcffb7ef9a5a62a5558e0475fd6940f81d07d3506d561dcf"
    "ad3bbbe115c2b067a12abc2c38687f7b39ac41f53299dd9cea43e1bd29b102a9356be61bf11ad14f80ed98cfb98102cb"
    "5a58479f8f7b395f5c9195817b2f23cc8cc598d87352d7ccf65b2cbf6bcf3e6370b17673dcb2c3314c25842829e8b18b"
    "ab7e81d3b27fa193069a0124c19878e10bf15b789e44a94f3dba16bbf088746549fa1da7e10c17c1ce7a67fb3bd44751"
    "6da1bf79bcf983794e1a82836ca206318066635c66d36b7d6272f137a4c04d0a2f70c20cf06cd6912b8920bb64523c35"
    "d7a9cc43878b1903bf0a47e28e7fb0a85d7756dedb8fb10c8aa6b252699f3556cebf2ebddb70bd4229c7ebfdba6e62bb"
    "4b77bfd12e8d40bf60222ad0e7780ddcf58d398ee2a0fdb19b1ec519a279b6ac11462a8139ac4cb3ac12df0016852a8a"
    "372d2d7fa25d3de204ee7c1fb3e51599dda04ffa462699b7f042f3ae9d7c2fa55be05ec6212d6764d408b526043e4e59"
    "7062929b800a4f505f3943722f111c895824ac15cc39d8fbefc403099f68264fede9041030894db650882e5760280fb0"
    "bd47acb4c377efd853c18fe92a384c7e4243a2f6d836227c0d6ed552e19efcfbc8ea4e804ecf2176b4990ebc52ba39ea"
    "25feb3726032a10ea0d0b20a50037f8e83f67aadec48970499ff0e75795e1e8f81db47fc4557950ba478126f30190bac"
    "05d44d6441d4e3d2994b75cdda2ca8b02c5c1bd6884f9876398eac2d50c6d9b6a92d7aca4e8522b7c1f129b402a70d08"
    "920c476e18f0c1cffbb215688cdb3e17cf2ff360d8bc5bca162f0a4a4ff24adf25a34989945737bc98c317f67e168800"
    "f5f8feb8485f0f6275aa7e48092b33d6801c7bd33b4e28bde8493c06e9c752d23cc376e15eeff9c047b9d7d002645ad0"
    "a18a0b9ff86188593a73fc9926e20840e80d36259ce362355f6e827ed813c55aed28008c37300c4420107fb19da6e3ed"
    "00b11b7e4f702c27d4cb313b5006ba9382a0f558ae7295ab13b9c68257c5d1b876263ba6bae0a2b4c531521f9ab7112b"
    "f5cc9c640b33ca807d3a12fbe9e96a1ddbf58be7b72b39718f4e6164cbde454bc5d28eaa0c01f36dc2c27c95b973e508"
    "a038fad983d213dc8eda5fe6742105c37359405fe5f12c6299e0cb1c57a5183e06be810b72a25a1af1b7552a84b07086"
    "da9ab727cfbbf75be5eecc434dadd9e30a16148adcad008c0c1ad8d80889c79edac09d96e93b36edb7de614ae6378864"
    "d5589b6ec5611628c79cc1ff5a9458faa4e86a797d142e88bf432ece17249bb275b0721dc748ff99ee543c6d2dda6f02"
    "086a2d46cc02172cd0cda6bb77b870052da6f972acba8e3c6a3d992ec5508b14d9f171bcf099af38737e427f7d21e20e"
    "fc13a709c88a436bc4187291819d34c7cdd2887aee8b1f6f0b3e84d813cbbc944674877f55381106be9b0d2c067f9e68"
    "5d24b182d36a89656160d7a90a9adb571e57dd9cd08996f05314632abfc28973e2591bec56925c7517ad36f5e492cdcf"
    "b1599efb70847601626eccd5887e560ebc8bee049ebb588dc8e7525dc9618819d007369f879a83f6a976e16aa1603639"
    "46347393128c22777f321fbdd539ad04b5b5d2208b0e43da9d771020aa6c80b4ed9aac4e3c16792154614282e089911e"
    "012df69bdb32ff5006d55dbae259e580cae8d066d2690c6412510e9598390a79bfbc8f1afec2c28535b6e8cd064d0438"
    "ba45e0aaf13d913f0715dc6b36d96e5c924447477d6d0b3ac9621e57fd209c64fe22e144d976353e13a2b6ecf3ce22b3"
    "025d8eb66013d88ccb70947cac86714e255ddad92009e4d76d01bb92e52f0d7ea6fa7b8d272bc8265696a27537bc1578"
    "e18a6a47245cbb3846d53b8918a5deff69367df37afd775e64b0051e94aa351fbdfa9ecfc388df5ca739f87f441ede86"
    "f45de20ae0b7aab36124438a53eeb2c5f1f42dca58fa7d8d8efd4f9853baa2fdf07e4921c53496e1a3ef034695279c38"
    "6d34175e79614c6fc4565e215857b4df7b7784915f72a40cfd8710966e6009ae0029bc21a6cc1423968a59fafbcca123"
    "de03f72e6e51b50ab1921ae103e3439d3c30e0e5d76063c956e19543a802b86181b9bd0c3abda36bcdb8bb4352519e3c"
    "25ff8d214cba6cd5ab226111d0685124cfbaef229274f3682b261ce8f4bf4392eabd596707c11b64d3c0cada81321f6e"
    "869c69acb4cb64d5139ab3452aeae4df60cfa0226e46832f183e4df6fb2a34b178c0714642ae6ff528aa73f6f454af6e"
    "d0e06de4fb650f4cfb7a656ce7dc5736ce3382f14c8528d0312ed6ab4d9a12bb5d9b3d7df6a4e42ae22187a183320ec0"
    "885e9612efc60cc0d25df09b2eebec845bf39b1775899b1d828268f2889968a6f1c9dd782267e8162fbb7657bdf248d7"
    "3bc9b786fa64d40dd15d4db54a9e57735032bac8c50e5a85a8a36ba8d31d4ee5722b1ccb4b7adcfe3e9c39b05309434e"
    "66d992210ef9f5e4544eca473f888baec5b95831d31a408163bd173fbf8c8214a757b1ac31378750141bf0c05bc1a961"
    "7d4fce5c58d3d70f067c0fe09bf410346d500cf6367fd46648801c13f60e4a7afd4c5b8da7b94a8ad06fbe4a207fc8f0"
    "5ac6351958001077535c059b0928f3a773f398cb18ddc2c79664d9d55b0a4248dd025c923da00b0e2bad60d7d0b46b12"
    "8316ec31c334498668911a9ca4c63edb72c7a2309d19677ff97db05d6770749a6f9597a0bcaaf6fc6b725dabca76123c"
    "8cc10cad7116705d3408ea6e2f7a5f5309a739f7312ecaa23972cff2914921d461ebdb008f777c6f6a8122a5c9129f50"
    "c411a8e3e1b900b0a7c11cd596cf7db192293f5cf29708c10797c876d863f5b145945b43fb939ac60240030f0eea6cb4"
    "67e93ecab8aac5f54e333a7b6c6d4677b3184accf4ea4168ed5e12bb0b2a1bb506e0ae1ad0e8bca28cfeaeb86fb6b049"
    "38fddcd87f63f7a00f65f232971c36e28196eed5cb9e31a43172f4e97f5fc14878071364d69454ab25ec88648d6e8af9"
    "710b00f98ccb4b18216824ac5fb21fdd4c0e478a340e6bdcd9016a42080287225bcaec8febe9ccb119028a2e25e50432"
    "5b18c498ae334d4d67fd173c90ce5200080e75ea6e21780bc2f36db1e8fdc57a53e22924bd385fcdb112e69c204511c5"
    "56ef06b6b04637beff6884432aa5edd4cb2be2b265704403d588e5a98276d1b10369c146cf1e98d5a02cc048ae202092"
    "3d5bd7e5b500f8ef60cf9de221a7d74fd80e935f3f4c67542c203cda295d347ac43b2a81f3e93d941bd563dbff4f2a18"
    "4bcd4019b4c76a9523f60ab936132122d68d531545e12ba57fd5fadcbabfe6b5b90fb352d15b31f30103e2e6701c4742"
    "f91837521da507158b647843a425b04dec953656fdb9e88890895941be31d5d718753ae38b04d2f060c8a84b2bff871a"
    "13604553ca10a858d5af29ccad32d8a03602d48db46ff53a9ececb5b4b8f61877bfce7746f69d15bf1e9570f518b9e7e"
    "9b41eff01b7e53e4768c345960e823dbea953a957f0f369ec1d3e057f692a5d32b89a773ae7a3eb12f9c6f09e52ff61a"
    "e80b16a917fe2e84eb160acfda7a28b25dda362ab7ce9b599aa13f935cd7eadad9e24ab70ffc5c625e17e304677b2b01"
    "9d5aabc2787b166ce3f506645e4a90f4ed7c6aeaac7fb051f94a05cf52b838bedf7c25a797a266e2f86c291690983486"
    "836bbfd4614285d869243fdc86a40e59f922a1c0b5e130d4c40765400fd148b83ab8a2406a13158e519abaaf5ba619d9"
    "36e6f467da60595d6ca5cd24568ddfe699947a90811b3a25eea41419ea54194b81e21cb14e79f686df0a5e0e4fcce152"
    "ca9c8f8989aa6cb7e8e24c805a633300578b29aa4ce229b83db013368634f366a79250b5b512e6e9bda50f18c548898e"
    "9bc0102053e92602e2214f72ecf464d98a6ec91273b63d3c445fb6604455dad4f52c5a53149d4f9d84582b91f1bbef3a"
    "c9da6c99c81e24ebc7be6bde8903feb6dd8e3215128446d7b5c7d3ae13a4652b2aaeb4bbeff9fd09124164b0d1d3e554"
    "6d848d053c464b6c85a0a1bec8f9032441454a80ccf70000000000000000000000000000000000070f11131e26"
)


def record_hello(on_record: bool) -> Hello:
    """The accepter's hello on the off-record line (LINE_ID) or the on-record line."""
    if not on_record:
        return hello_payload()
    ik, _ = accepter_keys()
    digest = sign_invitation(invitation_two()).digest
    binding = ed25519_sign(ACCEPTER_ED_SEED, hello_binding(RECORD_LINE_ID, ik, digest))
    caps = (capability("accepter/mailbox-1", RELAY_ONE),)
    return Hello("Bravo duty desk", caps, binding, mldsa_public(ACCEPTER_MLDSA_SEED))


def record_conversation(on_record: bool, signature: bytes = b"") -> list[dict[str, Any]]:
    """A short line, in the order the inviter recorded it: hello, welcome, a FLASH message, its
    acknowledgement, the inviter's checkpoint, the accepter's delivered receipt.

    Each entry's ``seen`` is the sender's view of the other direction when it sealed the entry
    (here: everything before it in this order). On the record every entry is signed with the
    sender's fixed Ed25519 seed, and the checkpoint carries ``signature`` (ML-DSA-65).
    """
    line_id = RECORD_LINE_ID if on_record else LINE_ID
    seeds = {0: INVITER_ED_SEED, 1: ACCEPTER_ED_SEED}
    at = CREATED_MS
    script: list[tuple[int, Payload | None]] = [
        (1, record_hello(on_record)),
        (0, Welcome()),
        (1, Message(Precedence.FLASH, "Unidentified aircraft at the border. Please confirm.", at + 60_000)),
        (0, Acknowledged(2, "smith", at + 75_000)),
        (0, None),  # the checkpoint, made from the chains at this point
        (1, Delivered(3, at + 91_000)),
    ]
    t = Transcript.start(line_id)
    chains: dict[int, list[bytes]] = {0: [], 1: []}
    out = []
    for direction, maybe in script:
        payload: Payload
        if maybe is None:
            recent = (short_hashes(chains[0]), short_hashes(chains[1]))
            payload = Checkpoint(t.counts, t.heads, recent, signature if on_record else b"")
        else:
            payload = maybe
        seq = t.counts[direction] + 1
        other = 1 - direction
        seen = Seen(t.counts[other], t.heads[other])
        seed = seeds[direction]
        sign = (lambda m, s=seed: ed25519_sign(s, m)) if on_record else None
        raw = encode_entry(payload, seen, line_id, direction, seq, sign)
        t = t.append(direction, seq, raw)
        chains[direction].append(t.heads[direction])
        out.append(
            {
                "line_id": line_id,
                "direction": direction,
                "seq": seq,
                "payload": payload,
                "seen": seen,
                "entry": raw,
                "hash": t.heads[direction],
                "seed": seed,
                "transcript": t,
            }
        )
    return out


def conversation_checkpoint(entries: list[dict[str, Any]]) -> tuple[Checkpoint, int]:
    index = next(i for i, e in enumerate(entries) if isinstance(e["payload"], Checkpoint))
    checkpoint: Checkpoint = entries[index]["payload"]
    return checkpoint, index


def on_record_conversation() -> list[dict[str, Any]]:
    entries = record_conversation(True, MLDSA_CHECKPOINT_SIGNATURE)
    checkpoint, _ = conversation_checkpoint(entries)
    message = checkpoint_message(RECORD_LINE_ID, checkpoint.counts, checkpoint.heads)
    try:
        mldsa_verify(mldsa_public(INVITER_MLDSA_SEED), MLDSA_CHECKPOINT_SIGNATURE, message)
    except BadSignature:
        fresh = mldsa_sign(INVITER_MLDSA_SEED, message)
        raise SystemExit(
            "the checkpoint message of record.json changed: replace MLDSA_CHECKPOINT_SIGNATURE in "
            f"{GENERATOR} with this fresh signature and run again:\n{fresh.hex()}"
        ) from None
    return entries


def entry_vector(description: str, e: dict[str, Any], on_record: bool) -> dict[str, Any]:
    payload: Payload = e["payload"]
    seen: Seen = e["seen"]
    body = cbor_encode({"p": payload.to_cbor(), "seen": [seen.count, seen.head]})
    message = entry_message(e["line_id"], e["direction"], e["seq"], body)
    vector: dict[str, Any] = {
        "description": description,
        "line_id": h(e["line_id"]),
        "direction": e["direction"],
        "seq": e["seq"],
        "on_record": on_record,
        "payload_type": payload.to_cbor()["t"],
        "payload": h(encode_payload(payload)),
        "seen": {"count": seen.count, "head": h(seen.head)},
        "body": h(body),
    }
    if on_record:
        vector.update(
            signature_input=h(message),
            signer_seed=h(e["seed"]),
            signing_key=h(ed25519_public_from_seed(e["seed"])),
            signature=h(ed25519_sign(e["seed"], message)),
        )
    vector["entry"] = h(e["entry"])
    vector["chain_hash"] = h(e["hash"])
    return vector


def chain_by_rule(label: str, n: int, diverge_at: int | None = None) -> list[bytes]:
    """Synthetic chain hashes for the comparison vectors: entry i (1-based) is
    SHA-256(label | "/" | i); from ``diverge_at`` on, SHA-256(label | "/other/" | i)."""
    return [
        sha256(f"{label}/{'other/' if diverge_at is not None and i >= diverge_at else ''}{i}".encode())
        for i in range(1, n + 1)
    ]


def comparison_vectors(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checkpoint, index = conversation_checkpoint(entries)
    ours = {d: [e["hash"] for e in entries if e["direction"] == d] for d in (0, 1)}
    seq = entries[index]["seq"]
    at_accepter = {0: ours[0][: seq - 1], 1: ours[1][:2]}  # before the accepter sealed its receipt
    behind = {0: ours[0][: seq - 1], 1: ours[1]}  # the receipt (1, 3) was sealed before it arrived
    altered = {0: ours[0][: seq - 1], 1: [ours[1][0], sha256(b"another entry 2")]}
    short = {0: ours[0][:1], 1: ours[1][:2]}
    cases: list[tuple[str, Checkpoint, dict[int, list[bytes]], int, dict[str, Any] | None]] = [
        ("the accepter's record agrees with the inviter's checkpoint", checkpoint, at_accepter, 1, None),
        ("agreed, but the peer had not yet received our entry 3", checkpoint, behind, 1, None),
        ("our entry 2 differs from what the peer recorded", checkpoint, altered, 1, None),
        ("the peer records an entry we never sent or received (injected)", checkpoint, short, 1, None),
    ]
    long_theirs = chain_by_rule("record/compare", 200, diverge_at=150)
    long_old = chain_by_rule("record/compare", 200, diverge_at=10)
    long_ours = chain_by_rule("record/compare", 200)
    genesis1 = transcript.genesis(LINE_ID, 1)
    for description, theirs, k in (
        ("200 entries; the records differ from entry 150 on (inside the window)", long_theirs, 150),
        ("200 entries; they differ from entry 10 on, before the 128-entry window", long_old, 10),
    ):
        cp = Checkpoint((200, 0), (theirs[-1], genesis1), (short_hashes(theirs), b""))
        by_rule: dict[str, Any] = {"label": "record/compare", "n": 200, "peer_diverges_at": k}
        cases.append((description, cp, {0: long_ours, 1: []}, 1, by_rule))
    out = []
    for description, cp, local, our_direction, rule in cases:
        result = compare_checkpoint(cp, local, our_direction)
        vector: dict[str, Any] = {
            "description": description,
            "checkpoint": {
                "counts": list(cp.counts),
                "heads": [h(cp.heads[0]), h(cp.heads[1])],
                "recent": [h(cp.recent[0]), h(cp.recent[1])],
            },
            "our_direction": our_direction,
        }
        if rule is None:
            vector["local"] = [[h(x) for x in local[0]], [h(x) for x in local[1]]]
        else:
            vector["local_rule"] = rule
        vector["expected"] = {"status": result.status, "direction": result.direction, "seq": result.seq}
        out.append(vector)
    return out


def record_vectors() -> dict[str, Any]:
    on = on_record_conversation()
    off = record_conversation(False)
    names = ["hello", "welcome", "msg (FLASH)", "ack of message 2", "checkpoint", "delivered up to 3"]
    entries = [entry_vector(f"on the record: {name}", e, True) for name, e in zip(names, on, strict=True)] + [
        entry_vector(f"off the record: {name}", e, False) for name, e in zip(names, off, strict=True)
    ]

    # Malformed entries: (description, bytes, line, direction, seq, verify key or None).
    _, inviter_ed = inviter_keys()
    _, accepter_ed = accepter_keys()
    welcome_on, welcome_off, msg_on = on[1], off[1], on[2]
    body = {"p": Welcome().to_cbor(), "seen": [welcome_on["seen"].count, welcome_on["seen"].head]}
    signed = cbor2.loads(welcome_on["entry"])
    bad: list[tuple[str, bytes, bytes, int, int, bytes | None]] = []

    def bad_entry(
        description: str,
        data: bytes,
        line: bytes = LINE_ID,
        d: int = 0,
        seq: int = 1,
        key: bytes | None = None,
    ) -> None:
        bad.append((description, data, line, d, seq, key))

    bad_entry("on the record, unsigned", welcome_off["entry"], key=inviter_ed)
    bad_entry("off the record, signed", welcome_on["entry"], RECORD_LINE_ID)
    bad_entry("signed by the other station", welcome_on["entry"], RECORD_LINE_ID, key=accepter_ed)
    bad_entry(
        "verified as another sequence number (replayed)", msg_on["entry"], RECORD_LINE_ID, 1, 3, accepter_ed
    )
    bad_entry("verified as another direction", msg_on["entry"], RECORD_LINE_ID, 0, 2, accepter_ed)
    bad_entry("verified on another line", msg_on["entry"], LINE_ID, 1, 2, accepter_ed)
    short_sig = cbor_encode({**signed, "sig": signed["sig"][:63]})
    bad_entry("signature of 63 bytes", short_sig, RECORD_LINE_ID, key=inviter_ed)
    bad_entry("an unknown field", cbor_encode({**body, "x": 1}))
    bad_entry("no 'seen'", cbor_encode({"p": Welcome().to_cbor()}))
    bad_entry("'seen' head of 31 bytes", cbor_encode({**body, "seen": [1, bytes(31)]}))
    bad_entry("'seen' count negative", cbor_encode({**body, "seen": [-1, bytes(32)]}))
    bad_entry("'seen' count a boolean", cbor_encode({**body, "seen": [True, bytes(32)]}))
    bad_entry("'seen' of three elements", cbor_encode({**body, "seen": [1, bytes(32), 0]}))
    bad_entry("no payload", cbor_encode({"seen": body["seen"]}))
    bad_entry("a payload with an unknown field", cbor_encode({**body, "p": {"t": "welcome", "x": 1}}))
    bad_entry("the bare payload, not an entry", encode_payload(Welcome()))
    bad_entry("map keys not in canonical order", cbor2.dumps({"seen": body["seen"], "p": body["p"]}))
    bad_entry("empty (what Olm could not open)", b"")
    malformed = [
        {
            "description": d,
            "input": h(data),
            "line_id": h(line),
            "direction": direction,
            "seq": seq,
            "verify_key": h(key) if key is not None else None,
            "error": error_name(decode_entry, data, line, direction, seq, key),
        }
        for d, data, line, direction, seq, key in bad
    ]

    checkpoint, _ = conversation_checkpoint(on)
    off_checkpoint, _ = conversation_checkpoint(off)
    message = checkpoint_message(RECORD_LINE_ID, checkpoint.counts, checkpoint.heads)
    cp_map = off_checkpoint.to_cbor()  # unsigned, to keep the file small; decoding is the same
    bad_checkpoints = [
        ("recent hashes not a multiple of 8 bytes", {**cp_map, "r": [cp_map["r"][0][:-1], cp_map["r"][1]]}),
        ("more than 128 recent hashes", {**cp_map, "r": [bytes(8 * 129), cp_map["r"][1]]}),
        ("a head of 31 bytes", {**cp_map, "h": [cp_map["h"][0][:31], cp_map["h"][1]]}),
        ("three counts", {**cp_map, "n": [1, 2, 3]}),
        ("a negative count", {**cp_map, "n": [-1, 2]}),
        ("an ML-DSA-65 signature of 1 byte (neither empty nor 3309 bytes)", {**cp_map, "pq": b"\x00"}),
        ("no pq field", {k: v for k, v in cp_map.items() if k != "pq"}),
    ]
    return doc(
        "The record (record.py): every payload travels in an entry {p, seen, sig}; the transcript "
        "chain hashes the entry bytes; on the record the entry is signed with Ed25519 and checkpoints "
        "with ML-DSA-65; exports are verified with the two stations' public keys alone.",
        notes=[
            "Ed25519 is deterministic: every entry signature is reproducible from the signer seed.",
            "ML-DSA-65 signing is hedged (randomised) in OpenSSL: two signatures of one message differ. "
            "The checkpoint signature here was made once with the inviter's ML-DSA seed and is a constant "
            "of the generator; it is checked by verification, and a fresh signature verifies too.",
            "The on-the-record line is that of invitation 1 of invitation.json (line-id-2, record true); "
            "the off-the-record line is that of invitation 0 (the shared pairing).",
        ],
        constants={
            "entry_context": h(ENTRY_CONTEXT),
            "checkpoint_context": h(CHECKPOINT_CONTEXT),
            "export_format": EXPORT_FORMAT,
            "export_seal_context": h(SEAL_CONTEXT),
            "recent_hashes": RECENT,
            "short_hash_bytes": SHORT,
            "mldsa65_public_len": 1952,
            "mldsa65_signature_len": 3309,
        },
        keys={
            "inviter": {
                "ed25519_seed": h(INVITER_ED_SEED),
                "ed25519": h(inviter_ed),
                "mldsa65_seed": h(INVITER_MLDSA_SEED),
                "mldsa65": h(mldsa_public(INVITER_MLDSA_SEED)),
            },
            "accepter": {
                "ed25519_seed": h(ACCEPTER_ED_SEED),
                "ed25519": h(accepter_ed),
                "mldsa65_seed": h(ACCEPTER_MLDSA_SEED),
                "mldsa65": h(mldsa_public(ACCEPTER_MLDSA_SEED)),
            },
        },
        entries=entries,
        malformed_entries=malformed,
        checkpoint={
            "description": "the inviter's checkpoint on the record (entry 3 of direction 0): both chains "
            "as they stood before it was sealed",
            "line_id": h(RECORD_LINE_ID),
            "counts": list(checkpoint.counts),
            "heads": [h(checkpoint.heads[0]), h(checkpoint.heads[1])],
            "recent": [h(checkpoint.recent[0]), h(checkpoint.recent[1])],
            "message": h(message),
            "mldsa65_seed": h(INVITER_MLDSA_SEED),
            "mldsa65_public": h(mldsa_public(INVITER_MLDSA_SEED)),
            "signature": h(checkpoint.pq_signature),
            "payload": h(encode_payload(checkpoint)),
        },
        checkpoint_off_record={
            "description": "the same checkpoint on the off-the-record line: no signature (pq is empty)",
            "line_id": h(LINE_ID),
            "counts": list(off_checkpoint.counts),
            "heads": [h(off_checkpoint.heads[0]), h(off_checkpoint.heads[1])],
            "recent": [h(off_checkpoint.recent[0]), h(off_checkpoint.recent[1])],
            "payload": h(encode_payload(off_checkpoint)),
        },
        malformed_checkpoints=[
            {"description": d, "input": h(data), "error": error_name(decode_payload, data)}
            for d, data in ((d, cbor_encode(m)) for d, m in bad_checkpoints)
        ],
        comparisons=comparison_vectors(on),
        comparisons_note="local[d][i] is our chain hash after entry i+1 of direction d. A local_rule "
        "stands for chains made by rule: our entry i (1-based) of direction 0 is SHA-256(label | '/' | i); "
        "the peer's is the same before peer_diverges_at and SHA-256(label | '/other/' | i) from there on; "
        "direction 1 is empty. The checkpoint is the peer's (heads[0] = its hash after entry n).",
        exports_note="Exported records and their verification are in docs/vectors/record-tamper/ "
        "(tools/gen_record_tamper.py): genuine and tampered exports, key files and a manifest.",
    )


# ---- wire.json -----------------------------------------------------------------------------------

WIRE_URL_A = "wss://relay-one.example:7400"  # the relay of invitation 0 (the shared pairing)
WIRE_URL_B = "ws://127.0.0.1:7401"  # a second circuit of the same line


def wire_keys_vector(
    description: str, ikm: bytes, info: bytes, url: str, keys: wire.CircuitKeys
) -> dict[str, Any]:
    return {
        "description": description,
        "ikm": h(ikm),
        "url": url,
        "info": h(info + url.encode("utf-8")),
        "aead_key": h(keys.aead),
        "nonce_key": h(keys.nonce),
    }


def wire_plaintext(keys: wire.CircuitKeys, frame: bytes) -> bytes:
    """The plaintext inside a frame (for the vectors; the code opens frames with wire.open_frame)."""
    return aead_open(keys.aead, frame[: wire.NONCE], frame[wire.NONCE :], b"")


def wire_seal_raw(keys: wire.CircuitKeys, plaintext: bytes, nonce: bytes | None = None) -> bytes:
    """A frame around any plaintext, as a sender holding the key could make it (negative vectors)."""
    nonce = hmac_sha256(keys.nonce, plaintext)[: wire.NONCE] if nonce is None else nonce
    return nonce + aead_seal(keys.aead, nonce, plaintext, b"")


def wire_fragment_plaintext(
    seq: int, index: int, count: int, length: int, kind: int = 1, tail: bytes = b""
) -> bytes:
    body = wire.FRAGMENT_HEADER.pack(kind, seq, index, count, length) + fixed(
        "wire/chunk", min(length, wire.CHUNK)
    )
    body += bytes(wire.PLAINTEXT - len(body))
    return body[: wire.PLAINTEXT - len(tail)] + tail


def wire_vectors() -> dict[str, Any]:
    secrets = pairing_secrets()
    to_accepter, to_inviter = secrets["to_accepter"], secrets["to_inviter"]
    send_key = invitation_one().mailboxes[0].send_key
    keys_a = wire.circuit_keys(to_accepter, WIRE_URL_A)
    keys_b = wire.circuit_keys(to_accepter, WIRE_URL_B)
    keys_back = wire.circuit_keys(to_inviter, WIRE_URL_A)
    keys_hello = wire.hello_keys(send_key, WIRE_URL_A)
    named = {"A": keys_a, "B": keys_b, "A-back": keys_back, "A-hello": keys_hello}

    data_env = envelope.seal(
        Header(Kind.DATA, LINE_ID, 0, 7, fixed("wire/data-nonce", 12)),
        to_accepter,
        b"\x01" + fixed("olm-placeholder/wire-data", 150),
    )
    big_env = envelope.seal(
        Header(Kind.DATA, LINE_ID, 0, 8, fixed("wire/big-nonce", 12)),
        to_accepter,
        b"\x01" + fixed("olm-placeholder/wire-big", 9_000),
    )
    _, _, hello_env = hello_envelope()
    cover_random = fixed("wire/cover-random", 16)

    def wrapped(description: str, keys_name: str, seq: int, env: bytes) -> dict[str, Any]:
        keys = named[keys_name]
        frames_out = wire.seal_fragments(keys, seq, env)
        return {
            "description": description,
            "keys": keys_name,
            "seq": seq,
            "envelope": h(env),
            "chunk_lengths": [len(c) for c in wire.split(env)],
            "frames": [h(f) for f in frames_out],
            "plaintext_headers": [h(wire_plaintext(keys, f)[: wire.HEADER]) for f in frames_out],
            "msg_ids": [h(message_id(f)) for f in frames_out],
        }

    fragments = [
        wrapped("a 313-byte DATA envelope (seq 7, direction 0) on circuit A: one frame", "A", 7, data_env),
        wrapped("the same envelope on circuit B: other keys, no common bytes", "B", 7, data_env),
        wrapped("a 16 441-byte DATA envelope (seq 8) on circuit A: five frames", "A", 8, big_env),
        wrapped(
            "the hello of the shared pairing (seq 1, direction 1) under the hello keys of A",
            "A-hello",
            1,
            hello_env,
        ),
    ]
    first = wire.seal_fragments(keys_a, 7, data_env)[0]
    cover = wire.seal_cover(keys_a, cover_random)

    bad: list[tuple[str, str, bytes]] = [
        ("nonce byte flipped", "A", flip(first, 0)),
        ("ciphertext byte flipped", "A", flip(first, 100)),
        ("tag byte flipped", "A", flip(first, wire.FRAME_SIZE - 1)),
        ("a frame of circuit B opened with the keys of A", "A", wire.seal_fragments(keys_b, 7, data_env)[0]),
        (
            "a frame of the other direction (to_inviter) on A",
            "A",
            wire.seal_fragments(keys_back, 7, data_env)[0],
        ),
        (
            "the hello frame opened with the circuit keys",
            "A",
            wire.seal_fragments(keys_hello, 1, hello_env)[0],
        ),
        ("a data frame opened with the hello keys", "A-hello", first),
        ("empty", "A", b""),
        ("one byte short", "A", first[:-1]),
        ("one byte long", "A", first + b"\x00"),
        (
            "fragment padding not zero",
            "A",
            wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 1, 10, tail=b"\x01")),
        ),
        (
            "cover padding not zero",
            "A",
            wire_seal_raw(keys_a, (b"\x00" + cover_random).ljust(wire.PLAINTEXT - 1, b"\x00") + b"\x01"),
        ),
        (
            "nonce not the synthetic nonce",
            "A",
            wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 1, 10), bytes(12)),
        ),
        ("unknown kind 2", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 1, 10, kind=2))),
        ("sequence number 0", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(0, 0, 1, 10))),
        ("count 0", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 0, 10))),
        ("count 10", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 10, 10))),
        ("index equal to count", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 2, 2, 10))),
        ("length 0", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 1, 0))),
        ("length 4 056", "A", wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 1, wire.CHUNK + 1))),
        (
            "a fragment before the last that is not full",
            "A",
            wire_seal_raw(keys_a, wire_fragment_plaintext(7, 0, 2, 4000)),
        ),
    ]
    malformed = [
        {"description": d, "keys": k, "input": h(data), "error": error_name(wire.open_frame, named[k], data)}
        for d, k, data in bad
    ]
    return doc(
        "The circuit frame (wire.py, PROTOCOL §7.1): every SEND payload is 4 096 bytes; an envelope is "
        "split into fragments, each wrapped per circuit under keys derived from the line key of the "
        "direction (or, for the hello, the inviter's mailbox send key) and the relay URL.",
        notes=[
            "Circuit A is the relay of invitation 0; direction 0's line key is to_accepter of "
            "keyschedule.json. The hello keys come from invitation 0's mailbox send_key (the send seed).",
            "Frames are deterministic: nonce = HMAC-SHA256(nonce key, plaintext)[:12]. msg_ids are the "
            "relay's SHA-256(frame)[:16] (relay_frames.json).",
            "The envelopes are real envelopes (§7) around " + OLM_PLACEHOLDER_NOTE + "; the chunks of a "
            "malformed plaintext are fixed('wire/chunk').",
        ],
        constants={
            "frame_size": wire.FRAME_SIZE,
            "nonce_len": wire.NONCE,
            "tag_len": wire.TAG,
            "plaintext_len": wire.PLAINTEXT,
            "fragment_header_len": wire.HEADER,
            "chunk_len": wire.CHUNK,
            "max_fragments": wire.MAX_FRAGMENTS,
            "cover_random_len": wire.COVER_RANDOM,
            "kinds": {"COVER": wire.KIND_COVER, "FRAGMENT": wire.KIND_FRAGMENT},
            "circuit_info": h(wire.CIRCUIT_INFO),
            "hello_circuit_info": h(wire.HELLO_CIRCUIT_INFO),
        },
        keys={
            "A": wire_keys_vector(
                "circuit A, direction 0", to_accepter, wire.CIRCUIT_INFO, WIRE_URL_A, keys_a
            ),
            "B": wire_keys_vector(
                "circuit B, direction 0", to_accepter, wire.CIRCUIT_INFO, WIRE_URL_B, keys_b
            ),
            "A-back": wire_keys_vector(
                "circuit A, direction 1", to_inviter, wire.CIRCUIT_INFO, WIRE_URL_A, keys_back
            ),
            "A-hello": wire_keys_vector(
                "the hello keys of circuit A", send_key, wire.HELLO_CIRCUIT_INFO, WIRE_URL_A, keys_hello
            ),
        },
        fragments=fragments,
        example_plaintext={
            "description": "the whole plaintext of the first frame of fragments[0]",
            "keys": "A",
            "plaintext": h(wire_plaintext(keys_a, first)),
            "nonce": h(first[: wire.NONCE]),
        },
        cover={
            "description": "a cover frame on circuit A",
            "keys": "A",
            "random": h(cover_random),
            "plaintext_prefix": h(wire_plaintext(keys_a, cover)[: 1 + wire.COVER_RANDOM]),
            "frame": h(cover),
        },
        malformed=malformed,
    )


# ---- driver --------------------------------------------------------------------------------------

BUILDERS = {
    "relay_frames.json": relay_frames,
    "envelope.json": envelope_vectors,
    "keyschedule.json": keyschedule_vectors,
    "invitation.json": invitation_vectors,
    "payloads.json": payload_vectors,
    "transcript.json": transcript_vectors,
    "safety.json": safety_vectors,
    "keystore.json": keystore_vectors,
    "record.json": record_vectors,
    "wire.json": wire_vectors,
}


def render() -> dict[str, str]:
    """The exact text of every vector file."""
    return {
        name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in BUILDERS.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/vectors differ from the output")
    parser.add_argument("--out", type=Path, default=OUT, help="directory of the vector files")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = []
        for name, text in files.items():
            path = args.out / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        if stale:
            print(f"test vectors out of date: {', '.join(stale)}; run python {GENERATOR}", file=sys.stderr)
            return 1
        print(f"{len(files)} vector files up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} vector files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
