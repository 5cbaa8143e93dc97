//! `ledger demo` as a new user runs it: exits 0 and tells the story — ingest with duplicates
//! and a kept poison message, projectors syncing through a 429 burst and expired tokens, the
//! correlation view, one audit chain, and a wipe + replay with identical digests and no calls.

use std::process::Command;

#[test]
fn demo_tells_the_whole_story_and_exits_zero() {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .arg("demo")
        .env_remove("RUST_LOG")
        // The demo must never touch the configured store.
        .env("LEDGER_STORE", "dynamodb://must-not-be-used")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\n{out}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        out.contains("13 events recorded; 17 duplicate deliveries recorded nothing"),
        "{out}"
    );
    assert!(
        out.contains("poison message rejected and kept: line 17: payload.account_id"),
        "{out}"
    );
    assert!(out.contains(", 0 given up; "), "{out}");
    assert!(
        out.contains("account        crm 001Dn00000AcmeIAH    <-> billing "),
        "{out}"
    );
    assert!(
        out.contains("4. Audit of one inbound event (`ledger audit "),
        "{out}"
    );
    assert!(out.contains("├─ AccountSynced"), "{out}");
    assert!(out.contains("call billing-create-account"), "{out}");
    for projection in ["account-sync", "order-sync", "product-sync", "correlation"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(projection) && l.contains("replayed"))
            .unwrap_or_else(|| panic!("no replay line for {projection}:\n{out}"));
        assert!(line.ends_with("= before"), "{line}");
    }
    assert!(out.contains("external calls during replay: 0"), "{out}");
    assert!(out.contains("\nrebuilt views identical: digest "), "{out}");
}
