//! keyrot-lambda: the scheduled rotation function and the API function for AWS Lambda.
//!
//! Not written yet: this crate is an empty placeholder in the workspace until the service lands
//! (issue "the service"). It builds no binary, so nothing can be deployed from it by mistake.
