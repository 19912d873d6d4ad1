//! keyrot-aws: keyrot's ports implemented with the AWS SDK (IAM, Secrets Manager, STS, SES).
//!
//! Not written yet: this crate is an empty placeholder in the workspace until the AWS adapters
//! land (issue "keyrot-aws"). Nothing here works; use `keyrot_core::fake` meanwhile.
