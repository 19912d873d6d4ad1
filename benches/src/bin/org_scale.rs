#![allow(clippy::print_stdout)] // a report printer
//! Prints the scale run over many accounts: `org_scale [ACCOUNTS] [USERS] [MAX_PARALLEL]
//! [LATENCY_MS] [CALLS_PER_SECOND]`, by default 200 accounts of 250 users, at most 50 accounts
//! at once, 50 ms per call, 20 calls/s per account.

use std::time::{Duration, Instant};

use benches::org::org_scale_run;
use keyrot_core::fake::RateLimit;

/// An argument that is not a whole number in range.
#[derive(Debug, thiserror::Error)]
#[error("argument {n} ({text:?}) is not a whole number in range")]
struct BadArg {
    n: usize,
    text: String,
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> Result<T, BadArg> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| BadArg { n, text }),
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)] // the binary's one error line
            {
                eprintln!("org_scale: {e}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), BadArg> {
    let accounts: usize = arg(1, 200)?;
    let users: usize = arg(2, 250)?;
    let max_parallel: usize = arg(3, 50)?;
    let latency = Duration::from_millis(arg(4, 50)?);
    let rate = RateLimit::per_second(arg(5, 20)?);
    #[allow(clippy::disallowed_methods)]
    // wall time of the simulation itself; the run never reads it
    let wall = Instant::now();
    let report = org_scale_run(accounts, users, latency, rate, max_parallel);
    println!("{report}");
    println!("real time:         {:.3} s", wall.elapsed().as_secs_f64());
    Ok(())
}
