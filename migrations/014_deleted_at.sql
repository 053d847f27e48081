-- Version 14: when a post was deleted, so a stream polled with since_id can
-- list the posts deleted since (meta.deleted_ids, issue 20). Posts deleted
-- before this version have none and are not listed.
ALTER TABLE posts ADD COLUMN deleted_at INTEGER;
CREATE INDEX posts_by_deleted_at ON posts(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX post_revisions_by_time ON post_revisions(created_at);

-- A hash of each post's text, so refusing a duplicate post (the same text
-- from the same user within --duplicate-window-secs) is one index probe
-- rather than reading and parsing the user's recent posts.
ALTER TABLE posts ADD COLUMN text_hash INTEGER;
CREATE INDEX posts_by_text_hash ON posts(user_id, text_hash) WHERE text_hash IS NOT NULL;
