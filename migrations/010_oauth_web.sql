-- Version 10: the OAuth web flow (issue 19).
-- The password grant becomes opt-in per app, as on pnut; apps made before
-- this version keep it, so a running deployment does not lose its logins.
ALTER TABLE apps ADD COLUMN password_grant INTEGER NOT NULL DEFAULT 0;
UPDATE apps SET password_grant = 1;

-- Redirect URIs an app registered (`spout admin app add --redirect-uri`).
CREATE TABLE app_redirect_uris (
    app_id INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    uri    TEXT NOT NULL,
    PRIMARY KEY (app_id, uri)
) WITHOUT ROWID;

-- Authorization codes, stored hashed; single use: an exchanged code keeps
-- its row (token_id set) until it expires, so a second use is recognised
-- and revokes the token the first one made (RFC 6749 §4.1.2).
CREATE TABLE oauth_codes (
    hash         BLOB PRIMARY KEY,
    app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    scopes       TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    challenge    TEXT,                     -- PKCE S256 code_challenge
    expires_at   INTEGER NOT NULL,
    token_id     INTEGER
) WITHOUT ROWID;
CREATE INDEX oauth_codes_by_expiry ON oauth_codes(expires_at);

-- Signed-in browser sessions, stored hashed (the cookie holds the secret).
CREATE TABLE web_sessions (
    hash       BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX web_sessions_by_user ON web_sessions(user_id, created_at);
CREATE INDEX web_sessions_by_expiry ON web_sessions(expires_at);
