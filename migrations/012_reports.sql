-- Version 12: reports of posts and messages (issue 20), for the operator
-- (`spout admin reports`). One per reporter and object: reporting again
-- replaces the reason, so a user cannot grow the table on one object.
CREATE TABLE reports (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('post', 'message')),
    object_id   INTEGER NOT NULL,
    reporter_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (kind, object_id, reporter_id)
);
CREATE INDEX reports_by_object ON reports(kind, object_id);
