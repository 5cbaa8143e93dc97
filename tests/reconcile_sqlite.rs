//! Reconciliation and backfill on the embedded store, through the `ledger` binary against
//! the sandbox (scenarios in `tests/common/reconcile_world.rs`), at 2,000 accounts a side
//! with 50 differences of each kind (the 100,000 of the bench are `ledger bench`'s).

mod common;

use common::reconcile_world;
use common::sync_world;

use reconcile_world::Sizes;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_reported_exactly_and_repaired_through_the_projectors() {
    let w = sync_world::sqlite_world().await;
    let sizes = Sizes {
        linked: 2_000,
        each: 50,
    };
    reconcile_world::drift_is_reported_exactly_and_repaired_through_the_projectors(&w, sizes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_links_or_creates_everything_once_resumably() {
    let w = sync_world::sqlite_world().await;
    let sizes = Sizes {
        linked: 1_000,
        each: 50,
    };
    reconcile_world::backfill_links_or_creates_everything_once_resumably(&w, sizes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_options_are_refused_naming_the_option() {
    let w = sync_world::sqlite_world().await;
    for (args, says) in [
        (vec!["--prefer", "oldest"], "--prefer"),
        (vec!["--entity", "invoice"], "--entity"),
        (vec!["--max-api-calls", "0"], "--max-api-calls"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["--store", &w.store().url, "reconcile"])
            .args(&args)
            .envs(w.store().env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
