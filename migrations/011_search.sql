-- Version 11: full-text search (issue 20). One FTS5 index per searchable
-- object, contentless (the text stays in its own table; the index holds
-- only tokens) with deletes, kept by triggers in the same transaction as
-- every write, so a search never finds what a fetch would not: deleted
-- posts and messages leave the index with the write that deletes them.
-- The rowid of each index is the object's id.
CREATE VIRTUAL TABLE posts_fts USING fts5(text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE users_fts USING fts5(username, name, description, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE channels_fts USING fts5(name, description, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE polls_fts USING fts5(prompt, options, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');

-- Posts: originals only (a repost has no text of its own), not deleted.
CREATE TRIGGER posts_fts_ai AFTER INSERT ON posts WHEN new.repost_of IS NULL AND new.is_deleted = 0 BEGIN
    INSERT INTO posts_fts (rowid, text) VALUES (new.id, json_extract(new.content, '$.text'));
END;
CREATE TRIGGER posts_fts_au AFTER UPDATE OF content, is_deleted ON posts WHEN new.repost_of IS NULL BEGIN
    DELETE FROM posts_fts WHERE rowid = old.id;
    INSERT INTO posts_fts (rowid, text) SELECT new.id, json_extract(new.content, '$.text') WHERE new.is_deleted = 0;
END;
CREATE TRIGGER posts_fts_ad AFTER DELETE ON posts BEGIN
    DELETE FROM posts_fts WHERE rowid = old.id;
END;

CREATE TRIGGER users_fts_ai AFTER INSERT ON users BEGIN
    INSERT INTO users_fts (rowid, username, name, description) VALUES (new.id, new.username, new.name, new.description);
END;
CREATE TRIGGER users_fts_au AFTER UPDATE OF username, name, description ON users BEGIN
    DELETE FROM users_fts WHERE rowid = old.id;
    INSERT INTO users_fts (rowid, username, name, description) VALUES (new.id, new.username, new.name, new.description);
END;
CREATE TRIGGER users_fts_ad AFTER DELETE ON users BEGIN
    DELETE FROM users_fts WHERE rowid = old.id;
END;

CREATE TRIGGER messages_fts_ai AFTER INSERT ON messages WHEN new.is_deleted = 0 BEGIN
    INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_au AFTER UPDATE OF text, is_deleted ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
    INSERT INTO messages_fts (rowid, text) SELECT new.id, new.text WHERE new.is_deleted = 0;
END;
CREATE TRIGGER messages_fts_ad AFTER DELETE ON messages BEGIN
    DELETE FROM messages_fts WHERE rowid = old.id;
END;

-- Channels: the chat room's name and description (io.pnut.core.chat-settings).
CREATE TRIGGER channels_fts_ai AFTER INSERT ON channels BEGIN
    INSERT INTO channels_fts (rowid, name, description) VALUES (new.id,
        json_extract(new.raw, '$."io.pnut.core.chat-settings"[0].name'),
        json_extract(new.raw, '$."io.pnut.core.chat-settings"[0].description'));
END;
CREATE TRIGGER channels_fts_au AFTER UPDATE OF raw ON channels BEGIN
    DELETE FROM channels_fts WHERE rowid = old.id;
    INSERT INTO channels_fts (rowid, name, description) VALUES (new.id,
        json_extract(new.raw, '$."io.pnut.core.chat-settings"[0].name'),
        json_extract(new.raw, '$."io.pnut.core.chat-settings"[0].description'));
END;
CREATE TRIGGER channels_fts_ad AFTER DELETE ON channels BEGIN
    DELETE FROM channels_fts WHERE rowid = old.id;
END;

CREATE TRIGGER polls_fts_ai AFTER INSERT ON polls WHEN new.is_deleted = 0 BEGIN
    INSERT INTO polls_fts (rowid, prompt, options) VALUES (new.id, new.prompt, new.options);
END;
CREATE TRIGGER polls_fts_au AFTER UPDATE OF prompt, options, is_deleted ON polls BEGIN
    DELETE FROM polls_fts WHERE rowid = old.id;
    INSERT INTO polls_fts (rowid, prompt, options) SELECT new.id, new.prompt, new.options WHERE new.is_deleted = 0;
END;
CREATE TRIGGER polls_fts_ad AFTER DELETE ON polls BEGIN
    DELETE FROM polls_fts WHERE rowid = old.id;
END;

-- What is already there.
INSERT INTO posts_fts (rowid, text)
    SELECT id, json_extract(content, '$.text') FROM posts WHERE repost_of IS NULL AND is_deleted = 0;
INSERT INTO users_fts (rowid, username, name, description) SELECT id, username, name, description FROM users;
INSERT INTO messages_fts (rowid, text) SELECT id, text FROM messages WHERE is_deleted = 0;
INSERT INTO channels_fts (rowid, name, description)
    SELECT id, json_extract(raw, '$."io.pnut.core.chat-settings"[0].name'),
           json_extract(raw, '$."io.pnut.core.chat-settings"[0].description') FROM channels;
INSERT INTO polls_fts (rowid, prompt, options) SELECT id, prompt, options FROM polls WHERE is_deleted = 0;
