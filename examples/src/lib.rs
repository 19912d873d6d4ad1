//! Runnable examples of keyrot, kept building by CI. They arrive with the service issue; the
//! crate documentation of `keyrot-core` has a complete rotation against the in-memory fakes.
