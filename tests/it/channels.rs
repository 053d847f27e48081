//! Channels, messages, files and polls tests (see issue 7).
