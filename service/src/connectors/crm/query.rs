//! SOQL reads: `GET /services/data/vXX.X/query?q=<SOQL>`, then each `nextRecordsUrl` until
//! `done` (Salesforce REST API Developer Guide, "Execute a SOQL Query", "Query More Results").
//! Reads only: retried like every other call of the transport.

use super::super::error::ConnectorError;
use super::super::query_page::QueryPage;
use super::CrmClient;
use projections::CorrelationId;
use reqwest::Method;

impl CrmClient {
    /// The first page of a SOQL query.
    pub async fn query(
        &self,
        soql: &str,
        correlation_id: CorrelationId,
    ) -> Result<QueryPage, ConnectorError> {
        const OP: &str = "query";
        let path = format!("services/data/{}/query", self.api_version);
        let response = self
            .transport
            .send(super::ApiRequest {
                operation: OP,
                method: Method::GET,
                path,
                query: vec![("q", soql.to_string())],
                body: None,
                idempotency_key: None,
                headers: vec![],
                correlation_id,
            })
            .await?;
        QueryPage::read(&response.body, "totalSize", "nextRecordsUrl")
            .ok_or_else(|| self.decode(OP, &response, "query answer without records"))
    }

    /// The page at a `nextRecordsUrl` (`/services/data/vXX.X/query/<locator>`).
    pub async fn query_more(
        &self,
        next_records_url: &str,
        correlation_id: CorrelationId,
    ) -> Result<QueryPage, ConnectorError> {
        const OP: &str = "query_more";
        if !next_records_url.starts_with("/services/data/") {
            return Err(ConnectorError::InvalidRequest {
                operation: OP,
                field: "nextRecordsUrl",
                reason: "must be a /services/data/ path of this org".into(),
            });
        }
        let response = self
            .send(
                OP,
                Method::GET,
                next_records_url.trim_start_matches('/').to_string(),
                None,
                correlation_id,
            )
            .await?;
        QueryPage::read(&response.body, "totalSize", "nextRecordsUrl")
            .ok_or_else(|| self.decode(OP, &response, "query answer without records"))
    }
}
