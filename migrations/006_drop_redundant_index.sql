-- Version 6: posts_live_by_user (user_id, is_deleted) served per-user post
-- counts, which user_counts (version 5) now keeps; a user's posts are listed
-- through posts_by_user (user_id, id). Maintaining it cost every new post an
-- index insert and a WAL page.
DROP INDEX IF EXISTS posts_live_by_user;
