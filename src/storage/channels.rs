//! Channels, ACLs, subscriptions, messages, markers, files, polls.
