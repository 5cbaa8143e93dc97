//! `ledger worker`: the local event source mapping. Runs the selected projections over the
//! store's change feed (embedded store) or DynamoDB Streams (`dynamodb://`), through the same
//! handlers Lambda runs, until Ctrl-C, until idle (`--until-idle`) or for one batch (`--once`).
//! It parses arguments, wires the library and prints a summary; it decides nothing itself.

use super::{describe_store, CliError};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::connectors::config::{ConnectorsConfig, TokenConfig};
use sync_ledger::lambda::projector::ProjectorHandler;
use sync_ledger::ledger::dynamodb::events_table;
use sync_ledger::ledger::open_store;
use sync_ledger::projector::effects::ConnectorEffects;
use sync_ledger::projector::registry::selected_view_names;
use sync_ledger::projector::{build_selected, ProjectorDeps, RunnerSettings};
use sync_ledger::views::open_views;
use sync_ledger::worker::streams::StreamsSource;
use sync_ledger::worker::{
    feed, shutdown_on_signals, streams, StopWhen, WorkerReport, WorkerSettings,
};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Which projection to run: account, order, product, correlation, or all.
    #[arg(long, default_value = "all")]
    pub projection: String,
    /// Deliver at most one batch per projection (and shard), then stop.
    #[arg(long, conflicts_with = "until_idle")]
    pub once: bool,
    /// Stop once every selected projection has caught up with the feed, including the
    /// outcomes the others appended meanwhile (a whole pass delivers nothing).
    #[arg(long)]
    pub until_idle: bool,
    /// Most records per batch (the mapping's BatchSize).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub batch_size: u16,
    /// How long a short batch waits for more records (MaximumBatchingWindowInSeconds).
    #[arg(long, default_value_t = 1000)]
    pub batch_window_ms: u64,
    /// Retries of a failing record before it is recorded as failed and skipped
    /// (MaximumRetryAttempts).
    #[arg(long, default_value_t = 10)]
    pub max_retries: u32,
    /// First retry delay; doubles per retry up to 5 s.
    #[arg(long, default_value_t = 100)]
    pub retry_backoff_ms: u64,
    /// Wait between polls of a caught-up feed.
    #[arg(long, default_value_t = 500)]
    pub idle_poll_ms: u64,
}

impl WorkerArgs {
    fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            batch_size: usize::from(self.batch_size),
            batch_window: Duration::from_millis(self.batch_window_ms),
            max_retries: self.max_retries,
            retry_backoff: Duration::from_millis(self.retry_backoff_ms),
            max_backoff: Duration::from_secs(5),
            idle_poll: Duration::from_millis(self.idle_poll_ms),
            stop: if self.once {
                StopWhen::Once
            } else if self.until_idle {
                StopWhen::Idle
            } else {
                StopWhen::Never
            },
        }
    }
}

/// Passes of `--until-idle` before the worker gives up on settling: each pass follows one
/// more step of projections reacting to each other's outcomes, which is a handful at most.
const MAX_IDLE_PASSES: usize = 50;

fn invalid(e: impl std::fmt::Display) -> CliError {
    CliError::Invalid(e.to_string())
}

pub async fn run(store: &StoreUrl, args: &WorkerArgs) -> Result<ExitCode, CliError> {
    // Everything is read and checked before the first record is touched.
    let names = selected_view_names(&args.projection).map_err(invalid)?;
    let connectors = ConnectorsConfig::from_env()?;
    connectors.check_for(&names)?;
    // One AWS configuration for the run, loaded only by what needs it (a DynamoDB store,
    // Parameter Store tokens): a worker on the embedded store with client credentials never
    // resolves AWS credentials.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await.map_err(invalid)?;
    let ssm_config = match connectors.tokens {
        TokenConfig::ParameterStore => Some(aws.get().await),
        TokenConfig::ClientCredentials { .. } => None,
    };
    let effects =
        Arc::new(ConnectorEffects::from_config(&connectors, ssm_config).map_err(invalid)?);
    let deps = ProjectorDeps {
        log: log.clone(),
        views: views.clone(),
        effects,
        settings: RunnerSettings::default(),
    };
    let projectors = build_selected(&args.projection, &deps).map_err(invalid)?;
    let settings = args.settings();
    let shutdown = shutdown_on_signals();
    tracing::info!(store = %describe_store(store), projection = %args.projection, "worker starting");

    let streams_source = match store {
        StoreUrl::Sqlite(_) => None,
        StoreUrl::DynamoDb { table_prefix } => Some(Arc::new(
            StreamsSource::for_events_table(aws.get().await, &events_table(table_prefix))
                .await
                .map_err(invalid)?,
        )),
    };
    let handlers: Vec<Arc<ProjectorHandler>> = projectors
        .iter()
        .map(|p| Arc::new(ProjectorHandler::new(p.clone())))
        .collect();

    // Projections feed each other (outcomes one appends are folded by another, e.g. the
    // correlation view links what account sync created), so "idle" is a whole pass in which
    // no projection received a batch: then nothing was appended and every checkpoint is at
    // the head. Running the projections once each could stop before a late outcome is seen.
    // Streams guarantee: a write reaches the stream after it commits, not at once, so on real
    // DynamoDB an idle pass can still precede an outcome appended just before it.
    let mut reports: Vec<WorkerReport> = Vec::new();
    let mut first_error: Option<String> = None;
    for pass in 1.. {
        let mut tasks = tokio::task::JoinSet::new();
        match &streams_source {
            None => {
                for projector in &projectors {
                    tasks.spawn(feed::run(
                        log.clone(),
                        views.clone(),
                        projector.clone(),
                        settings,
                        shutdown.clone(),
                    ));
                }
            }
            Some(source) => {
                for handler in &handlers {
                    tasks.spawn(streams::run(
                        source.clone(),
                        log.clone(),
                        views.clone(),
                        handler.clone(),
                        settings,
                        shutdown.clone(),
                    ));
                }
            }
        }
        let mut delivered = false;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(report)) => {
                    delivered |= report.batches > 0;
                    match reports
                        .iter_mut()
                        .find(|r| r.projection == report.projection)
                    {
                        Some(total) => total.merge(&report),
                        None => reports.push(report),
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "a projection's worker stopped");
                    first_error.get_or_insert(e.to_string());
                }
                Err(e) => {
                    first_error.get_or_insert(format!("a worker task failed: {e}"));
                }
            }
        }
        if settings.stop != StopWhen::Idle
            || !delivered
            || first_error.is_some()
            || *shutdown.borrow()
        {
            break;
        }
        if pass == MAX_IDLE_PASSES {
            first_error = Some(format!(
                "the projections were still appending after {MAX_IDLE_PASSES} passes; \
                 do two projections keep answering each other?"
            ));
            break;
        }
        tracing::debug!(pass, "a projection received records: another pass");
    }
    reports.sort_by(|a, b| a.projection.cmp(&b.projection));
    for report in &reports {
        println!("{report}");
    }
    if let Some(e) = first_error {
        return Err(CliError::Invalid(e));
    }
    let gave_up: usize = reports.iter().map(|r| r.gave_up).sum();
    Ok(if gave_up == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
