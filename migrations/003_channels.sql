-- Version 3: channels, ACLs, subscriptions, messages, markers, files, polls
-- (issue: channels, messages, subscriptions, markers, files and polls).

-- Channels. owner_id is NULL for PM channels (pnut shows no owner there).
-- The ACL is small and always read whole, so it is one JSON column:
-- {"full":{"immutable":b,"user_ids":[n]},"write":{"any_user":b,"immutable":b,
--  "user_ids":[n]},"read":{"any_user":b,"immutable":b,"public":b,"user_ids":[n]}}.
-- pm_key is the sorted, comma-joined participant ids of a PM channel, so
-- POST /channels/pm/messages finds the channel for a user set by one lookup.
-- activity orders the subscribed-channels inbox: a number taken from one
-- counter (max + 1) when the channel is created and on every new message,
-- so it is unique and doubles as the inbox's pagination_id.
CREATE TABLE channels (
    id         INTEGER PRIMARY KEY,
    type       TEXT NOT NULL,
    owner_id   INTEGER REFERENCES users(id),
    acl        TEXT NOT NULL,
    raw        TEXT NOT NULL DEFAULT '{}',
    is_active  INTEGER NOT NULL DEFAULT 1,
    pm_key     TEXT UNIQUE,
    activity   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX channels_by_owner ON channels(owner_id, id);
CREATE INDEX channels_by_activity ON channels(activity);

-- Who reads a channel by subscription. id is the subscribers list's
-- pagination_id.
CREATE TABLE channel_subscriptions (
    id         INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    UNIQUE (channel_id, user_id)
);
CREATE INDEX subscriptions_by_user ON channel_subscriptions(user_id, channel_id);

-- Muted channels: never auto-subscribed (PMs), listed by /users/me/channels/muted.
CREATE TABLE channel_mutes (
    id         INTEGER PRIMARY KEY,
    channel_id INTEGER NOT NULL REFERENCES channels(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    UNIQUE (channel_id, user_id)
);

-- Messages. A deleted message keeps its row (is_deleted, deleted_by) so
-- lists can show it with include_deleted=1; its text is kept but never sent.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL REFERENCES channels(id),
    user_id     INTEGER NOT NULL REFERENCES users(id),
    app_id      INTEGER NOT NULL REFERENCES apps(id),
    text        TEXT NOT NULL,
    raw         TEXT NOT NULL DEFAULT '{}',
    reply_to    INTEGER REFERENCES messages(id),
    thread_id   INTEGER NOT NULL,
    is_nsfw     INTEGER NOT NULL DEFAULT 0,
    is_deleted  INTEGER NOT NULL DEFAULT 0,
    deleted_by  INTEGER REFERENCES users(id),
    is_sticky   INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE INDEX messages_by_channel ON messages(channel_id, id);
CREATE INDEX messages_by_reply ON messages(reply_to) WHERE reply_to IS NOT NULL;
CREATE INDEX messages_sticky ON messages(channel_id, id) WHERE is_sticky = 1;

-- Read markers (any name; channel markers are "channel:{id}").
-- last_read_id only moves forward unless reset_read_id=1.
CREATE TABLE markers (
    user_id      INTEGER NOT NULL REFERENCES users(id),
    name         TEXT NOT NULL,
    marker_id    INTEGER NOT NULL,
    last_read_id INTEGER NOT NULL,
    percentage   INTEGER NOT NULL DEFAULT 0,
    version      INTEGER NOT NULL DEFAULT 1,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- A user's presence in one channel; expired rows mean offline.
CREATE TABLE channel_presence (
    channel_id   INTEGER NOT NULL REFERENCES channels(id),
    user_id      INTEGER NOT NULL REFERENCES users(id),
    presence     TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

-- Files. The content lives in the row (BLOB): uploads are capped by the
-- server's --max-body (1 MiB by default), so SQLite holds them comfortably
-- and a file is written, backed up and deleted with its metadata, in one
-- transaction. NULL content = placeholder (is_complete false).
CREATE TABLE files (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    app_id     INTEGER NOT NULL REFERENCES apps(id),
    type       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    mime_type  TEXT,
    is_public  INTEGER NOT NULL DEFAULT 0,
    raw        TEXT NOT NULL DEFAULT '{}',
    content    BLOB,
    sha256     TEXT,
    file_token TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX files_by_user ON files(user_id, id);

-- Polls. options is a JSON list of option texts (position = index + 1).
-- is_closed is set, in the same transaction as the close event, by the
-- poll closer; it makes the close event happen exactly once.
CREATE TABLE polls (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    app_id       INTEGER NOT NULL REFERENCES apps(id),
    type         TEXT NOT NULL,
    prompt       TEXT NOT NULL,
    options      TEXT NOT NULL,
    max_options  INTEGER NOT NULL DEFAULT 1,
    is_anonymous INTEGER NOT NULL DEFAULT 1,
    is_public    INTEGER NOT NULL DEFAULT 0,
    raw          TEXT NOT NULL DEFAULT '{}',
    poll_token   TEXT NOT NULL,
    closed_at    INTEGER NOT NULL,
    is_closed    INTEGER NOT NULL DEFAULT 0,
    is_deleted   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL
);
CREATE INDEX polls_by_user ON polls(user_id, id);
CREATE INDEX polls_due ON polls(closed_at) WHERE is_closed = 0 AND is_deleted = 0;

-- Current answers (one row per chosen position).
CREATE TABLE poll_responses (
    poll_id  INTEGER NOT NULL REFERENCES polls(id),
    user_id  INTEGER NOT NULL REFERENCES users(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (poll_id, user_id, position)
);
-- Everyone who ever answered: the first answer (and only it) emits a poll
-- event, and these users are the poll event's audience.
CREATE TABLE poll_respondents (
    poll_id    INTEGER NOT NULL REFERENCES polls(id),
    user_id    INTEGER NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (poll_id, user_id)
);
