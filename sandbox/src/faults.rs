//! Fault injection for the sandbox: the knobs (latency, 429 with `Retry-After`, 5xx, stalled
//! answers, duplicate deliveries) and the middleware applying them to one system's routes.
//! Knobs are settable at start and at runtime; admin routes are never faulted.

use super::state::{api_error, SharedState, System};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Faults for one system. Counters (`*_next`) count down as calls consume them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added before every answer.
    pub latency_ms: u64,
    /// The next N calls get 429 with `Retry-After: retry_after_secs`.
    pub throttle_next: u32,
    pub retry_after_secs: u64,
    /// The next N calls get 503.
    pub fail_next: u32,
    /// Fraction (0..=1) of calls answered 500, at random.
    pub error_rate: f64,
    /// Fraction (0..=1) of calls answered 429 with `Retry-After: retry_after_secs`, at random
    /// (a sustained throttling storm, where `throttle_next` is a burst).
    pub throttle_rate: f64,
    /// The next N calls are processed, then their answer is held for `stall_ms` — what a
    /// client sees as a timeout after the server already acted.
    pub stall_next: u32,
    pub stall_ms: u64,
    /// Billing: a request carrying an `Idempotency-Key` stays in progress this long after its
    /// work is done (a retry with the key meanwhile gets 409), then its answer is saved.
    pub idempotency_hold_ms: u64,
    /// Every emitted event is delivered twice (at-least-once delivery).
    pub duplicate_deliveries: bool,
}

/// Faults per system.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultSettings {
    pub crm: Faults,
    pub billing: Faults,
}

impl FaultSettings {
    pub fn get(&self, system: System) -> &Faults {
        match system {
            System::Crm => &self.crm,
            System::Billing => &self.billing,
        }
    }

    pub fn get_mut(&mut self, system: System) -> &mut Faults {
        match system {
            System::Crm => &mut self.crm,
            System::Billing => &mut self.billing,
        }
    }
}

enum Verdict {
    Throttle(u64),
    Fail,
    RandomError,
    Pass { stall: Option<Duration> },
}

/// Middleware: applies `system`'s faults to the request.
pub(crate) async fn apply(
    State((state, system)): State<(SharedState, System)>,
    request: Request,
    next: Next,
) -> Response {
    let (latency, verdict) = {
        let mut inner = state.lock();
        let faults = inner.faults.get_mut(system);
        let latency = Duration::from_millis(faults.latency_ms);
        let verdict = if faults.throttle_next > 0 {
            faults.throttle_next -= 1;
            Verdict::Throttle(faults.retry_after_secs)
        } else if faults.fail_next > 0 {
            faults.fail_next -= 1;
            Verdict::Fail
        } else if faults.throttle_rate > 0.0
            && rand::rng().random_bool(faults.throttle_rate.min(1.0))
        {
            Verdict::Throttle(faults.retry_after_secs)
        } else if faults.error_rate > 0.0 && rand::rng().random_bool(faults.error_rate.min(1.0)) {
            Verdict::RandomError
        } else if faults.stall_next > 0 {
            faults.stall_next -= 1;
            Verdict::Pass {
                stall: Some(Duration::from_millis(faults.stall_ms)),
            }
        } else {
            Verdict::Pass { stall: None }
        };
        (latency, verdict)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match verdict {
        Verdict::Throttle(secs) => {
            let mut response = api_error(
                system,
                StatusCode::TOO_MANY_REQUESTS,
                "REQUEST_LIMIT_EXCEEDED",
                "50000070",
                "Too many requests; retry later",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).expect("digits are a valid header"),
            );
            response
        }
        Verdict::Fail => api_error(
            system,
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "50000061",
            "Service temporarily unavailable",
        ),
        Verdict::RandomError => api_error(
            system,
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN_EXCEPTION",
            "50000060",
            "An unexpected error occurred",
        ),
        Verdict::Pass { stall } => {
            let response = next.run(request).await;
            if let Some(stall) = stall {
                // The work is done and recorded; only the answer is late.
                tokio::time::sleep(stall).await;
            }
            response.into_response()
        }
    }
}
