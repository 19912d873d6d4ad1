#![allow(clippy::print_stdout)] // a report printer
//! Prints the scale run's report: `scale [USERS] [LATENCY_MS] [CALLS_PER_SECOND] [BURST]`, by
//! default 5000 users, 50 ms per call, 20 calls/s, bursts of a second's calls. Also prints the same run timed by the fakes' own
//! `SimClock`, whose sleeps add up, for comparison.

use std::time::{Duration, Instant};

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
