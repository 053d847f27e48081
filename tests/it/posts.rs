//! Posts, graph and presence tests (see issue 6).
