-- Rotating mailboxes (PROTOCOL §4, §9.2). A rotated mailbox moves to retired_mailboxes like a
-- removed circuit's, marked 'rotated' with the sequence number of our circuits change that
-- offered its successor; applied_at is when an entry of the peer showed (its `seen`) that it
-- applied that change. The row stays, and the mailbox is read, until the relay answered OK to
-- its DELETE (rotation_drain_seconds after applied_at): every step resumes after a crash.
ALTER TABLE retired_mailboxes ADD COLUMN reason TEXT NOT NULL DEFAULT 'removed';
ALTER TABLE retired_mailboxes ADD COLUMN change_seq INTEGER;
ALTER TABLE retired_mailboxes ADD COLUMN applied_at REAL;

-- Each line's rotation schedule: when it last rotated (NULL: never) and when it is next due
-- (drawn with jitter once, so a restart does not move it).
CREATE TABLE line_rotations (
    line_id     BLOB PRIMARY KEY,
    rotated_at  REAL,
    due_at      REAL NOT NULL
);
