//! keyrot-cli: the `keyrot` command.
//!
//! Not written yet: this crate is an empty placeholder in the workspace until the service lands
//! (issue "the service"). It builds no binary, so there is no half-working command to run.
