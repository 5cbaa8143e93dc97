//! ZOQL reads: `POST /v1/action/query` `{"queryString"}`, then `POST /v1/action/queryMore`
//! `{"queryLocator"}` until `done` (Zuora v1 API reference, "Actions"). Both are reads, so a
//! retry after a timeout is harmless even though they are POSTs.

use super::super::error::ConnectorError;
use super::super::query_page::QueryPage;
use super::BillingClient;
use projections::CorrelationId;
use reqwest::Method;
use serde_json::json;

impl BillingClient {
    /// The first page of a ZOQL query.
    pub async fn query(
        &self,
        zoql: &str,
        correlation_id: CorrelationId,
    ) -> Result<QueryPage, ConnectorError> {
        self.page(
            "query",
            "v1/action/query",
            json!({"queryString": zoql}),
            correlation_id,
        )
        .await
    }

    /// The next page of a query, by its `queryLocator`.
    pub async fn query_more(
        &self,
        query_locator: &str,
        correlation_id: CorrelationId,
    ) -> Result<QueryPage, ConnectorError> {
        let body = json!({"queryLocator": query_locator});
        self.page("query_more", "v1/action/queryMore", body, correlation_id)
            .await
    }

    async fn page(
        &self,
        operation: &'static str,
        path: &str,
        body: serde_json::Value,
        correlation_id: CorrelationId,
    ) -> Result<QueryPage, ConnectorError> {
        let response = self
            .send(
                operation,
                Method::POST,
                path.to_string(),
                Some(&body),
                None,
                correlation_id,
            )
            .await?;
        QueryPage::read(&response.body, "size", "queryLocator")
            .ok_or_else(|| self.decode(operation, &response, "query answer without records"))
    }
}
