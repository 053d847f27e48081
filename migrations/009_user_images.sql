-- Version 9: avatars and covers (issue 19). The bytes live in their own
-- table; the user row keeps each image's size ("WxH", NULL for the
-- default), so a user object is rendered without reading the image.
CREATE TABLE user_images (
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    which      TEXT NOT NULL CHECK (which IN ('avatar', 'cover')),
    mime       TEXT NOT NULL,
    content    BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, which)
) WITHOUT ROWID;
ALTER TABLE users ADD COLUMN avatar_size TEXT;
ALTER TABLE users ADD COLUMN cover_size TEXT;
