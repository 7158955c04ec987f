-- Circuits the peer proposed in band (PROTOCOL §9.2) that the station's relay_policy holds for
-- a local operator's approval. Kept across restarts: approving later still works, since the
-- peer's capability is all that is needed (sealed like every capability at rest).
CREATE TABLE circuit_proposals (
    id               TEXT PRIMARY KEY,
    line_id          BLOB NOT NULL,
    url              TEXT NOT NULL,
    send_id          BLOB NOT NULL,
    send_key_sealed  BLOB NOT NULL,
    proposed_at      REAL NOT NULL,
    UNIQUE (line_id, url)
);
