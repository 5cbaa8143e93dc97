//! How many calls one process has in flight on each external system at once. The projector
//! applies independent streams concurrently; these semaphores (held by its effects) keep one
//! process inside the systems' documented concurrency limits whatever the batch holds.
//!
//! Documented limits (per tenant, all callers together): Zuora v1 allows 40 concurrent
//! subscribe/amend requests; Salesforce allows 25 concurrent long-running (> 20 s) requests
//! in production orgs. The defaults take half of each: two projectors (account and order
//! sync) call both systems, one invocation per stream shard each.

use crate::config::ConfigError;
use projections::commands::Call;
use std::sync::Arc;
use tokio::sync::{Semaphore, SemaphorePermit};

pub const BILLING_MAX_CONCURRENT_ENV: &str = "BILLING_MAX_CONCURRENT_CALLS";
pub const CRM_MAX_CONCURRENT_ENV: &str = "CRM_MAX_CONCURRENT_CALLS";

/// Zuora's documented tenant-wide concurrency limit for subscribe/amend calls.
pub const BILLING_DOCUMENTED_LIMIT: usize = 40;
/// Salesforce's documented limit of concurrent long-running requests per org.
pub const CRM_DOCUMENTED_LIMIT: usize = 25;

/// Calls in flight per system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub billing: usize,
    pub crm: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            billing: BILLING_DOCUMENTED_LIMIT / 2,
            crm: CRM_DOCUMENTED_LIMIT / 2,
        }
    }
}

impl CallLimits {
    /// `BILLING_MAX_CONCURRENT_CALLS` / `CRM_MAX_CONCURRENT_CALLS`, each 1..=the documented
    /// limit; the defaults when unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            billing: read(
                &lookup,
                BILLING_MAX_CONCURRENT_ENV,
                defaults.billing,
                BILLING_DOCUMENTED_LIMIT,
            )?,
            crm: read(
                &lookup,
                CRM_MAX_CONCURRENT_ENV,
                defaults.crm,
                CRM_DOCUMENTED_LIMIT,
            )?,
        })
    }
}

fn read(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &str,
    default: usize,
    documented: usize,
) -> Result<usize, ConfigError> {
    let Some(value) = lookup(variable).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=documented).contains(&n) => Ok(n),
        _ => Err(ConfigError {
            variable: variable.to_string(),
            value,
            reason: format!(
                "must be a whole number from 1 to {documented} (the system's documented concurrency limit)"
            ),
        }),
    }
}

/// One semaphore per system, shared by every call of the process.
#[derive(Debug, Clone)]
pub struct CallLimiter {
    billing: Arc<Semaphore>,
    crm: Arc<Semaphore>,
}

impl CallLimiter {
    pub fn new(limits: CallLimits) -> Self {
        Self {
            billing: Arc::new(Semaphore::new(limits.billing.max(1))),
            crm: Arc::new(Semaphore::new(limits.crm.max(1))),
        }
    }

    /// Waits for a free slot on the system `call` goes to; the slot frees when the permit
    /// is dropped (after the call, its retries included).
    pub async fn acquire(&self, call: &Call) -> SemaphorePermit<'_> {
        let semaphore = match call {
            Call::Billing(_) => &self.billing,
            Call::Crm(_) => &self.crm,
        };
        semaphore
            .acquire()
            .await
            .expect("the limiter never closes its semaphores")
    }
}

impl Default for CallLimiter {
    fn default() -> Self {
        Self::new(CallLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_default_inside_the_documented_ones_and_reject_more() {
        let none = |_: &str| None;
        assert_eq!(
            CallLimits::from_lookup(none).unwrap(),
            CallLimits {
                billing: 20,
                crm: 12
            }
        );
        let set = |k: &str| (k == BILLING_MAX_CONCURRENT_ENV).then(|| "41".to_string());
        let e = CallLimits::from_lookup(set).unwrap_err();
        assert_eq!(e.variable, BILLING_MAX_CONCURRENT_ENV);
        assert!(e.reason.contains("1 to 40"), "{e}");
        let set = |k: &str| (k == CRM_MAX_CONCURRENT_ENV).then(|| "0".to_string());
        assert_eq!(
            CallLimits::from_lookup(set).unwrap_err().variable,
            CRM_MAX_CONCURRENT_ENV
        );
        let set = |k: &str| (k == CRM_MAX_CONCURRENT_ENV).then(|| "25".to_string());
        assert_eq!(CallLimits::from_lookup(set).unwrap().crm, 25);
    }
}
