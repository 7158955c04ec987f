-- Our own mailboxes on relays whose circuit was removed from their line. They are still read
-- (frames the peer sent before it applied the removal, or a removal it refused, still arrive
-- there and drain), but they are no longer the line's circuit: adding that relay again creates
-- a fresh mailbox and offers it to the peer, as for a relay the line never used.
CREATE TABLE retired_mailboxes (
    line_id          BLOB NOT NULL,
    url              TEXT NOT NULL,
    recv_id          BLOB NOT NULL UNIQUE,
    recv_key_sealed  BLOB NOT NULL,
    retired_at       REAL NOT NULL
);
