//! Outbound connectors: the CRM (Salesforce REST shape) and Billing (Zuora v1 shape) HTTP
//! clients, the retry/backoff policy they share, and the API token provider. They execute
//! calls and classify failures; they never decide what to sync (that is `projections`).

pub mod billing;
pub mod concurrency;
pub mod config;
pub mod crm;
pub mod error;
pub mod http;
pub mod limits;
pub mod oauth;
pub mod params;
pub mod query_page;
pub mod token;

pub use billing::BillingClient;
pub use crm::CrmClient;
pub use error::ConnectorError;
pub use http::{ClientConfig, IdempotencyKey, RetryPolicy};
pub use query_page::QueryPage;
pub use token::{ApiToken, ServiceName, TokenError, TokenProvider, TokenSource};

/// The origin marker written onto every object we create or change in CRM/Billing, so the
/// change coming back as that system's event is recognised as our own echo.
pub const ORIGIN_MARKER: &str = "sync-ledger";
