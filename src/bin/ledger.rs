//! `ledger`: the one command line of Sync Ledger (migrate, ingest, events, demo, ...).
//! Thin: parse arguments, set up tracing, hand over to `ledger_cli::cli`.

use clap::Parser;
use ledger_cli::cli::{run, Cli};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// mimalloc for the CLI only: a replay allocates per decoded row and per fold, and the
/// system allocator's malloc/free was a quarter of its profile (BENCHMARKS.md). The Lambda
/// binaries keep the system allocator (smaller binaries, and nothing measured it there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's story is its stdout; its expected retries would only be noise on stderr.
    let default_level = match cli.command {
        ledger_cli::cli::LedgerCommand::Demo(_) => "error",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let stderr_is_terminal = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal);
    if stderr_is_terminal {
        logs.pretty().init();
    } else {
        logs.init();
    }

    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ledger: {e}");
            ExitCode::FAILURE
        }
    }
}
