//! `ledger redrive --correlation <id>`: re-runs the failed or deferred syncs of one trace
//! against the external systems (configured like `ledger worker`: CRM_BASE_URL, ...), and
//! prints what each re-run recorded. The one deliberate path that calls out again.

use super::CliError;
use crate::config::StoreUrl;
use crate::ledger::open_store;
use crate::projector::config::{ConnectorsConfig, TokenConfig};
use crate::projector::effects::ConnectorEffects;
use crate::replay::redrive::redrive;
use projections::CorrelationId;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// The trace whose failed/deferred syncs to re-run.
    #[arg(long)]
    pub correlation: String,
}

pub async fn run(store: &StoreUrl, args: &RedriveArgs) -> Result<ExitCode, CliError> {
    let correlation = CorrelationId::parse(&args.correlation)
        .map_err(|e| CliError::Invalid(format!("--correlation: {e}")))?;
    let connectors = ConnectorsConfig::from_env()?;
    let aws = match connectors.tokens {
        TokenConfig::ParameterStore => {
            Some(aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await)
        }
        TokenConfig::ClientCredentials { .. } => None,
    };
    let effects = ConnectorEffects::from_config(&connectors, aws.as_ref())
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let log = open_store(store).await?;
    let done = redrive(log.as_ref(), &effects, &correlation).await?;
    if done.is_empty() {
        println!("nothing to redrive: no failed or deferred sync in {correlation}");
    }
    for r in &done {
        let recorded = if r.recorded.is_empty() {
            "nothing new recorded".to_string()
        } else {
            format!("recorded {}", r.recorded.join(", "))
        };
        println!(
            "{} {} v{} [{}]: {} call(s), {recorded}",
            r.cause.event_type, r.cause.stream_id, r.cause.version, r.projection, r.calls
        );
    }
    Ok(ExitCode::SUCCESS)
}
