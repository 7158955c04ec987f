-- backchannel station store, schema version 4: the record.
-- (Version 3 holds the console's operators and audit log.)

-- The peer's ML-DSA-65 public key, for lines on the record.
ALTER TABLE lines ADD COLUMN peer_pq BLOB;

-- Every transcript entry in both directions: the exact entry bytes (sealed at rest) and the
-- chain hash after it, so that checkpoints can be compared and transcripts exported.
CREATE TABLE entries (
    line_id       BLOB NOT NULL,
    direction     INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    hash          BLOB NOT NULL,
    entry_sealed  BLOB NOT NULL,
    at            REAL NOT NULL,
    PRIMARY KEY (line_id, direction, seq)
);

-- Checkpoints sent and received, with the outcome of comparing them.
CREATE TABLE checkpoints (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    line_id       BLOB NOT NULL,
    by_direction  INTEGER NOT NULL,
    seq           INTEGER NOT NULL,
    n0            INTEGER NOT NULL,
    h0            BLOB NOT NULL,
    n1            INTEGER NOT NULL,
    h1            BLOB NOT NULL,
    pq_signature  BLOB NOT NULL,
    status        TEXT NOT NULL,
    detail        TEXT NOT NULL,
    at            REAL NOT NULL
);
