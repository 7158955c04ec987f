-- backchannel station store, schema version 1.
-- Secrets (*_sealed columns, pickles) are encrypted under the keystore's store key.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- An invitation we issued and whose hello has not arrived yet (or has: used = 1).
CREATE TABLE invitations (
    line_id        BLOB PRIMARY KEY,
    local_name     TEXT NOT NULL,
    blob           BLOB NOT NULL,
    secrets_sealed BLOB NOT NULL,   -- X25519 secret | ML-KEM seed
    created_at     REAL NOT NULL,
    used           INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE lines (
    line_id         BLOB PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    role            INTEGER NOT NULL,          -- 0 inviter, 1 accepter
    state           TEXT NOT NULL,             -- 'pairing' (accepter, before welcome) or 'established'
    peer_name       TEXT NOT NULL,
    peer_identity   BLOB NOT NULL,
    peer_signing    BLOB NOT NULL,
    keys_sealed     BLOB NOT NULL,
    session_pickle  TEXT NOT NULL,
    next_seq        INTEGER NOT NULL,
    delivered_upto  INTEGER NOT NULL,
    tx_count0       INTEGER NOT NULL,
    tx_head0        BLOB NOT NULL,
    tx_count1       INTEGER NOT NULL,
    tx_head1        BLOB NOT NULL,
    on_record       INTEGER NOT NULL DEFAULT 0,
    verified_at     REAL,
    created_at      REAL NOT NULL,
    last_contact    REAL
);

-- Our own inbound mailboxes (we hold the receive key).
CREATE TABLE mailboxes (
    line_id          BLOB NOT NULL,
    url              TEXT NOT NULL,
    recv_id          BLOB NOT NULL UNIQUE,
    recv_key_sealed  BLOB NOT NULL,
    PRIMARY KEY (line_id, url)
);

-- The peer's mailboxes we post into (we hold a send capability).
CREATE TABLE peer_mailboxes (
    line_id          BLOB NOT NULL,
    url              TEXT NOT NULL,
    send_id          BLOB NOT NULL,
    send_key_sealed  BLOB NOT NULL,
    PRIMARY KEY (line_id, url)
);

-- Every frame we sealed, in sequence order; the exact bytes every retry sends.
CREATE TABLE outbox (
    line_id      BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    precedence   TEXT,
    body_sealed  BLOB,
    frame        BLOB NOT NULL,
    created_at   REAL NOT NULL,
    relayed_at   REAL,
    delivered_at REAL,
    acked_at     REAL,
    acked_by     TEXT,
    PRIMARY KEY (line_id, seq)
);
CREATE INDEX outbox_unrelayed ON outbox (relayed_at) WHERE relayed_at IS NULL;

-- Operator messages received, decrypted in order.
CREATE TABLE inbox (
    line_id      BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    precedence   TEXT NOT NULL,
    body_sealed  BLOB NOT NULL,
    sent_at      REAL NOT NULL,
    received_at  REAL NOT NULL,
    acked_at     REAL,
    acked_by     TEXT,
    PRIMARY KEY (line_id, seq)
);

-- Authenticated frames that arrived early, waiting for the gap before them to fill.
CREATE TABLE held (
    line_id  BLOB NOT NULL,
    seq      INTEGER NOT NULL,
    frame    BLOB NOT NULL,
    PRIMARY KEY (line_id, seq)
);

-- Rejected input, by reason (tampered, replayed, misaddressed, ...).
CREATE TABLE counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
