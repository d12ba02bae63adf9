//! Metric collection: scrape targets, range queries, series.

use crate::*;
use openmid_proto::metrics::{
    NewScrapeTarget, QueryRangeResponse, ScrapeTargetView, SeriesResponse,
};

impl ApiClient {
    /// Sets a scrape target (replacing one of the same agent and name).
    pub async fn put_scrape_target(
        &self,
        target: &NewScrapeTarget,
    ) -> Result<ScrapeTargetView, ClientError> {
        self.send(Method::POST, "api/v1/metrics/targets", target)
            .await
    }

    /// Scrape targets, of one agent when given.
    pub async fn list_scrape_targets(
        &self,
        agent: Option<&str>,
    ) -> Result<Vec<ScrapeTargetView>, ClientError> {
        let path = match agent {
            Some(agent) => format!("api/v1/metrics/targets?agent={}", encode(agent)),
            None => "api/v1/metrics/targets".to_string(),
        };
        self.get(&path).await
    }

    /// One scrape target.
    pub async fn get_scrape_target(
        &self,
        agent: &str,
        name: &str,
    ) -> Result<ScrapeTargetView, ClientError> {
        self.get(&format!(
            "api/v1/metrics/targets/{}/{}",
            encode(agent),
            encode(name)
        ))
        .await
    }

    /// Removes a scrape target.
    pub async fn delete_scrape_target(&self, agent: &str, name: &str) -> Result<(), ClientError> {
        self.delete(&format!(
            "api/v1/metrics/targets/{}/{}",
            encode(agent),
            encode(name)
        ))
        .await
    }

    /// A range query (`start`, `end` as RFC 3339 or unix seconds; `step` a duration
    /// or seconds), answered as Prometheus answers it.
    pub async fn query_range(
        &self,
        query: &str,
        start: &str,
        end: &str,
        step: &str,
    ) -> Result<QueryRangeResponse, ClientError> {
        self.get(&format!(
            "api/v1/metrics/query_range?query={}&start={}&end={}&step={}",
            encode(query),
            encode(start),
            encode(end),
            encode(step)
        ))
        .await
    }

    /// The raw samples of a range selector (`name{…}[5m]`) at `time` (now when `None`).
    pub async fn query_samples(
        &self,
        query: &str,
        time: Option<&str>,
    ) -> Result<QueryRangeResponse, ClientError> {
        let mut path = format!("api/v1/metrics/query?query={}", encode(query));
        if let Some(time) = time {
            path.push_str(&format!("&time={}", encode(time)));
        }
        self.get(&path).await
    }

    /// The series a selector matches.
    pub async fn series(&self, selector: &str) -> Result<SeriesResponse, ClientError> {
        self.get(&format!(
            "api/v1/metrics/series?match[]={}",
            encode(selector)
        ))
        .await
    }

    /// A metrics API path with its query string as given (`query_range?…`), its
    /// answer as JSON: for callers that build Prometheus-style queries themselves.
    pub async fn metrics_get(
        &self,
        path_and_query: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("api/v1/metrics/{path_and_query}")).await
    }
}
