-- Relay schema, version 2: mailboxes nobody uses expire, so the relay's quota comes back.
-- used_at is the last SUBSCRIBE (or the creation); the expiry sweep refreshes it for every
-- mailbox with a live subscription and deletes the mailboxes idle past mailbox_expiry_seconds
-- that hold no frame.

ALTER TABLE mailboxes ADD COLUMN used_at REAL NOT NULL DEFAULT 0;
UPDATE mailboxes SET used_at = created_at;
CREATE INDEX mailboxes_idle ON mailboxes (used_at);
