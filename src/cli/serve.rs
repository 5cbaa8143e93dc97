//! `ledger serve [--port N] [--bind ADDR]`: the operator console (`/`, see `console/`) and the
//! audit HTTP API (`GET /audit/{id}`, answering exactly as the `audit_api` Lambda does) on one
//! port, over one store. Loopback by default; bound anywhere else it requires the bearer token
//! in `LEDGER_CONSOLE_TOKEN` on every request, or refuses to start.

use super::console::guard::{BearerToken, Csrf, TOKEN_VARIABLE};
use super::console::{self, Console};
use super::CliError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use sync_ledger::audit::answer;
use sync_ledger::config::{AwsConfig, StoreUrl};
use sync_ledger::ledger::{open_store, EventLog};
use sync_ledger::views::{open_views, ViewStore};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Port to listen on (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind. Anything but loopback requires LEDGER_CONSOLE_TOKEN.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
}

#[derive(Clone)]
struct Stores {
    log: Arc<dyn EventLog>,
    views: Arc<dyn ViewStore>,
}

/// The routes of the local audit API.
fn router(log: Arc<dyn EventLog>, views: Arc<dyn ViewStore>) -> Router {
    Router::new()
        .route("/audit/{id}", get(audit_route))
        .with_state(Stores { log, views })
}

async fn audit_route(State(stores): State<Stores>, Path(id): Path<String>) -> Response {
    let answer = answer(stores.log.as_ref(), stores.views.as_ref(), &id).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(answer.body)).into_response()
}

pub async fn run(store: &StoreUrl, args: &ServeArgs) -> Result<ExitCode, CliError> {
    // Checked before anything is opened: a console that would be open to the network
    // without a token never starts.
    let token = BearerToken::for_bind(args.bind, std::env::var(TOKEN_VARIABLE).ok())
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    // Loaded only by what needs it (a DynamoDB store, Parameter Store tokens), then shared.
    let aws = AwsConfig::lazy();
    let log = open_store(store, &aws).await?;
    let views = open_views(store, &aws).await?;
    // Redrive needs the external systems; without their configuration the console still
    // serves every page and says why Redrive is unavailable.
    let redrive = super::redrive::connector_effects(&aws)
        .await
        .map_err(|e| e.to_string());
    let console = Console {
        log: log.clone(),
        views: views.clone(),
        redrive,
        csrf: Csrf::default(),
        token,
    };
    let app = console::router(console, router(log, views));
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| CliError::Io {
            path: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| CliError::Io {
        path: addr.to_string(),
        source,
    })?;
    println!(
        "audit API listening on http://{local}/audit/{{id}} and the console on http://{local}/ (Ctrl-C to stop)"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            // Without a Ctrl-C handler the server runs until killed, which is fine too.
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|source| CliError::Io {
            path: local.to_string(),
            source,
        })?;
    Ok(ExitCode::SUCCESS)
}
