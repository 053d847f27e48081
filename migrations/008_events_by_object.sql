-- Version 8: deleting a post, message, file or poll rewrites the earlier
-- events that carried it (issue 16: deletion is final, replay included).
-- Those events are found by the object they are about (`meta.id`), kept
-- in a column only for the event types a deletion rewrites, so every
-- other event (users, tokens, presence, ...) pays no index insert.
ALTER TABLE events ADD COLUMN object_id INTEGER;
UPDATE events SET object_id = CAST(json_extract(envelope, '$.meta.id') AS INTEGER)
 WHERE type IN ('post', 'bookmark', 'message', 'file', 'poll', 'channel', 'channel_subscription');
CREATE INDEX events_by_object ON events (object_id, type) WHERE object_id IS NOT NULL;
