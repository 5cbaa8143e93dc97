//! Renders bench results: a plain table for the terminal and the generated section of
//! `BENCHMARKS.md` (machine, command, date, results table, how to reproduce). It formats
//! only; the numbers come from the measurement modules.

use super::{BenchResult, Bound, Measurement, Outcome, Target};
use std::fmt::Write as _;

/// Marks the part of `BENCHMARKS.md` that `ledger bench --write` owns; the rest of the file
/// (hand-written sections) is kept as it is.
pub const BEGIN: &str = "<!-- ledger bench: generated section begins -->";
pub const END: &str = "<!-- ledger bench: generated section ends -->";

/// Where and how a run happened.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub command: String,
    pub date: String,
    pub machine: String,
}

impl RunContext {
    /// This machine: CPU model, cores, memory and load (the load matters on a shared host).
    pub fn here(command: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = super::proc_status_kib(&meminfo, "MemTotal:")
            .map_or("unknown".to_string(), |k| {
                format!("{:.1} GiB", k as f64 / 1024.0 / 1024.0)
            });
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            command,
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            machine: format!(
                "{model}, {cores} cores, {memory} RAM, load average {load} at start ({} {})",
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
        }
    }
}

fn number(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

fn bound(b: Bound) -> String {
    match b {
        Bound::AtMost(x) => format!("<= {}", number(x)),
        Bound::AtLeast(x) => format!(">= {}", number(x)),
    }
}

fn target(m: &Measurement) -> String {
    match m.target {
        None => "-".to_string(),
        Some(Target::Ratio(b)) => format!("ratio {}", bound(b)),
        Some(Target::Value(b)) => format!("{} {}", bound(b), m.unit),
    }
}

fn verdict(m: &Measurement) -> &'static str {
    match m.met() {
        None => "-",
        Some(true) => "met",
        Some(false) => "MISSED",
    }
}

/// The terminal table: one line per measurement, each with its ratio where it has a baseline.
pub fn render_text(results: &[BenchResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "== {} ({})", r.title, r.bench);
        match &r.outcome {
            Outcome::Skipped { reason } => {
                let _ = writeln!(out, "   SKIPPED: {reason}");
            }
            Outcome::Measured {
                measurements,
                notes,
            } => {
                for m in measurements {
                    let _ = write!(
                        out,
                        "   {:<48} {:>12} {:<8}",
                        m.label,
                        number(m.value),
                        m.unit
                    );
                    if let (Some(b), Some(ratio)) = (&m.baseline, m.ratio()) {
                        let _ = write!(
                            out,
                            " vs {} {} {}  ratio {}",
                            b.label,
                            number(b.value),
                            m.unit,
                            number(ratio)
                        );
                    }
                    if m.target.is_some() {
                        let _ = write!(out, "  target {}: {}", target(m), verdict(m));
                    }
                    out.push('\n');
                }
                for n in notes {
                    let _ = writeln!(out, "   note: {n}");
                }
            }
        }
    }
    out
}

/// The generated section of `BENCHMARKS.md`, between [`BEGIN`] and [`END`].
pub fn render_markdown(results: &[BenchResult], context: &RunContext) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}");
    let _ = writeln!(out, "## `ledger bench` (generated)\n");
    let _ = writeln!(out, "- Command: `{}`", context.command);
    let _ = writeln!(out, "- Date: {}", context.date);
    let _ = writeln!(out, "- Machine: {}\n", context.machine);
    let _ = writeln!(
        out,
        "| bench | measurement | value | baseline (same run) | ratio | target | met? |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in results {
        match &r.outcome {
            Outcome::Skipped { reason } => {
                let _ = writeln!(out, "| {} | skipped: {reason} | | | | | |", r.bench);
            }
            Outcome::Measured { measurements, .. } => {
                for m in measurements {
                    let baseline = m.baseline.as_ref().map_or("-".to_string(), |b| {
                        format!("{}: {} {}", b.label, number(b.value), m.unit)
                    });
                    let ratio = m.ratio().map_or("-".to_string(), number);
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} {} | {} | {} | {} | {} |",
                        r.bench,
                        m.label,
                        number(m.value),
                        m.unit,
                        baseline,
                        ratio,
                        target(m),
                        verdict(m)
                    );
                }
            }
        }
    }
    let _ = writeln!(out, "\nHow each was measured:\n");
    for r in results {
        if let Outcome::Measured { notes, .. } = &r.outcome {
            for n in notes {
                let _ = writeln!(out, "- `{}`: {n}", r.bench);
            }
        }
    }
    let _ = writeln!(
        out,
        "\nReproduce: `cargo build --release --bins && target/release/ledger bench \
         --lambda-bin-dir target/release --write BENCHMARKS.md` (a full run); `ledger bench \
         --quick` (10x fewer events) prints the same table in under two minutes."
    );
    let _ = writeln!(out, "{END}");
    out
}

/// `existing` with its generated section replaced by `section` (appended when absent).
pub fn splice(existing: &str, section: &str) -> String {
    match (existing.find(BEGIN), existing.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &existing[end + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section}{after}", &existing[..begin])
        }
        _ => {
            let sep = if existing.is_empty() || existing.ends_with("\n\n") {
                ""
            } else if existing.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{existing}{sep}{section}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_section() {
        let first = splice(
            "# Benchmarks\n\nby hand\n",
            &format!("{BEGIN}\nv1\n{END}\n"),
        );
        assert_eq!(
            first,
            format!("# Benchmarks\n\nby hand\n\n{BEGIN}\nv1\n{END}\n")
        );
        let with_tail = format!("{first}\n## Later, by hand\n");
        let second = splice(&with_tail, &format!("{BEGIN}\nv2\n{END}\n"));
        assert_eq!(
            second,
            format!("# Benchmarks\n\nby hand\n\n{BEGIN}\nv2\n{END}\n\n## Later, by hand\n")
        );
    }
}
