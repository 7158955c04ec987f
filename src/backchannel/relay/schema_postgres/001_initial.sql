-- Relay schema for PostgreSQL, version 1 (the same tables as schema/001_initial.sql for SQLite).
-- Applied once, in one transaction, by storage/postgres.py.

CREATE TABLE mailboxes (
    recv_id    BYTEA PRIMARY KEY,
    send_id    BYTEA NOT NULL UNIQUE,
    recv_key   BYTEA NOT NULL,
    send_key   BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

-- A sequence never hands out a number twice, even after the newest row is deleted, so a
-- subscription's cursor ("pushed everything up to seq N") stays valid.
CREATE TABLE messages (
    seq       BIGSERIAL PRIMARY KEY,
    recv_id   BYTEA NOT NULL REFERENCES mailboxes (recv_id),
    msg_id    BYTEA NOT NULL,
    payload   BYTEA NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    UNIQUE (recv_id, msg_id)
);

CREATE INDEX messages_fifo ON messages (recv_id, seq);
CREATE INDEX messages_age ON messages (stored_at);
