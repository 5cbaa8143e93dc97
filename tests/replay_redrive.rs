//! `ledger redrive --correlation <id>` end to end: an account sync fails while Billing is
//! down (the worker gives up and records `SyncFailed`); once Billing is back, redrive re-runs
//! that decision and the Billing account exists — and replay never calls out meanwhile.

use std::process::Output;
use sync_ledger::sandbox::{Faults, Sandbox, SandboxConfig, System};

const ACCOUNT: &str = r#"{"stream_id":"crm-account-001Dn00000RdrvIAH","event_type":"CrmAccountUpserted","source":"crm","source_event_id":"AccountChangeEvent:000000000000055001","correlation_id":"0193a0b4-1c00-7000-8000-000000005501","occurred_at":"2026-11-26T10:00:00Z","payload":{"account_id":"001Dn00000RdrvIAH","name":"Redrive Ltd","currency":"USD"}}"#;
const CORRELATION: &str = "0193a0b4-1c00-7000-8000-000000005501";

async fn ledger(dir: &tempfile::TempDir, sandbox: &Sandbox, args: &[&str]) -> Output {
    let crm = sandbox.config().credentials(System::Crm);
    let billing = sandbox.config().credentials(System::Billing);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env(
            "LEDGER_STORE",
            format!("sqlite://{}", dir.path().join("ledger.db").display()),
        )
        .env("CRM_BASE_URL", sandbox.url().as_str())
        .env("BILLING_BASE_URL", sandbox.url().as_str())
        .env("CRM_CLIENT_ID", &crm.client_id)
        .env("CRM_CLIENT_SECRET", crm.client_secret.expose_secret())
        .env("BILLING_CLIENT_ID", &billing.client_id)
        .env(
            "BILLING_CLIENT_SECRET",
            billing.client_secret.expose_secret(),
        )
        .env_remove("RUST_LOG")
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_re_runs_a_failed_sync_once_the_system_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let file = dir.path().join("day.jsonl");
    std::fs::write(&file, format!("{ACCOUNT}\n")).unwrap();
    assert!(ledger(&dir, &sandbox, &["migrate"]).await.status.success());
    assert!(ledger(&dir, &sandbox, &["ingest", file.to_str().unwrap()])
        .await
        .status
        .success());

    sandbox.set_faults(
        System::Billing,
        Faults {
            fail_next: 10_000,
            ..Faults::default()
        },
    );
    let worker = ledger(
        &dir,
        &sandbox,
        &[
            "worker",
            "--projection",
            "account",
            "--until-idle",
            "--max-retries",
            "3",
            "--retry-backoff-ms",
            "1",
            "--batch-window-ms",
            "0",
        ],
    )
    .await;
    let audit = stdout(&ledger(&dir, &sandbox, &["audit", CORRELATION]).await);
    assert!(
        audit.contains("SyncFailed"),
        "worker: {}\n{}\naudit:\n{audit}",
        stdout(&worker),
        String::from_utf8_lossy(&worker.stderr)
    );
    assert!(sandbox.billing_accounts().is_empty());

    sandbox.set_faults(System::Billing, Faults::default());
    let calls_before = sandbox.calls().total;
    let replayed = ledger(&dir, &sandbox, &["replay"]).await;
    assert!(replayed.status.success());
    assert_eq!(
        sandbox.calls().total,
        calls_before,
        "replay must not call out"
    );

    let run = ledger(&dir, &sandbox, &["redrive", "--correlation", CORRELATION]).await;
    let out = stdout(&run);
    assert!(
        run.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("CrmAccountUpserted crm-account-001Dn00000RdrvIAH v1 [account-sync]: 1 call(s), recorded AccountSynced"), "{out}");
    let accounts = sandbox.billing_accounts();
    assert_eq!(accounts.len(), 1, "{accounts:?}");

    // A second redrive repeats the call under the same idempotency key: no second account.
    let again = ledger(&dir, &sandbox, &["redrive", "--correlation", CORRELATION]).await;
    assert!(again.status.success());
    assert_eq!(sandbox.billing_accounts().len(), 1);
}
