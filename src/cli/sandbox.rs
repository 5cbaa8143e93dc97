//! `ledger sandbox [--port N] [--faults JSON] [--callout-secret-env VAR] [--callout-url URL]`: serves the
//! in-memory CRM + Billing simulators until Ctrl-C. Prints one JSON line with the URLs and
//! client ids on start (no secrets), so scripts and tests can find it. Never for production.

use super::CliError;
use sandbox::{FaultSettings, Sandbox, SandboxConfig, System};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// Port to listen on (0 picks a free one; the chosen port is printed).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Address to bind; keep the loopback default unless you know why not.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Initial fault knobs as JSON, e.g. '{"billing":{"throttle_next":2,"retry_after_secs":1}}'.
    /// Change them later with `POST /__admin/faults`.
    #[arg(long, value_name = "JSON")]
    pub faults: Option<String>,
    /// Name of an environment variable holding the Billing callout secret; callouts are
    /// then signed (`X-Zuora-Signature`). The secret itself never goes on the command line.
    #[arg(long, value_name = "VAR")]
    pub callout_secret_env: Option<String>,
    /// Also POST every Billing callout to this URL (e.g. the ingest callout endpoint).
    #[arg(long, value_name = "URL")]
    pub callout_url: Option<url::Url>,
}

pub async fn run(args: &SandboxArgs) -> Result<ExitCode, CliError> {
    let mut config = SandboxConfig {
        bind: SocketAddr::new(args.bind, args.port),
        callout_url: args.callout_url.clone(),
        ..SandboxConfig::default()
    };
    if let Some(text) = &args.faults {
        config.faults = serde_json::from_str::<FaultSettings>(text)
            .map_err(|e| CliError::Invalid(format!("--faults: {e}")))?;
    }
    if let Some(var) = &args.callout_secret_env {
        let value = std::env::var(var)
            .map_err(|_| CliError::Invalid(format!("--callout-secret-env: {var} is not set")))?;
        config.callout_secret =
            Some(sandbox::CalloutSigner::new(value).ok_or_else(|| {
                CliError::Invalid(format!("--callout-secret-env: {var} is empty"))
            })?);
    }
    let sandbox = Sandbox::start(config)
        .await
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let ready = json!({
        "sandbox": sandbox.url().as_str(),
        "crm_token_url": sandbox.token_url(System::Crm).as_str(),
        "crm_client_id": sandbox.config().crm_client.client_id,
        "billing_token_url": sandbox.token_url(System::Billing).as_str(),
        "billing_client_id": sandbox.config().billing_client.client_id,
        "admin": sandbox.url().join("__admin/").map(|u| u.to_string()).unwrap_or_default(),
    });
    println!("{ready}");
    eprintln!(
        "sandbox listening on {} (client secrets: the built-in sandbox defaults); Ctrl-C stops it",
        sandbox.url()
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| CliError::Invalid(format!("waiting for Ctrl-C: {e}")))?;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
