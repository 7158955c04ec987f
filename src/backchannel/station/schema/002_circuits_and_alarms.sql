-- backchannel station store, schema version 2: several circuits per line, alarms.

-- A frame is sent on every circuit of its line; this records which circuits stored it,
-- until every circuit has (then outbox.relayed_all = 1 and its rows here go).
ALTER TABLE outbox ADD COLUMN relayed_all INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN escalated_at REAL;
CREATE INDEX outbox_not_everywhere ON outbox (line_id, seq) WHERE relayed_all = 0;

CREATE TABLE sent (
    line_id  BLOB NOT NULL,
    url      TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (line_id, url, seq)
);

-- Alarms are raised once and cleared once; an open alarm has cleared_at NULL.
CREATE TABLE alarms (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    line_id     BLOB,
    subject     TEXT NOT NULL,
    message     TEXT NOT NULL,
    raised_at   REAL NOT NULL,
    cleared_at  REAL,
    acked_at    REAL,
    acked_by    TEXT
);
CREATE UNIQUE INDEX alarms_open ON alarms (kind, line_id, subject) WHERE cleared_at IS NULL;
