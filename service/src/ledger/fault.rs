//! `AppendFault`: a test seam that makes one append stop part-way, as an outage or a killed
//! process between two writes would. Every store holds one, disarmed (it then costs one
//! uncontended lock per write); the conformance suite arms it to prove that retrying the same
//! call completes an append that failed in the middle. It is not an SDK mock: the store's
//! real writes before the fault stay written (DynamoDB: the chunks already committed) or are
//! rolled back by the store itself (SQLite: the one append transaction).

use std::sync::{Arc, Mutex, PoisonError};

use super::LedgerError;

/// Shared by every clone of a store: arming it on one clone arms the store.
#[derive(Debug, Clone, Default)]
pub struct AppendFault {
    /// `Some(n)`: the next append that has written `n` events fails before writing more.
    armed: Arc<Mutex<Option<usize>>>,
}

impl AppendFault {
    /// The next append that has written `events` of its events fails (once) with a transient
    /// `LedgerError::Unavailable` before it writes the rest.
    pub fn fail_after_events(&self, events: usize) {
        *self.armed.lock().unwrap_or_else(PoisonError::into_inner) = Some(events);
    }

    /// Called by a store before it writes more of an append's events, with how many of them
    /// this call has written so far. Fires once, then disarms itself.
    pub(crate) fn before_write(&self, written: usize) -> Result<(), LedgerError> {
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        match *armed {
            Some(after) if written >= after => {
                *armed = None;
                Err(LedgerError::Unavailable(format!(
                    "injected fault: the append stopped after writing {written} events"
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disarmed_fault_never_fires() {
        let fault = AppendFault::default();
        for written in [0, 1, 50, usize::MAX] {
            assert!(fault.before_write(written).is_ok());
        }
    }

    #[test]
    fn an_armed_fault_fires_once_when_enough_events_are_written() {
        let fault = AppendFault::default();
        fault.clone().fail_after_events(50);
        assert!(fault.before_write(0).is_ok());
        assert!(fault.before_write(49).is_ok());
        let err = fault.before_write(50).unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert!(err.to_string().contains("after writing 50 events"), "{err}");
        assert!(fault.before_write(50).is_ok(), "fires once");
    }
}
