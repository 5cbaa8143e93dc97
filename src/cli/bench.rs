//! `ledger bench [--quick] [--only <name>] [--write BENCHMARKS.md] [--lambda-bin-dir DIR]`:
//! runs the measurement modules of `ledger_bench` one after the other, prints the table of
//! values, baselines, ratios and targets, and optionally writes the generated section of BENCHMARKS.md.

use super::CliError;
use ledger_bench::report::{render_markdown, render_text, splice, RunContext};
use ledger_bench::{
    append, cost, lambda, latency, projector_batch, projector_io, reconcile, replay, BenchResult,
    Scale, BENCHES,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Ten times fewer events and fewer rounds: the whole run takes under two minutes.
    #[arg(long)]
    pub quick: bool,
    /// Run only these measurements (repeat or comma-separate): projector_batch, append,
    /// replay, lambda, cost, latency, reconcile, projector_io.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub only: Vec<String>,
    /// Write the results table into this Markdown file (its generated section only).
    #[arg(long, value_name = "PATH")]
    pub write: Option<PathBuf>,
    /// Where the release Lambda binaries are (default: beside this `ledger`).
    #[arg(long, value_name = "DIR")]
    pub lambda_bin_dir: Option<PathBuf>,
}

pub async fn run(args: &BenchArgs) -> Result<ExitCode, CliError> {
    if let Some(unknown) = args.only.iter().find(|n| !BENCHES.contains(&n.as_str())) {
        return Err(CliError::Invalid(format!(
            "--only: unknown measurement {unknown:?} (known: {})",
            BENCHES.join(", ")
        )));
    }
    let scale = Scale { quick: args.quick };
    let selected = |name: &str| args.only.is_empty() || args.only.iter().any(|n| n == name);
    let mut results = Vec::new();
    for name in BENCHES {
        if !selected(name) {
            continue;
        }
        eprintln!("ledger bench: running {name}...");
        let result = match *name {
            projector_batch::NAME => BenchResult {
                bench: projector_batch::NAME,
                title: projector_batch::TITLE,
                outcome: projector_batch::run(scale),
            },
            append::NAME => BenchResult {
                bench: append::NAME,
                title: append::TITLE,
                outcome: append::run(scale).await,
            },
            replay::NAME => BenchResult {
                bench: replay::NAME,
                title: replay::TITLE,
                outcome: replay::run(scale).await,
            },
            lambda::NAME => BenchResult {
                bench: lambda::NAME,
                title: lambda::TITLE,
                outcome: lambda::run(args.lambda_bin_dir.as_deref()).await,
            },
            cost::NAME => BenchResult {
                bench: cost::NAME,
                title: cost::TITLE,
                outcome: cost::run(scale),
            },
            latency::NAME => BenchResult {
                bench: latency::NAME,
                title: latency::TITLE,
                outcome: latency::run(scale).await,
            },
            projector_io::NAME => BenchResult {
                bench: projector_io::NAME,
                title: projector_io::TITLE,
                outcome: projector_io::run(scale).await,
            },
            reconcile::NAME => BenchResult {
                bench: reconcile::NAME,
                title: reconcile::TITLE,
                outcome: reconcile::run(scale).await,
            },
            other => unreachable!("BENCHES lists {other} without a runner"),
        };
        print!("{}", render_text(std::slice::from_ref(&result)));
        results.push(result);
    }
    if let Some(path) = &args.write {
        let command = format!(
            "ledger {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        );
        let section = render_markdown(&results, &RunContext::here(command));
        let io = |source| CliError::Io {
            path: path.display().to_string(),
            source,
        };
        let existing = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        std::fs::write(path, splice(&existing, &section)).map_err(io)?;
        eprintln!("ledger bench: wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
