-- Relay schema, version 1. Applied once, in one transaction, by storage/sqlite.py.

CREATE TABLE mailboxes (
    recv_id    BLOB PRIMARY KEY,
    send_id    BLOB NOT NULL UNIQUE,
    recv_key   BLOB NOT NULL,
    send_key   BLOB NOT NULL,
    created_at REAL NOT NULL
);

-- AUTOINCREMENT: sequence numbers are never reused, even after the newest row is deleted,
-- so a subscription's cursor ("pushed everything up to seq N") stays valid.
CREATE TABLE messages (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    recv_id   BLOB NOT NULL REFERENCES mailboxes (recv_id),
    msg_id    BLOB NOT NULL,
    payload   BLOB NOT NULL,
    stored_at REAL NOT NULL,
    UNIQUE (recv_id, msg_id)
);

CREATE INDEX messages_fifo ON messages (recv_id, seq);
CREATE INDEX messages_age ON messages (stored_at);
