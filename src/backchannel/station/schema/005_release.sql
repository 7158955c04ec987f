-- backchannel station store, schema version 5: release authority (the two-person rule).

-- A message drafted on a line that requires release; it is sealed and sent only when a
-- second operator releases it. Until then nothing about it leaves the station.
CREATE TABLE drafts (
    id           TEXT PRIMARY KEY,
    line_id      BLOB NOT NULL,
    precedence   TEXT NOT NULL,
    body_sealed  BLOB NOT NULL,
    drafted_by   TEXT NOT NULL,
    created_at   REAL NOT NULL,
    released_by  TEXT,
    released_at  REAL,
    seq          INTEGER
);
CREATE INDEX drafts_pending ON drafts (created_at) WHERE released_at IS NULL;
