//! `ledger bench`: one module per measurement, each returning typed [`Measurement`]s — a
//! value measured side by side with its baseline in the same process, the ratio, the target
//! and whether it is met. Modules measure and report; they never assert or tune anything.

pub mod append;
pub mod cost;
pub mod lambda;
pub mod latency;
pub mod projector_batch;
pub mod projector_io;
pub mod reconcile;
pub mod replay;
pub mod report;
pub mod workload;

use std::time::{Duration, Instant};

/// Which way a target bounds its quantity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    pub fn holds(&self, value: f64) -> bool {
        match *self {
            Bound::AtMost(limit) => value <= limit,
            Bound::AtLeast(limit) => value >= limit,
        }
    }
}

/// A target, on the ratio to the baseline or on the value itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    Ratio(Bound),
    Value(Bound),
}

/// The baseline a value is compared with, measured in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub label: String,
    pub value: f64,
}

/// One measured quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// The measurement module (`projector_batch`, `append`, ...), as `--only` names it.
    pub bench: &'static str,
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: Option<Baseline>,
    pub target: Option<Target>,
}

impl Measurement {
    pub fn new(
        bench: &'static str,
        label: impl Into<String>,
        value: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            bench,
            label: label.into(),
            value,
            unit,
            baseline: None,
            target: None,
        }
    }

    pub fn against(mut self, label: impl Into<String>, value: f64) -> Self {
        self.baseline = Some(Baseline {
            label: label.into(),
            value,
        });
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// value / baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|b| b.value != 0.0)
            .map(|b| self.value / b.value)
    }

    /// Whether the target is met (`None` without a target, or a ratio target without a ratio).
    pub fn met(&self) -> Option<bool> {
        match self.target? {
            Target::Ratio(bound) => self.ratio().map(|r| bound.holds(r)),
            Target::Value(bound) => Some(bound.holds(self.value)),
        }
    }
}

/// What one measurement module produced: its numbers and notes, or why it could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured {
        measurements: Vec<Measurement>,
        /// How it was measured (sizes, what the baseline is), printed under the table.
        notes: Vec<String>,
    },
    Skipped {
        reason: String,
    },
}

/// One module's outcome, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub bench: &'static str,
    pub title: &'static str,
    pub outcome: Outcome,
}

/// Sizes of a run: `quick` divides the event counts by ten and takes fewer rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    /// `full` events in a full run, a tenth of them in a quick one.
    pub fn events(&self, full: usize) -> usize {
        if self.quick {
            (full / 10).max(1)
        } else {
            full
        }
    }

    /// Timed rounds of a side-by-side comparison (the median is reported).
    pub fn rounds(&self) -> usize {
        if self.quick {
            5
        } else {
            15
        }
    }
}

/// Every measurement module, in the order `ledger bench` runs them.
pub const BENCHES: &[&str] = &[
    projector_batch::NAME,
    append::NAME,
    replay::NAME,
    lambda::NAME,
    cost::NAME,
    latency::NAME,
    projector_io::NAME,
    reconcile::NAME,
];

/// The median of `samples` (which must not be empty).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Times `subject` and `baseline` alternately for `rounds` rounds (so load on the machine
/// hits both alike) and returns the two medians.
pub fn side_by_side(
    rounds: usize,
    mut subject: impl FnMut(),
    mut baseline: impl FnMut(),
) -> (Duration, Duration) {
    let (mut s, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds.max(1) {
        let start = Instant::now();
        subject();
        s.push(start.elapsed());
        let start = Instant::now();
        baseline();
        b.push(start.elapsed());
    }
    (median(&mut s), median(&mut b))
}

/// A scratch directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    pub fn new() -> Result<Self, String> {
        let path =
            std::env::temp_dir().join(format!("ledger-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The process's peak resident set (`VmHWM`), in bytes, on Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
    .map(|k| k * 1024)
}

/// CPU time this process has used so far, user + system, all threads (`/proc/self/stat`
/// fields 14 and 15, in USER_HZ = 100 ticks per second on Linux). On a loaded machine the
/// wall time of a run mostly measures the wait for a core; its CPU time does not.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; every field after its ')' is a number.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}

/// Resets the peak resident set to the current one (Linux `clear_refs` 5), so a later
/// `peak_rss_bytes` is the peak of what ran in between. Returns whether the kernel allowed it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `kB` field of `/proc/<pid>/status` (kept with the Runtime API emulator, which reads a
/// Lambda process's peak RSS with it).
pub use sandbox::runtime_api::proc_status_kib;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_grows_with_work() {
        let before = process_cpu_seconds().expect("Linux /proc");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        let after = process_cpu_seconds().unwrap();
        assert!(after >= before, "{before} -> {after}");
    }

    #[test]
    fn ratio_targets_apply_to_the_ratio_and_value_targets_to_the_value() {
        let m = Measurement::new("x", "decode", 3.0, "ms")
            .against("parse", 2.0)
            .target(Target::Ratio(Bound::AtMost(2.0)));
        assert_eq!(m.ratio(), Some(1.5));
        assert_eq!(m.met(), Some(true));
        let slow = Measurement::new("x", "append", 90_000.0, "events/s")
            .target(Target::Value(Bound::AtLeast(100_000.0)));
        assert_eq!(slow.met(), Some(false));
        assert_eq!(Measurement::new("x", "n", 1.0, "").met(), None);
    }

    #[test]
    fn reads_kib_fields_of_proc_status() {
        let status = "Name:\tledger\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(proc_status_kib(status, "VmHWM:"), Some(12345));
        assert_eq!(proc_status_kib(status, "VmSwap:"), None);
    }
}
