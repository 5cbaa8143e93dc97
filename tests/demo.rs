//! `ledger demo` as a new user runs it: exits 0 and tells the story — tokens from the real
//! rotator, a day emitted by the sandbox and delivered twice with a poison message and an
//! order ahead of its account, projectors syncing through a 429 burst and a token rotation
//! with no sync failure, the correlation view, the deferred order's audit chain, and a wipe +
//! replay with identical digests and no external call. No secret ever reaches the output.

use std::process::Command;

fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

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
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "exit {:?}\n{out}\n{err}",
        output.status
    );
    assert!(
        out.lines().count() <= 60,
        "too long for a first read:\n{out}"
    );

    // The real rotator ran twice, and only fingerprints were recorded.
    for service in ["crm", "billing"] {
        for version in [1, 2] {
            let needle = format!("{service} token -> /apiTokens/{service} v{version} (");
            assert_eq!(lines_with(&out, &needle).len(), 1, "{needle}\n{out}");
        }
    }
    // Neither the OAuth client secrets nor any issued token (`<system>-<32 hex>`) shows.
    let both = format!("{out}{err}");
    assert!(!both.contains("sandbox-crm-secret") && !both.contains("sandbox-billing-secret"));
    for word in both.split(|c: char| !c.is_ascii_alphanumeric() && c != '-') {
        let token_like = ["crm-", "billing-"].iter().any(|p| {
            word.strip_prefix(p)
                .is_some_and(|rest| rest.len() == 32 && rest.chars().all(|c| c.is_ascii_hexdigit()))
        });
        assert!(!token_like, "a token leaked: {word}");
    }

    // Ingest: duplicates recorded once, the poison message rejected with field and reason.
    assert!(
        out.contains("6 events recorded; 3 duplicate deliveries recorded nothing"),
        "{out}"
    );
    assert!(
        out.contains("poison message rejected and kept: line 10: payload.account_id: is required but missing"),
        "{out}"
    );

    // The order that overtook its account: deferred first, synced once the link arrived.
    let globex = lines_with(&out, "(Globex)  -> ");
    assert_eq!(globex.len(), 2, "{out}");
    assert!(
        globex[0].contains("-> SyncDeferred: waits for account-link:crm:"),
        "{}",
        globex[0]
    );
    assert!(
        globex[1].contains("-> SyncDeferred, then OrderSynced: subscription A-S"),
        "{}",
        globex[1]
    );
    assert!(
        out.contains("(Acme)    -> subscription A-S00000001"),
        "{out}"
    );

    // Every sync succeeded, through the 429 burst and after the token rotation.
    assert!(
        out.contains("SyncFailed: 0; projectors: 0 deliveries retried, 0 given up"),
        "{out}"
    );
    assert!(out.contains(", 3 answered 429, "), "{out}");
    let sandbox = lines_with(&out, "answered 401 until the rotated token was read");
    assert_eq!(sandbox.len(), 1, "{out}");
    assert!(!sandbox[0].contains(" 0 answered 401"), "{}", sandbox[0]);
    assert!(
        out.contains("CRM pricebook SKU-PLATFORM: USD 549.00; "),
        "{out}"
    );

    // The correlation view links both accounts and both orders.
    assert_eq!(
        lines_with(&out, "   account         crm 001").len(),
        2,
        "{out}"
    );
    assert_eq!(
        lines_with(&out, "   order           crm 801").len(),
        2,
        "{out}"
    );

    // The audit chain of the deferred order shows the wait and the create it led to.
    assert!(
        out.contains("7. Audit of the order that waited for its account (`ledger audit "),
        "{out}"
    );
    assert!(out.contains("├─ SyncDeferred"), "{out}");
    assert!(
        out.contains("call billing-create-subscription: crm->billing created"),
        "{out}"
    );

    // Drift made behind the sync's back is found by a reconciliation and repaired.
    assert!(
        out.contains("field_drift: crm ") && out.contains("[name differ, billing newer]"),
        "{out}"
    );
    assert!(
        out.contains("CRM now \"Acme Corp (EU)\"; a second run: 0 drift, 0 write calls"),
        "{out}"
    );
    // Recovery: every projection rebuilt identically, with no external call.
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
