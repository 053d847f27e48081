-- Version 2: posts, reposts, revisions, bookmarks, follows, mutes, blocks,
-- presence (issue: posts, the social graph, profiles and presence).

-- Posts and reposts. A repost is a row of its own (its own id and thread)
-- with repost_of set and no text; it shows the original's content. Deleting
-- keeps the row (is_deleted) so ids stay stable and lists can show it.
CREATE TABLE posts (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    app_id     INTEGER NOT NULL REFERENCES apps(id),  -- the client ("source")
    created_at INTEGER NOT NULL,                      -- unix seconds
    thread_id  INTEGER NOT NULL,                      -- root post id (= id for roots and reposts)
    reply_to   INTEGER REFERENCES posts(id),
    repost_of  INTEGER REFERENCES posts(id),
    content    TEXT NOT NULL DEFAULT '{}',            -- JSON {text, html, entities}, entities resolved at write time
    is_nsfw    INTEGER NOT NULL DEFAULT 0,
    raw        TEXT NOT NULL DEFAULT '{}',            -- v1 raw: type -> list, set at creation only
    revision   INTEGER NOT NULL DEFAULT 0,            -- number of revisions made; > 0 means is_revised
    is_deleted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX posts_by_user ON posts(user_id, id);
CREATE INDEX posts_by_thread ON posts(thread_id, id);
CREATE INDEX posts_by_reply ON posts(reply_to) WHERE reply_to IS NOT NULL;
-- One live repost per user and original.
CREATE UNIQUE INDEX reposts_live ON posts(repost_of, user_id) WHERE repost_of IS NOT NULL AND is_deleted = 0;

-- Earlier versions of revised posts: version `revision` (from 0) as it was.
CREATE TABLE post_revisions (
    post_id    INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    revision   INTEGER NOT NULL,
    content    TEXT NOT NULL,
    is_nsfw    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,                      -- when this version was written
    PRIMARY KEY (post_id, revision)
);

-- Who a post mentions (existing users only), for /users/{id}/mentions,
-- the unified stream and notifications.
CREATE TABLE post_mentions (
    post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (post_id, user_id)
);
CREATE INDEX mentions_by_user ON post_mentions(user_id, post_id);

-- Hashtags, normalised as pnut matches them: lower case, '_' removed.
CREATE TABLE post_tags (
    tag     TEXT NOT NULL,
    post_id INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, post_id)
);

-- Bookmarks; id is the pagination_id of a user's bookmark list.
CREATE TABLE bookmarks (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    post_id    INTEGER NOT NULL REFERENCES posts(id) ON DELETE CASCADE,
    note       TEXT,                                  -- private, shown on one's own list
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, post_id)
);
CREATE INDEX bookmarks_by_post ON bookmarks(post_id);

-- The graph. Each id is the pagination_id of the lists built on it.
CREATE TABLE follows (
    id          INTEGER PRIMARY KEY,
    follower_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    followed_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    UNIQUE (follower_id, followed_id)
);
CREATE INDEX follows_by_followed ON follows(followed_id, follower_id);

CREATE TABLE mutes (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    muted_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, muted_id)
);

CREATE TABLE blocks (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    blocked_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, blocked_id)
);
CREATE INDEX blocks_by_blocked ON blocks(blocked_id, user_id);

-- Global presence; one row per user who ever set one. A row whose
-- expires_at has passed (or presence is NULL) means offline.
CREATE TABLE presence (
    user_id      INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    presence     TEXT,                                -- NULL: offline
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL                     -- last time it was set
);
