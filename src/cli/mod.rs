//! The `ledger` command line: the `LedgerCommand` enum (one variant per subcommand, one per
//! line) and its dispatch. Each subcommand lives in its own file; none holds business logic —
//! they parse arguments, call the library and print. (`projections::commands::Command` is
//! the domain's call on an external system, unrelated.)

pub mod audit;
pub mod bench;
pub mod console;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod ingest;
pub mod migrate;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod sandbox;
pub mod serve;
pub mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use sync_ledger::config::{ConfigError, StoreUrl};
use sync_ledger::ledger::{LedgerError, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "ledger",
    version,
    about = "Sync Ledger: the event-sourced sync ledger between CRM and Billing"
)]
pub struct Cli {
    /// Store to use: sqlite://<path> or dynamodb://<table-prefix>. Overrides LEDGER_STORE
    /// (default sqlite://ledger.db).
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    #[command(subcommand)]
    pub command: LedgerCommand,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Create or update the store's tables; safe to run any number of times.
    Migrate(migrate::MigrateArgs),
    /// Append events from a JSON-lines file (or - for stdin); duplicates are recorded once.
    Ingest(ingest::IngestArgs),
    /// Print one stream's events in version order.
    Events(events::EventsArgs),
    /// Run the demo on a fresh embedded store in a temp dir (no AWS needed).
    Demo(demo::DemoArgs),
    /// Rebuild projections from the log (in place, --into a namespace, or --verify).
    Replay(replay::ReplayArgs),
    /// Print the causal chain of a correlation id, CRM id or Billing id (--json for machines).
    Audit(audit::AuditArgs),
    /// Serve the operator console and the audit API (GET /audit/{id}, as the audit_api Lambda).
    Serve(serve::ServeArgs),
    /// Re-run the failed/deferred syncs of one correlation id (calls the external systems).
    Redrive(redrive::RedriveArgs),
    /// Compare CRM, Billing and the view (accounts), record drift, --repair through the projectors.
    Reconcile(reconcile::ReconcileArgs),
    /// Serve the in-memory CRM + Billing simulators (fault knobs, call counters, outbox).
    Sandbox(sandbox::SandboxArgs),
    /// Run the projectors over the change feed / DynamoDB Streams (the local event source mapping).
    Worker(worker::WorkerArgs),
    /// Dead-letter queues: `drain --queue <url>` re-ingests the ingest DLQ's messages.
    Dlq(dlq::DlqArgs),
    /// Measure throughput, latency and cost ratios against same-run baselines.
    Bench(bench::BenchArgs),
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    View(#[from] sync_ledger::views::ViewError),
    #[error(transparent)]
    Replay(#[from] sync_ledger::replay::ReplayError),
    #[error(transparent)]
    Redrive(#[from] sync_ledger::redrive::RedriveError),
    #[error(transparent)]
    Audit(#[from] sync_ledger::audit::AuditError),
    #[error(transparent)]
    Reconcile(#[from] sync_ledger::reconcile::ReconcileError),
}

impl Cli {
    /// The store named by `--store`, else `LEDGER_STORE`, else the embedded default.
    pub fn store_url(&self) -> Result<StoreUrl, ConfigError> {
        match &self.store {
            Some(value) => StoreUrl::parse(value).map_err(|e| ConfigError {
                variable: "--store".to_string(),
                ..e
            }),
            None => StoreUrl::from_env(),
        }
    }
}

/// Runs the parsed command; the exit code says whether everything it was given succeeded.
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match &cli.command {
        LedgerCommand::Migrate(args) => migrate::run(&cli.store_url()?, args).await,
        LedgerCommand::Ingest(args) => ingest::run(&cli.store_url()?, args).await,
        LedgerCommand::Events(args) => events::run(&cli.store_url()?, args).await,
        LedgerCommand::Demo(args) => demo::run(args).await,
        LedgerCommand::Replay(args) => replay::run(&cli.store_url()?, args).await,
        LedgerCommand::Audit(args) => audit::run(&cli.store_url()?, args).await,
        LedgerCommand::Serve(args) => serve::run(&cli.store_url()?, args).await,
        LedgerCommand::Redrive(args) => redrive::run(&cli.store_url()?, args).await,
        LedgerCommand::Reconcile(args) => reconcile::run(&cli.store_url()?, args).await,
        LedgerCommand::Sandbox(args) => sandbox::run(args).await,
        LedgerCommand::Worker(args) => worker::run(&cli.store_url()?, args).await,
        LedgerCommand::Dlq(args) => dlq::run(&cli.store_url()?, args).await,
        LedgerCommand::Bench(args) => bench::run(args).await,
    }
}

/// How a store is named in output (never carries credentials: URLs hold a path or prefix).
pub fn describe_store(store: &StoreUrl) -> String {
    match store {
        StoreUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        StoreUrl::DynamoDb { table_prefix } => format!("dynamodb://{table_prefix}"),
    }
}
