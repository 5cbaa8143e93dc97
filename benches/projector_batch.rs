//! Criterion twin of `ledger bench --only projector_batch`: a 1,000-record DynamoDB Streams
//! event decoded and applied to one projection in memory, beside a plain `serde_json` parse
//! of the same bytes (the baseline the ratio in BENCHMARKS.md is taken against).

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use ledger_bench::projector_batch::{decode_and_apply, stream_event_json, RECORDS};
use ledger_bench::workload::recorded_events;
use projections::account_sync::AccountSync;
use projections::correlation_view::CorrelationView;
use std::hint::black_box;

fn batch(c: &mut Criterion) {
    let text = stream_event_json(&recorded_events(0, RECORDS, Utc::now()));
    let mut group = c.benchmark_group("projector batch of 1000 records");
    group.sample_size(20);
    group.bench_function("baseline: serde_json::Value parse", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&text)).unwrap())
    });
    group.bench_function("decode + apply, account projection", |b| {
        b.iter(|| decode_and_apply::<AccountSync>(black_box(&text)))
    });
    group.bench_function("decode + apply, correlation projection", |b| {
        b.iter(|| decode_and_apply::<CorrelationView>(black_box(&text)))
    });
    group.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
