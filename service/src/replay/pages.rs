//! Reads the log's pages ahead of the folds: a task reads and decodes the next pages (on the
//! store's blocking thread) while the replay folds and writes the current one, so decoding
//! and folding run on two cores instead of taking turns on one. At most `AHEAD` pages wait
//! in the channel, so memory stays bounded whatever the log's size.

use super::ReplayError;
use crate::ledger::EventLog;
use chrono::{DateTime, Utc};
use projections::RecordedEvent;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Pages read ahead of the one being folded.
const AHEAD: usize = 2;

/// The pages of `read_all(from, ...)` after the global order key `after`, in order.
pub struct Pages {
    rx: mpsc::Receiver<Result<Vec<RecordedEvent>, ReplayError>>,
}

impl Pages {
    /// Starts reading; dropping `Pages` stops the reader at its next page.
    pub fn read_ahead(
        log: Arc<dyn EventLog>,
        from: Option<DateTime<Utc>>,
        mut after: Option<String>,
        page_size: usize,
    ) -> Self {
        let (tx, rx) = mpsc::channel(AHEAD);
        tokio::spawn(async move {
            loop {
                let page = match log.read_all(from, after.as_deref(), page_size).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let Some(last) = page.last() else {
                    return;
                };
                after = Some(last.global_order_key());
                if tx.send(Ok(page)).await.is_err() {
                    return;
                }
            }
        });
        Self { rx }
    }

    /// The next page; `None` at the end of the log.
    pub async fn next(&mut self) -> Option<Result<Vec<RecordedEvent>, ReplayError>> {
        self.rx.recv().await
    }
}
