-- Idempotent sends (send --id KEY): the caller's key for a message, stored in the transaction
-- that stores the message itself, so a retry after any crash finds it (or finds nothing, and
-- the message was never stored). Unique per line; looked up by key alone, since a key reused
-- on another line is the caller's mistake and must be refused, not sent.
ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX outbox_idempotency ON outbox (line_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX outbox_idempotency_key ON outbox (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A message held by the two-person rule keeps its key as a draft (it has no sequence number yet).
ALTER TABLE drafts ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX drafts_idempotency ON drafts (line_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX drafts_idempotency_key ON drafts (idempotency_key) WHERE idempotency_key IS NOT NULL;
