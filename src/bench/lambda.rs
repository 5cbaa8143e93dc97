//! Lambda footprint: the size of each Lambda binary as deployed (release profile, stripped),
//! found in `--lambda-bin-dir`. It only reads the files; it builds nothing and says so when a
//! binary is missing or carries a symbol table.

use super::{Bound, Measurement, Outcome, Target};
use std::path::{Path, PathBuf};

pub const NAME: &str = "lambda";
pub const TITLE: &str = "Lambda: stripped binary size";

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

pub fn run(bin_dir: Option<&Path>) -> Outcome {
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
    notes.push(
        "init time (spawn -> first /next) and peak RSS per function are not measured by \
         `ledger bench` in this build: the Runtime API emulator that measures them is \
         tests/support/runtime_api.rs (see BENCHMARKS.md)"
            .to_string(),
    );
    Outcome::Measured {
        measurements,
        notes,
    }
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
