//! Criterion twin of `ledger bench --only append`: 10,000 events appended through the
//! embedded ledger (one call per stream batch) beside raw rusqlite INSERTs of the same rows
//! in one transaction, each into a fresh migrated `ledger.db` (created outside the timing).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ledger_bench::append::{fresh_store, ledger_append, raw_insert, rows};
use ledger_bench::workload::{story, Story};
use ledger_bench::ScratchDir;
use sync_ledger::ledger::SqliteLedger;

const STORIES: usize = 1000;

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stories: Vec<Story> = (0..STORIES).map(story).collect();
    let baseline_rows = rows(&stories);
    let dir = ScratchDir::new().unwrap();
    // One file per kind, recreated for every iteration, so samples do not fill the disk.
    let fresh = |prefix: &str| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.path().join(format!("{prefix}.db{suffix}")));
        }
        fresh_store(dir.path(), &format!("{prefix}.db")).unwrap()
    };
    let mut group = c.benchmark_group("append 10000 events");
    group.sample_size(10);
    group.bench_function("baseline: raw rusqlite INSERT, one transaction", |b| {
        b.iter_batched(
            || fresh("raw"),
            |path| raw_insert(&path, &baseline_rows).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("ledger append, one call per stream batch", |b| {
        b.iter_batched(
            || {
                (
                    SqliteLedger::open(fresh("ledger")).unwrap(),
                    stories.clone(),
                )
            },
            |(ledger, stories)| runtime.block_on(ledger_append(&ledger, stories)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
