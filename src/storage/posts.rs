//! Posts, reposts, revisions, bookmarks, follows, mutes, blocks, presence.
