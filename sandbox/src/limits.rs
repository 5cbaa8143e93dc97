//! API limits as the real systems report and enforce them. CRM: every API answer carries
//! `Sforce-Limit-Info: api-usage=N/M` (calls used in the last 24 hours / the org's daily
//! allocation); past the allocation a call is refused with 403 `REQUEST_LIMIT_EXCEEDED`
//! ("TotalRequests Limit exceeded.") — Salesforce REST API Developer Guide, "Status Codes and
//! Error Responses" and "API Request Limits and Allocations". Billing: every answer carries
//! Zuora's `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds to the
//! window's end) — Zuora "Rate limits". The sandbox reports Billing's, it does not refuse.

use super::state::{api_error, SharedState, System};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The allocations the sandbox enforces or reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiLimits {
    /// CRM API calls allowed per 24 hours (an Enterprise org's base allocation).
    pub crm_daily_allocation: u64,
    /// Billing requests per window, and the window.
    pub billing_per_window: u64,
    pub billing_window_secs: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            crm_daily_allocation: 100_000,
            billing_per_window: 40_000,
            billing_window_secs: 3600,
        }
    }
}

/// What has been used of them.
#[derive(Debug, Clone)]
pub(crate) struct ApiUsage {
    pub limits: ApiLimits,
    pub crm_used: u64,
    pub billing_window_start: Instant,
    pub billing_used: u64,
}

impl ApiUsage {
    pub fn new(limits: ApiLimits) -> Self {
        Self {
            limits,
            crm_used: 0,
            billing_window_start: Instant::now(),
            billing_used: 0,
        }
    }
}

fn header(response: &mut Response, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), value);
    }
}

/// Middleware: counts the call against `system`'s limits and reports them on the answer.
pub(crate) async fn apply(
    State((state, system)): State<(SharedState, System)>,
    request: Request,
    next: Next,
) -> Response {
    match system {
        System::Crm => {
            let (allowed, used, allocation) = {
                let mut inner = state.lock();
                let usage = &mut inner.usage;
                let allocation = usage.limits.crm_daily_allocation;
                let allowed = usage.crm_used < allocation;
                if allowed {
                    usage.crm_used += 1;
                }
                (allowed, usage.crm_used, allocation)
            };
            let mut response = if allowed {
                next.run(request).await
            } else {
                api_error(
                    System::Crm,
                    StatusCode::FORBIDDEN,
                    "REQUEST_LIMIT_EXCEEDED",
                    "",
                    "TotalRequests Limit exceeded.",
                )
            };
            header(
                &mut response,
                "sforce-limit-info",
                format!("api-usage={used}/{allocation}"),
            );
            response
        }
        System::Billing => {
            let (limit, remaining, reset) = {
                let mut inner = state.lock();
                let usage = &mut inner.usage;
                let window = Duration::from_secs(usage.limits.billing_window_secs.max(1));
                if usage.billing_window_start.elapsed() >= window {
                    usage.billing_window_start = Instant::now();
                    usage.billing_used = 0;
                }
                usage.billing_used += 1;
                let limit = usage.limits.billing_per_window;
                let reset = window.saturating_sub(usage.billing_window_start.elapsed());
                (
                    limit,
                    limit.saturating_sub(usage.billing_used),
                    reset.as_secs(),
                )
            };
            let mut response = next.run(request).await;
            header(&mut response, "ratelimit-limit", limit.to_string());
            header(&mut response, "ratelimit-remaining", remaining.to_string());
            header(&mut response, "ratelimit-reset", reset.to_string());
            response
        }
    }
}
