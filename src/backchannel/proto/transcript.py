"""The transcript: a hash chain over everything said on a line, the same on both sides.

Theory of operation
-------------------
There is one chain per direction. Entry ``n`` of direction ``d`` is::

    h[d][n] = SHA-256(ENTRY | line id | d (1) | n (8) | h[d][n-1] | SHA-256(payload))
    h[d][0] = SHA-256(GENESIS | line id | d (1))

where ``payload`` is the exact canonical CBOR that travelled inside Olm. The sender appends
when it seals a frame; the receiver appends when it decrypts the frame in order. Because
each direction has a single writer and is delivered in order, the two stations compute the
same chains however the directions interleave; the *line head* combines both with their
lengths::

    head = SHA-256(HEAD | line id | n0 (8) | h[0][n0] | n1 (8) | h[1][n1])

Any dropped, altered, injected or reordered entry changes every later head.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from backchannel.proto.primitives import sha256

GENESIS = b"backchannel/v1 transcript genesis\x00"
ENTRY = b"backchannel/v1 transcript entry\x00"
HEAD = b"backchannel/v1 transcript head\x00"


def genesis(line_id: bytes, direction: int) -> bytes:
    return sha256(GENESIS + line_id + bytes([direction]))


def next_hash(line_id: bytes, direction: int, seq: int, previous: bytes, payload: bytes) -> bytes:
    return next_hash_of_digest(line_id, direction, seq, previous, sha256(payload))


def next_hash_of_digest(line_id: bytes, direction: int, seq: int, previous: bytes, digest: bytes) -> bytes:
    """The chain step from the entry's SHA-256 alone: an export may withhold an entry's body
    and give only this digest, and the chain still verifies (proto.record)."""
    return sha256(ENTRY + line_id + bytes([direction]) + seq.to_bytes(8, "big") + previous + digest)


@dataclass(frozen=True)
class Transcript:
    line_id: bytes
    counts: tuple[int, int]
    heads: tuple[bytes, bytes]

    @classmethod
    def start(cls, line_id: bytes) -> Transcript:
        return cls(line_id, (0, 0), (genesis(line_id, 0), genesis(line_id, 1)))

    def append(self, direction: int, seq: int, payload: bytes) -> Transcript:
        """Record entry ``seq`` of ``direction``; entries must come in order, without gaps."""
        if seq != self.counts[direction] + 1:
            raise ValueError(f"transcript entry {seq} out of order (have {self.counts[direction]})")
        new_head = next_hash(self.line_id, direction, seq, self.heads[direction], payload)
        counts = list(self.counts)
        heads = list(self.heads)
        counts[direction] = seq
        heads[direction] = new_head
        return replace(self, counts=(counts[0], counts[1]), heads=(heads[0], heads[1]))

    def head(self) -> bytes:
        return sha256(
            HEAD
            + self.line_id
            + self.counts[0].to_bytes(8, "big")
            + self.heads[0]
            + self.counts[1].to_bytes(8, "big")
            + self.heads[1]
        )
