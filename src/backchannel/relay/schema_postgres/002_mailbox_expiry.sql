-- Relay schema for PostgreSQL, version 2 (as schema/002_mailbox_expiry.sql for SQLite):
-- mailboxes nobody uses expire, so the relay's quota comes back.

ALTER TABLE mailboxes ADD COLUMN used_at DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE mailboxes SET used_at = created_at;
CREATE INDEX mailboxes_idle ON mailboxes (used_at);
