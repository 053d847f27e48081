//! Stream management tests (see issue 4).
