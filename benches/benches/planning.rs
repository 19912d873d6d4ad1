//! The planner over 100,000 users in mixed lifecycle states (idle, due, pending, grace, disuse,
//! deletion): how many users per second one core can plan.
#![allow(clippy::expect_used)] // benchmark setup: a failure is a bug in the benchmark

use std::hint::black_box;

use benches::START;
use benches::synthetic::{observations, policy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyrot_core::plan;

const USERS: usize = 100_000;

fn planning(c: &mut Criterion) {
    let policy = policy();
    let obs = observations(USERS, START).expect("valid synthetic names");
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(USERS as u64));
    group.sample_size(20);
    group.bench_function("100k mixed users", |b| {
        // Counting the users who settle keeps every step used.
        b.iter(|| {
            obs.iter()
                .filter(|o| plan(black_box(o), &policy, START).is_final())
                .count()
        });
    });
    group.finish();
}

criterion_group!(benches, planning);
criterion_main!(benches);
