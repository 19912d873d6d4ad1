#![allow(clippy::print_stdout)] // a report printer
//! Prints the scale run's report: `scale [USERS] [LATENCY_MS] [CALLS_PER_SECOND]`, by default
//! 5000 users, 50 ms per call, 20 calls/s. Also prints the same run timed by the fakes' own
//! `SimClock`, whose sleeps add up, for comparison.

use std::time::{Duration, Instant};

use benches::{scale_run, scale_run_on_sim_clock};
use keyrot_core::fake::RateLimit;

fn arg(n: usize, default: u64) -> Result<u64, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| format!("argument {n} ({s:?}): {e}")),
    }
}

fn main() -> Result<(), String> {
    let users = usize::try_from(arg(1, 5_000)?).map_err(|e| e.to_string())?;
    let latency = Duration::from_millis(arg(2, 50)?);
    let rate = RateLimit::per_second(u32::try_from(arg(3, 20)?).map_err(|e| e.to_string())?);

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
