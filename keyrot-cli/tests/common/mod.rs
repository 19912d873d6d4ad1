//! What the tests that run the binary share.

use tokio::process::Command;

/// The `keyrot` binary on the embedded backend, logging at `log`, with nothing from the
/// developer's environment pointing it at AWS; killed when dropped.
pub(crate) fn keyrot(log: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyrot"));
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "KEYROT_CONFIG",
        "KEYROT_BACKEND",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("KEYROT_BACKEND", "embedded")
        .env("KEYROT_LOG", log)
        .kill_on_drop(true);
    cmd
}
