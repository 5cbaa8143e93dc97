//! `ledger bench` as a user runs it: the real binary, `--quick`, checked for every ratio it
//! must print (no timing is asserted: performance numbers go to BENCHMARKS.md, not to tests).

use std::process::{Command, Output};

fn ledger(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line of `text` that starts (after indentation) with `label`.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in:\n{text}"))
}

#[test]
fn quick_bench_prints_every_ratio_with_its_target() {
    let bins = std::path::Path::new(env!("CARGO_BIN_EXE_ledger"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = ledger(&[
        "bench",
        "--quick",
        "--lambda-bin-dir",
        bins.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("SKIPPED"), "nothing may be skipped:\n{text}");
    for (label, target) in [
        (
            "decode + apply, account projection",
            Some("target ratio <= 2.0"),
        ),
        (
            "decode + apply, correlation projection",
            Some("target ratio <= 2.0"),
        ),
        ("decode only", None),
        ("ledger append throughput", Some("target ratio >= 0.5")),
        ("per-event time, 50000 events", Some("target ratio <= 1.5")),
        ("write units per appended event", None),
        ("read units per replayed event, whole log", None),
        ("read units per replayed event, last 10% of the log", None),
        ("CRM read calls", Some("target ratio <= 1.05")),
        ("Billing read calls", Some("target ratio <= 1.05")),
        ("peak RSS growth per account", None),
    ] {
        let l = line(&text, label);
        assert!(l.contains(" ratio "), "{label}: no ratio in {l:?}");
        if let Some(target) = target {
            assert!(l.contains(target), "{label}: no {target:?} in {l:?}");
            assert!(l.ends_with(": met") || l.ends_with(": MISSED"), "{l:?}");
        }
    }
    assert!(line(&text, "ledger append throughput").contains("events/s"));
    assert!(line(&text, "wall time, 50000 events").contains(" s "));
    assert!(line(&text, "peak RSS during replay").contains("MiB"));
    for binary in ["ingest", "projector", "token_rotator", "audit_api"] {
        line(&text, &format!("{binary} binary size"));
    }
    // Cold start and peak RSS through the Runtime API emulator, for the functions that
    // initialise on the embedded store (the projector after a full 1,000-record batch).
    for binary in ["projector", "audit_api"] {
        let init = line(
            &text,
            &format!("{binary} cold start (spawn -> first /next)"),
        );
        assert!(
            init.contains(" ms ") && init.contains("target <= 20.0 ms"),
            "{init:?}"
        );
        let rss = line(&text, &format!("{binary} peak RSS"));
        assert!(
            rss.contains(" MiB ") && rss.contains("target <= 40.0 MiB"),
            "{rss:?}"
        );
    }
    assert!(line(&text, "projector peak RSS").contains("1000-record DynamoDB Streams batch"));
    let crm_calls = line(
        &text,
        "CRM API calls per 1,000 Billing-originated account changes",
    );
    assert!(
        crm_calls.contains("vs one upsert per account") && crm_calls.contains("target <= 10.0"),
        "{crm_calls:?}"
    );
    for quantile in ["p50", "p99"] {
        let l = line(
            &text,
            &format!("append -> Billing account exists, {quantile}"),
        );
        assert!(l.contains(" ms"), "{l:?}");
    }
}

#[test]
fn write_fills_only_the_generated_section_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BENCHMARKS.md");
    std::fs::write(&path, "# Benchmarks\n\n## Ingest\n\nby hand\n").unwrap();
    for _ in 0..2 {
        let out = ledger(&["bench", "--only", "cost", "--write", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(
        written.starts_with("# Benchmarks\n\n## Ingest\n\nby hand\n"),
        "{written}"
    );
    assert_eq!(
        written.matches("generated section begins").count(),
        1,
        "{written}"
    );
    assert!(
        written.contains("| cost | write units per appended event |"),
        "{written}"
    );
    assert!(written.contains("- Machine: "), "{written}");
    assert!(
        written.contains("- Command: `ledger bench --only cost --write"),
        "{written}"
    );
}

#[test]
fn an_unknown_measurement_is_refused_by_name() {
    let out = ledger(&["bench", "--only", "warp_drive"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--only") && err.contains("warp_drive"),
        "{err}"
    );
}
