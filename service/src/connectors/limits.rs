//! API usage the systems report on every answer: Salesforce's `Sforce-Limit-Info:
//! api-usage=N/M` (calls used in the last 24 hours of the org's daily allocation) and Zuora's
//! `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`. Each client keeps the latest
//! reading (one small value, replaced on every answer) for the projector to report and for a
//! budget to consult.

use reqwest::header::HeaderMap;
use std::sync::Mutex;

/// One reading of a system's API allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiUsage {
    /// Requests used of `limit` in the current window (CRM: the last 24 hours).
    pub used: u64,
    pub limit: u64,
    /// Seconds until the window resets, where the system says (Zuora).
    pub reset_secs: Option<u64>,
}

impl ApiUsage {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Remaining allowance as a percentage of the limit (0 when the limit is 0).
    pub fn remaining_percent(&self) -> f64 {
        if self.limit == 0 {
            0.0
        } else {
            self.remaining() as f64 * 100.0 / self.limit as f64
        }
    }

    /// `Sforce-Limit-Info: api-usage=25/15000` (other `name=N/M` parts may come first).
    pub fn from_sforce_limit_info(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get("sforce-limit-info")?.to_str().ok()?;
        let usage = value
            .split(',')
            .find_map(|part| part.trim().strip_prefix("api-usage="))?;
        let (used, limit) = usage.split_once('/')?;
        Some(Self {
            used: used.trim().parse().ok()?,
            limit: limit.trim().parse().ok()?,
            reset_secs: None,
        })
    }

    /// Zuora's `RateLimit-Limit` (its first number: `40000` or `40000, 40000;window=3600`),
    /// `RateLimit-Remaining` and `RateLimit-Reset`.
    pub fn from_rate_limit_headers(headers: &HeaderMap) -> Option<Self> {
        let number = |name: &str| -> Option<u64> {
            let text = headers.get(name)?.to_str().ok()?;
            let first = text.split([',', ';']).next()?.trim();
            first.parse().ok()
        };
        let limit = number("ratelimit-limit")?;
        let remaining = number("ratelimit-remaining")?;
        Some(Self {
            used: limit.saturating_sub(remaining),
            limit,
            reset_secs: number("ratelimit-reset"),
        })
    }

    /// Whichever of the two shapes `headers` carries.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Self::from_sforce_limit_info(headers).or_else(|| Self::from_rate_limit_headers(headers))
    }
}

/// The latest reading of one client.
#[derive(Debug, Default)]
pub struct UsageGauge(Mutex<Option<ApiUsage>>);

impl UsageGauge {
    pub fn observe(&self, headers: &HeaderMap) {
        if let Some(usage) = ApiUsage::from_headers(headers) {
            *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(usage);
        }
    }

    pub fn latest(&self) -> Option<ApiUsage> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn reads_salesforce_api_usage() {
        let usage = ApiUsage::from_headers(&headers(&[(
            "sforce-limit-info",
            "per-app-api-usage=5/250(appName=x), api-usage=18/15000",
        )]))
        .unwrap();
        assert_eq!(
            (usage.used, usage.limit, usage.remaining()),
            (18, 15000, 14982)
        );
        assert!(
            ApiUsage::from_headers(&headers(&[("sforce-limit-info", "api-usage=x/1")])).is_none()
        );
    }

    #[test]
    fn reads_zuora_rate_limits() {
        let usage = ApiUsage::from_headers(&headers(&[
            ("ratelimit-limit", "40000, 40000;window=3600"),
            ("ratelimit-remaining", "39990"),
            ("ratelimit-reset", "120"),
        ]))
        .unwrap();
        assert_eq!(usage.used, 10);
        assert_eq!(usage.reset_secs, Some(120));
        assert!((usage.remaining_percent() - 99.975).abs() < 1e-9);
        assert_eq!(ApiUsage::from_headers(&HeaderMap::new()), None);
    }
}
