-- Version 4: durable delivery and App.net filters.

-- Filters belong to a user; streams of apps that user authorized may use them.
CREATE TABLE filters (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT,
    match_policy TEXT NOT NULL,
    clauses      TEXT NOT NULL,               -- JSON list, validated by src/filter.rs
    created_at   INTEGER NOT NULL
);
CREATE INDEX filters_by_user ON filters(user_id);

-- The filter a stream applies (deleting the filter detaches it).
ALTER TABLE streams ADD COLUMN filter_id INTEGER REFERENCES filters(id) ON DELETE SET NULL;
-- The last event seq delivered to the stream; replay starts after it.
ALTER TABLE streams ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;
-- Events the stream lost to retention since it last connected.
ALTER TABLE streams ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
-- A connection with ?auto_delete=1 is open: delete the stream when it ends,
-- or at the next start if the server died with it.
ALTER TABLE streams ADD COLUMN auto_delete INTEGER NOT NULL DEFAULT 0;
-- Streams that existed before this version start from now, not from the
-- beginning of the log.
UPDATE streams SET cursor = (SELECT COALESCE(MAX(seq), 0) FROM events);

CREATE INDEX events_by_time ON events(created_at);

-- Indexes for counts computed on every post render (found with the
-- benchmark's ingest scenario: a full scan of posts per render).
CREATE INDEX posts_by_repost ON posts(repost_of) WHERE repost_of IS NOT NULL;
CREATE INDEX posts_live_by_user ON posts(user_id, is_deleted);
