//! Real time to simulate one rotation run over many users (see `benches::scale_run`; the
//! virtual-time figures come from `cargo run -p benches --release --bin scale`).

use std::hint::black_box;
use std::time::Duration;

use benches::scale_run;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keyrot_core::fake::RateLimit;

const USERS: usize = 5_000;

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    group.throughput(Throughput::Elements(USERS as u64));
    group.sample_size(10);
    group.bench_function("5000 users, 50 ms, 20 calls/s, burst 20 (simulated)", |b| {
        b.iter(|| {
            scale_run(
                black_box(USERS),
                Duration::from_millis(50),
                RateLimit::per_second(20).with_burst(20),
            )
        });
    });
    group.finish();
}

criterion_group!(benches, scale);
criterion_main!(benches);
