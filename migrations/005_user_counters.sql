-- Version 5: per-user counters kept by triggers in the same transaction as
-- the change, so rendering a user reads one row instead of counting their
-- posts and follows every time (that COUNT was 14% of the server's CPU in the
-- benchmark's ingest scenario, and grew with each user's posts).
CREATE TABLE user_counts (
    user_id   INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    posts     INTEGER NOT NULL DEFAULT 0,   -- live posts and reposts
    followers INTEGER NOT NULL DEFAULT 0,
    following INTEGER NOT NULL DEFAULT 0,
    bookmarks INTEGER NOT NULL DEFAULT 0
);
INSERT INTO user_counts (user_id, posts, followers, following, bookmarks)
SELECT u.id,
       (SELECT COUNT(*) FROM posts p WHERE p.user_id = u.id AND p.is_deleted = 0),
       (SELECT COUNT(*) FROM follows f WHERE f.followed_id = u.id),
       (SELECT COUNT(*) FROM follows f WHERE f.follower_id = u.id),
       (SELECT COUNT(*) FROM bookmarks b WHERE b.user_id = u.id)
FROM users u;

CREATE TRIGGER user_counts_for_new_user AFTER INSERT ON users BEGIN
    INSERT INTO user_counts (user_id) VALUES (NEW.id);
END;

CREATE TRIGGER user_counts_post_insert AFTER INSERT ON posts WHEN NEW.is_deleted = 0 BEGIN
    UPDATE user_counts SET posts = posts + 1 WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER user_counts_post_flag AFTER UPDATE OF is_deleted ON posts
WHEN OLD.is_deleted != NEW.is_deleted BEGIN
    UPDATE user_counts SET posts = posts + (CASE WHEN NEW.is_deleted = 0 THEN 1 ELSE -1 END)
    WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER user_counts_post_delete AFTER DELETE ON posts WHEN OLD.is_deleted = 0 BEGIN
    UPDATE user_counts SET posts = posts - 1 WHERE user_id = OLD.user_id;
END;

CREATE TRIGGER user_counts_follow_insert AFTER INSERT ON follows BEGIN
    UPDATE user_counts SET followers = followers + 1 WHERE user_id = NEW.followed_id;
    UPDATE user_counts SET following = following + 1 WHERE user_id = NEW.follower_id;
END;
CREATE TRIGGER user_counts_follow_delete AFTER DELETE ON follows BEGIN
    UPDATE user_counts SET followers = followers - 1 WHERE user_id = OLD.followed_id;
    UPDATE user_counts SET following = following - 1 WHERE user_id = OLD.follower_id;
END;

CREATE TRIGGER user_counts_bookmark_insert AFTER INSERT ON bookmarks BEGIN
    UPDATE user_counts SET bookmarks = bookmarks + 1 WHERE user_id = NEW.user_id;
END;
CREATE TRIGGER user_counts_bookmark_delete AFTER DELETE ON bookmarks BEGIN
    UPDATE user_counts SET bookmarks = bookmarks - 1 WHERE user_id = OLD.user_id;
END;
