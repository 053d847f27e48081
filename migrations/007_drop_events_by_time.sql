-- Version 7: events_by_time (created_at) served one query, retention's
-- "newest event older than the cut", once per pass. Events are appended in
-- time order, so that query now bisects the log by seq instead, and every
-- event no longer pays an index insert and a WAL page.
DROP INDEX IF EXISTS events_by_time;
