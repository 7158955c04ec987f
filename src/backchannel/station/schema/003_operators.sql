-- backchannel station store, schema version 3: the operator console's people and record.

-- An operator account. The password is stored only as an Argon2id hash in PHC form
-- ($argon2id$v=19$m=...,t=...,p=...$salt$hash): the parameters travel with the hash.
CREATE TABLE operators (
    name           TEXT PRIMARY KEY,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'releaser', 'admin')),
    password_hash  TEXT NOT NULL,
    created_at     REAL NOT NULL,
    failed_logins  INTEGER NOT NULL DEFAULT 0,  -- consecutive failures since the last success
    locked_until   REAL,                        -- no login before this time
    last_login     REAL
);

-- A logged-in console session. The cookie carries a random token; only its SHA-256 is
-- stored, so a copy of the database opens no session. Each session has its own CSRF token.
CREATE TABLE console_sessions (
    token_hash  BLOB PRIMARY KEY,
    operator    TEXT NOT NULL REFERENCES operators (name) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Who did what, when: every operator action on the console (and operator changes by CLI).
-- Append-only: nothing in the code updates or deletes a row.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        REAL NOT NULL,
    operator  TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
