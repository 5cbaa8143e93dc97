//! Ingest hot path without I/O: mapping raw source records to envelopes, and verifying a
//! callout signature. Results are summarised in BENCHMARKS.md.

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use sync_ledger::ingest::map_body;
use sync_ledger::ingest::signature::{verify, CalloutSecret};

fn fixture(path: &str) -> String {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn mapping(c: &mut Criterion) {
    let now = Utc::now();
    for (name, path) in [
        ("map OrderEvent__e", "salesforce/order_event_activated.json"),
        (
            "map AccountChangeEvent",
            "salesforce/account_change_create.json",
        ),
        (
            "map Zuora SubscriptionCreated",
            "zuora/subscription_created.json",
        ),
        (
            "reject missing field",
            "bad/order_event_missing_account.json",
        ),
    ] {
        let body = fixture(path);
        c.bench_function(name, |b| b.iter(|| map_body(black_box(&body), now)));
    }
}

fn signature(c: &mut Criterion) {
    let secret = CalloutSecret::new("bench-secret").unwrap();
    let body = fixture("zuora/subscription_created.json");
    let now = Utc::now().timestamp();
    let header = secret.sign(body.as_bytes(), now);
    c.bench_function("verify callout signature", |b| {
        b.iter(|| verify(&secret, Some(black_box(&header)), body.as_bytes(), now))
    });
}

criterion_group!(benches, mapping, signature);
criterion_main!(benches);
