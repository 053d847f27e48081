-- spout schema, version 1. Applied once to a new database; later changes are
-- append-only migrations in src/storage/migrations.rs, tracked in
-- PRAGMA user_version. Ids are INTEGER PRIMARY KEYs and leave the API as strings.

-- People. Usernames are unique without regard to case; output keeps the casing.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,               -- argon2id PHC string
    name          TEXT,
    type          TEXT NOT NULL DEFAULT 'human',
    locale        TEXT NOT NULL DEFAULT 'en_US',
    timezone      TEXT NOT NULL DEFAULT 'America/Chicago',
    description   TEXT NOT NULL DEFAULT '',    -- content.text
    raw           TEXT NOT NULL DEFAULT '{}',  -- v1 raw: type -> list of values
    created_at    INTEGER NOT NULL             -- unix seconds
);

-- Registered clients. The secret is shown once and only its SHA-256 is kept
-- (it is 32 random bytes, so a slow hash adds nothing).
CREATE TABLE apps (
    id          INTEGER PRIMARY KEY,
    client_id   TEXT NOT NULL UNIQUE,
    secret_hash BLOB NOT NULL,
    name        TEXT NOT NULL,
    url         TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL
);

-- A user's grant to an app, with its scopes. Granting again replaces the
-- scopes; it ends when the user's last token for the app is revoked.
CREATE TABLE authorizations (
    id         INTEGER PRIMARY KEY,
    app_id     INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes     TEXT NOT NULL,                  -- comma-separated, canonical order
    created_at INTEGER NOT NULL,
    UNIQUE (app_id, user_id)
);

-- Bearer tokens, stored as SHA-256 of the token. authorization_id NULL means
-- an app token (client_credentials).
CREATE TABLE tokens (
    id               INTEGER PRIMARY KEY,
    hash             BLOB NOT NULL UNIQUE,
    app_id           INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    authorization_id INTEGER REFERENCES authorizations(id) ON DELETE CASCADE,
    created_at       INTEGER NOT NULL
);
CREATE INDEX tokens_by_authorization ON tokens(authorization_id);

-- App Streams. A deleted stream's row is removed, so its key can be reused.
CREATE TABLE streams (
    id           INTEGER PRIMARY KEY,
    app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    object_types TEXT NOT NULL,                -- JSON array of type names
    created_at   INTEGER NOT NULL,
    UNIQUE (app_id, key)
);

-- The event log and outbox: every change that makes a stream event writes its
-- row here in the same transaction. seq orders delivery and replay.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT NOT NULL,                  -- object type (post, user, token, ...)
    audience   TEXT NOT NULL,                  -- JSON: who may see it (src/event.rs)
    auth       TEXT,                           -- JSON: authorization change carried by token events
    envelope   TEXT NOT NULL,                  -- JSON {meta, data}, everything included
    created_at INTEGER NOT NULL
);
