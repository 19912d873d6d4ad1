//! The command on a terminal and off it: progress shows on a pseudo-terminal and nowhere
//! else; completions, the man page, `NO_COLOR` and the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::process::{Command, Output, Stdio};

use nix::pty::{Winsize, openpty};

const KEYROT: &str = env!("CARGO_BIN_EXE_keyrot");

/// `keyrot` on the embedded demo, without a config file or AWS credentials in sight.
fn keyrot(args: &[&str]) -> Command {
    let mut cmd = Command::new(KEYROT);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYROT_BACKEND", "embedded")
        .env("KEYROT_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with stdout and stderr on one pseudo-terminal; what the terminal showed, and
/// whether the command succeeded.
fn on_pty(mut cmd: Command) -> (String, bool) {
    let size = Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).unwrap();
    cmd.env("TERM", "xterm");
    cmd.stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    // The only copies of the terminal's other end are the child's now: reading ends (EIO on
    // Linux) once it exits.
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut shown = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        shown.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().unwrap();
    (
        String::from_utf8_lossy(&shown).into_owned(),
        status.success(),
    )
}

fn piped(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.output().unwrap()
}

/// The demo has three managed users: the bar ends at 3 of 3, none failed.
const DONE: &str = "3/3 users done, 0 failed";

/// What only the progress bar writes.
const BAR: &str = "users done";

#[test]
fn rotate_and_status_show_progress_on_a_terminal() {
    for args in [&["rotate"][..], &["status"]] {
        let (shown, ok) = on_pty(keyrot(args));
        assert!(ok, "{args:?}: {shown}");
        assert!(shown.contains(DONE), "{args:?} on a terminal: {shown}");
        assert!(shown.contains("ci-deployer"), "{args:?}: {shown}");
    }
}

#[test]
fn piped_output_and_json_show_no_progress() {
    for args in [&["rotate"][..], &["status"], &["status", "--json"]] {
        let out = piped(keyrot(args));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(stdout.contains("ci-deployer"), "{args:?}: {stdout}");
        for text in [&stdout, &stderr] {
            assert!(!text.contains(BAR), "{args:?} piped: {text}");
        }
    }
    // On a terminal too, `--json` gets nothing but its JSON.
    let (shown, ok) = on_pty(keyrot(&["status", "--json"]));
    assert!(ok, "{shown}");
    assert!(!shown.contains(BAR), "{shown}");
    let json = shown.trim_start_matches(|c| c != '[');
    let _: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
}

/// Whether `text` holds an SGR (colour or style) escape sequence.
fn has_colour(text: &str) -> bool {
    text.split("\x1b[").skip(1).any(|rest| {
        let end = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
        end.starts_with('m')
    })
}

#[test]
fn no_color_turns_off_every_colour_on_a_terminal() {
    // Coloured by default on a terminal: help headings and log levels.
    let (help, _) = on_pty(keyrot(&["--help"]));
    assert!(has_colour(&help), "{help:?}");
    let mut cmd = keyrot(&["rotate"]);
    cmd.env("KEYROT_LOG", "info");
    let (logs, _) = on_pty(cmd);
    assert!(has_colour(&logs), "{logs:?}");
    for args in [&["--help"][..], &["status"], &["rotate"]] {
        let mut cmd = keyrot(args);
        cmd.env("KEYROT_LOG", "info").env("NO_COLOR", "1");
        let (shown, ok) = on_pty(cmd);
        assert!(ok, "{args:?}: {shown}");
        assert!(!has_colour(&shown), "{args:?} with NO_COLOR: {shown:?}");
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _keyrot"),
        ("zsh", "#compdef keyrot"),
        ("fish", "complete -c keyrot"),
    ] {
        let out = piped(keyrot(&["completions", shell]));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(script.contains(marker), "{shell}: {script}");
        for sub in ["report", "credential-process", "completions"] {
            assert!(script.contains(sub), "{shell} misses {sub}");
        }
    }
    let out = piped(keyrot(&["completions", "tcsh"]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

/// The committed man page is the one the clap definitions make: after a change to the
/// command line, run `keyrot man > keyrot-cli/keyrot.1`.
#[test]
fn the_committed_man_page_is_current() {
    let out = piped(keyrot(&["man"]));
    assert!(out.status.success());
    let committed = include_str!("../keyrot.1");
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "keyrot-cli/keyrot.1 is stale: run `cargo run -p keyrot-cli -- man > keyrot-cli/keyrot.1`"
    );
    assert!(committed.contains("Exit status:"));
}

#[test]
fn the_exit_statuses_are_documented_and_kept() {
    let help = String::from_utf8(piped(keyrot(&["--help"])).stdout).unwrap();
    for line in [
        "0  success",
        "1  the work failed",
        "2  the command could not do its work",
    ] {
        assert!(help.contains(line), "{help}");
    }
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains("| 2 | the command could not do its work"),
        "README"
    );
    // 2: usage and configuration; 1: the work itself.
    assert_eq!(piped(keyrot(&["rotate", "--bogus"])).status.code(), Some(2));
    let mut bad = keyrot(&["status"]);
    bad.env("KEYROT_ROTATION_PERIOD", "soon");
    assert_eq!(piped(bad).status.code(), Some(2));
    let refused = piped(keyrot(&["rotate", "--user", "not-a-demo-user"]));
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(piped(keyrot(&["status"])).status.code(), Some(0));
}
