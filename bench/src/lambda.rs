//! Lambda footprint: the size of each Lambda binary found in `--lambda-bin-dir` (stripped,
//! as deployed), and its cold start (spawn -> first `/invocation/next`) and peak RSS run
//! through the Runtime API emulator on the embedded store. It builds nothing; it says so when
//! a binary is missing, carries a symbol table, or needs AWS to initialise.

use super::projector_batch::{stream_event_json, RECORDS};
use super::workload::recorded_events;
use super::{Bound, Measurement, Outcome, ScratchDir, Target};
use chrono::Utc;
use sandbox::runtime_api::LambdaProcess;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_ledger::ledger::sqlite::migrate;

pub const NAME: &str = "lambda";
pub const TITLE: &str = "Lambda: binary size, cold start and peak RSS";

/// Targets per function: cold start (spawn -> first `/next`) and peak resident set.
const MAX_INIT_MS: f64 = 20.0;
const MAX_RSS_MIB: f64 = 40.0;

/// How long to wait for a function to reach its first `/next` before calling it stuck.
const INIT_WAIT: Duration = Duration::from_secs(30);

/// The binaries `template.yaml` deploys as functions.
pub const LAMBDA_BINARIES: &[&str] = &["ingest", "projector", "token_rotator", "audit_api"];

/// Deployment package limit we hold ourselves to per binary.
const MAX_BYTES: f64 = 10.0 * 1024.0 * 1024.0;

/// Whether a 64-bit little-endian ELF file still has a symbol table section (`SHT_SYMTAB`),
/// read from its section headers. `None` when the file is not such an ELF file.
fn has_symbol_table(bytes: &[u8]) -> Option<bool> {
    const SHT_SYMTAB: u32 = 2;
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    let offset = usize::try_from(u64_at(0x28)?).ok()?;
    let entry = usize::from(u16_at(0x3A)?);
    let count = usize::from(u16_at(0x3C)?);
    let mut found = false;
    for i in 0..count {
        found |= u32_at(offset + i * entry + 4)? == SHT_SYMTAB;
    }
    Some(found)
}

/// The default binary directory: where the running `ledger` lives (`target/release` when
/// run as `target/release/ledger bench`).
pub fn default_bin_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
}

pub async fn run(bin_dir: Option<&Path>) -> Outcome {
    let Some(dir) = bin_dir.map(Path::to_path_buf).or_else(default_bin_dir) else {
        return Outcome::Skipped {
            reason: "no --lambda-bin-dir and the running binary's directory is unknown".into(),
        };
    };
    let mut measurements = Vec::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for name in LAMBDA_BINARIES {
        let path = dir.join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            missing.push(*name);
            continue;
        };
        let stripped = has_symbol_table(&bytes) == Some(false);
        let label = if stripped {
            format!("{name} binary size")
        } else {
            format!("{name} binary size (NOT stripped: a debug build?)")
        };
        let mut m = Measurement::new(NAME, label, bytes.len() as f64 / (1024.0 * 1024.0), "MiB");
        if stripped {
            m = m.target(Target::Value(Bound::AtMost(MAX_BYTES / (1024.0 * 1024.0))));
        }
        measurements.push(m);
    }
    if measurements.is_empty() {
        return Outcome::Skipped {
            reason: format!(
                "no Lambda binary in {} (build them: cargo build --release --bins, then pass \
                 --lambda-bin-dir target/release)",
                dir.display()
            ),
        };
    }
    notes.push(format!("binaries read from {}", dir.display()));
    if !missing.is_empty() {
        notes.push(format!("missing (not measured): {}", missing.join(", ")));
    }
    match ScratchDir::new() {
        Ok(scratch) => {
            for (name, invocation) in [
                ("projector", projector_invocation as fn() -> Value),
                ("audit_api", audit_invocation),
            ] {
                let binary = dir.join(name);
                if !binary.exists() {
                    continue;
                }
                match cold_start(&binary, name, scratch.path(), invocation()).await {
                    Ok((init, rss)) => {
                        measurements.push(
                            Measurement::new(
                                NAME,
                                format!("{name} cold start (spawn -> first /next)"),
                                init.as_secs_f64() * 1000.0,
                                "ms",
                            )
                            .target(Target::Value(Bound::AtMost(MAX_INIT_MS))),
                        );
                        if let Some(kib) = rss {
                            measurements.push(
                                Measurement::new(
                                    NAME,
                                    format!("{name} peak RSS ({})", invocation_label(name)),
                                    kib as f64 / 1024.0,
                                    "MiB",
                                )
                                .target(Target::Value(Bound::AtMost(MAX_RSS_MIB))),
                            );
                        }
                    }
                    Err(reason) => notes.push(format!("{name} cold start not measured: {reason}")),
                }
            }
        }
        Err(reason) => notes.push(format!("cold starts not measured: {reason}")),
    }
    notes.push(
        "cold start and peak RSS: the binary run through the Runtime API emulator \
         (src/bench/runtime_api.rs) with LEDGER_STORE=sqlite:// on a fresh ledger.db; ingest \
         and token_rotator read an SSM parameter during init, so they are measured against \
         moto by tests/ingest_lambda_runtime.rs and tests/lambda_binaries.rs (--nocapture \
         prints them), not here"
            .to_string(),
    );
    Outcome::Measured {
        measurements,
        notes,
    }
}

fn invocation_label(name: &str) -> String {
    match name {
        "projector" => format!("{RECORDS}-record DynamoDB Streams batch, correlation projection"),
        _ => "one refused API request".to_string(),
    }
}

/// A full batch of realistic stream records (the projector_batch bench's event).
fn projector_invocation() -> Value {
    let events = recorded_events(0, RECORDS, Utc::now());
    serde_json::from_str(&stream_event_json(&events)).unwrap_or(Value::Null)
}

/// An API Gateway HTTP API request without IAM authorisation (the API refuses it).
fn audit_invocation() -> Value {
    json!({
        "version": "2.0",
        "routeKey": "GET /correlations/{id}",
        "rawPath": "/correlations/0192f4d2-0000-7000-8000-000000000000",
        "rawQueryString": "",
        "headers": {},
        "pathParameters": {"id": "0192f4d2-0000-7000-8000-000000000000"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "bench",
            "domainPrefix": "bench", "requestId": "bench", "routeKey": "GET /correlations/{id}",
            "stage": "$default", "time": "26/Nov/2026:09:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "GET", "path": "/correlations/0192f4d2-0000-7000-8000-000000000000",
                     "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}
        },
        "isBase64Encoded": false
    })
}

/// Spawns `binary` as function `name` on a fresh embedded store, waits for its first `/next`,
/// sends `invocation` and returns the cold start and the peak RSS (KiB) after answering.
async fn cold_start(
    binary: &Path,
    name: &str,
    scratch: &Path,
    invocation: Value,
) -> Result<(Duration, Option<u64>), String> {
    let store = scratch.join(format!("{name}.db"));
    migrate(&store).map_err(|e| e.to_string())?;
    let env: Vec<(String, String)> = [
        ("LEDGER_STORE", format!("sqlite://{}", store.display())),
        ("PROJECTION", "correlation".to_string()),
        // Never called by the correlation projection; required by the typed config.
        ("CRM_BASE_URL", "http://127.0.0.1:9/".to_string()),
        ("BILLING_BASE_URL", "http://127.0.0.1:9/".to_string()),
        ("RUST_LOG", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let process = LambdaProcess::spawn(binary, name, &env)
        .await
        .map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let init = loop {
        if let Some(init) = process.init_duration() {
            break init;
        }
        if let Some(error) = process.init_error() {
            return Err(format!("init failed: {error}"));
        }
        if let Some(status) = process.exit_status() {
            return Err(format!("exited during init ({status}): {}", process.logs()));
        }
        if started.elapsed() > INIT_WAIT {
            return Err(format!("no /next within {INIT_WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    process
        .invoke(invocation)
        .await
        .map_err(|e| e.to_string())?
        .into_response()?;
    Ok((init, process.peak_rss_kib()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header followed by section headers of the given types.
    fn elf(section_types: &[u32]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
        bytes[0x28..0x30].copy_from_slice(&64u64.to_le_bytes());
        bytes[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        bytes[0x3C..0x3E].copy_from_slice(&(section_types.len() as u16).to_le_bytes());
        for t in section_types {
            let mut header = vec![0u8; 64];
            header[4..8].copy_from_slice(&t.to_le_bytes());
            bytes.extend(header);
        }
        bytes
    }

    #[test]
    fn a_symbol_table_is_found_by_section_type() {
        assert_eq!(has_symbol_table(&elf(&[0, 1, 2, 3])), Some(true));
        assert_eq!(has_symbol_table(&elf(&[0, 1, 3])), Some(false));
        assert_eq!(has_symbol_table(b"#!/bin/sh"), None);
    }
}
