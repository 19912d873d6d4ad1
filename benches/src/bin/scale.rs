#![allow(clippy::print_stdout)] // a report printer
//! Prints the scale run's report: `scale [USERS] [LATENCY_MS] [CALLS_PER_SECOND] [BURST]`, by
//! default 5000 users, 50 ms per call, 20 calls/s, bursts of a second's calls. Also prints the same run timed by the fakes' own
//! `SimClock`, whose sleeps add up, for comparison.
//!
//! `scale org [ACCOUNTS] [USERS] [MAX_PARALLEL] [LATENCY_MS] [CALLS_PER_SECOND]` is the run over
//! many accounts instead: by default 200 accounts of 250 users, at most 50 accounts at once,
//! 50 ms per call, 20 calls/s per account.

use std::time::{Duration, Instant};

use benches::org::org_scale_run;
use benches::{scale_run, scale_run_on_sim_clock};
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
                eprintln!("scale: {e}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), BadArg> {
    if std::env::args().nth(1).as_deref() == Some("org") {
        return run_org();
    }
    let users: usize = arg(1, 5_000)?;
    let latency = Duration::from_millis(arg(2, 50)?);
    let per_second = arg(3, 20)?;
    // A second's worth of calls may come at once, as AWS's token buckets allow bursts.
    let rate = RateLimit::per_second(per_second).with_burst(arg(4, per_second)?);

    #[allow(clippy::disallowed_methods)]
    // wall time of the simulation itself; the run never reads it
    let wall = Instant::now();
    let report = scale_run(users, latency, rate);
    let elapsed = wall.elapsed();
    println!("{report}");
    println!("real time:         {:.3} s", elapsed.as_secs_f64());
    println!();

    #[allow(clippy::disallowed_methods)] // as above
    let wall = Instant::now();
    let summed = scale_run_on_sim_clock(users, latency, rate);
    let elapsed = wall.elapsed();
    println!("{summed}");
    println!("real time:         {:.3} s", elapsed.as_secs_f64());
    Ok(())
}

fn run_org() -> Result<(), BadArg> {
    let accounts: usize = arg(2, 200)?;
    let users: usize = arg(3, 250)?;
    let max_parallel: usize = arg(4, 50)?;
    let latency = Duration::from_millis(arg(5, 50)?);
    let per_second = arg(6, 20)?;
    let rate = RateLimit::per_second(per_second).with_burst(per_second);
    #[allow(clippy::disallowed_methods)] // as above
    let wall = Instant::now();
    let report = org_scale_run(accounts, users, latency, rate, max_parallel);
    println!("{report}");
    println!("real time:         {:.3} s", wall.elapsed().as_secs_f64());
    Ok(())
}
