//! A bounded walk over the log in its global order within a time window, for the pages that
//! look across traces (failures, reconciliation). The ledger has no index by event type, so
//! a page reads at most `MAX_SCANNED` events per request, one `read_all` page at a time (only
//! the caller's matches are kept), and hands back where to resume.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use projections::RecordedEvent;
use std::collections::HashMap;
use sync_ledger::ledger::{EventLog, LedgerError};

/// Events read per `read_all` call.
const READ_PAGE: usize = 500;
/// Most events one request reads.
pub const MAX_SCANNED: usize = 20_000;
/// The window when none is given.
const DEFAULT_DAYS: i64 = 7;

/// The time window of a scan, from the page's `since` / `until` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// `2026-11-26`, an RFC 3339 time, or `<n>h` / `<n>d` before now.
fn parse_time(field: &str, value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let value = value.trim();
    let relative = |unit: char| {
        value
            .strip_suffix(unit)
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| (0..=3650 * 24).contains(n))
    };
    if let Some(h) = relative('h') {
        return Ok(now - Duration::hours(h));
    }
    if let Some(d) = relative('d') {
        return Ok(now - Duration::days(d));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    Err(format!(
        "{field}: {value:?} is not a date (2026-11-26), an RFC 3339 time, or a span like 24h / 7d"
    ))
}

impl Window {
    /// The window named by `params` (`since`, `until`); errors name the parameter.
    pub fn from_params(
        params: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let since = match get("since") {
            Some(v) => parse_time("since", v, now)?,
            None => now - Duration::days(DEFAULT_DAYS),
        };
        let until = get("until")
            .map(|v| parse_time("until", v, now))
            .transpose()?;
        if until.is_some_and(|u| u < since) {
            return Err("until: must not be before since".to_string());
        }
        Ok(Self { since, until })
    }
}

/// Whether the caller wants the scan to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Where a scan ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanEnd {
    pub scanned: usize,
    /// Resume key (`global_order_key` of the last event looked at) when the scan stopped
    /// before the end of the window.
    pub resume_after: Option<String>,
}

/// Hands every event of `window` after `after` to `visit`, in global order.
pub async fn scan(
    log: &dyn EventLog,
    window: &Window,
    after: Option<&str>,
    mut visit: impl FnMut(&RecordedEvent) -> Flow,
) -> Result<ScanEnd, LedgerError> {
    let mut cursor = after.map(str::to_string);
    let mut scanned = 0;
    loop {
        let page = log
            .read_all(Some(window.since), cursor.as_deref(), READ_PAGE)
            .await?;
        let full = page.len() == READ_PAGE;
        for event in &page {
            if window.until.is_some_and(|u| event.recorded_at > u) {
                return Ok(ScanEnd {
                    scanned,
                    resume_after: None,
                });
            }
            scanned += 1;
            cursor = Some(event.global_order_key());
            if visit(event) == Flow::Stop || scanned >= MAX_SCANNED {
                return Ok(ScanEnd {
                    scanned,
                    resume_after: cursor,
                });
            }
        }
        if !full {
            return Ok(ScanEnd {
                scanned,
                resume_after: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_take_dates_times_and_spans_and_name_a_bad_field() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut p = HashMap::new();
        assert_eq!(
            Window::from_params(&p, now).unwrap().since,
            now - Duration::days(7)
        );
        p.insert("since".to_string(), "24h".to_string());
        assert_eq!(
            Window::from_params(&p, now).unwrap().since,
            now - Duration::hours(24)
        );
        p.insert("since".to_string(), "2026-11-26".to_string());
        p.insert("until".to_string(), "2026-11-26T18:00:00Z".to_string());
        let w = Window::from_params(&p, now).unwrap();
        assert_eq!(w.since.to_rfc3339(), "2026-11-26T00:00:00+00:00");
        assert!(w.until.is_some());
        p.insert("until".to_string(), "yesterday".to_string());
        let err = Window::from_params(&p, now).unwrap_err();
        assert!(err.starts_with("until: "), "{err}");
        p.insert("until".to_string(), "2026-11-25".to_string());
        assert!(Window::from_params(&p, now)
            .unwrap_err()
            .contains("before since"));
    }
}
