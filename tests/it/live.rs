//! Live delivery tests (see issue 5).
