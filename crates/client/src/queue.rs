//! The ECC queue and actions: records, submissions, results, streamed output, cancel.

use crate::*;

impl ApiClient {
    /// Inserts an output record.
    pub async fn insert_output(&self, new: &NewOutput) -> Result<EccRecord, ClientError> {
        let (_, r) = self
            .call(Method::POST, "api/v1/ecc", Some(new), Self::DEFAULT_TIMEOUT)
            .await?;
        Ok(r)
    }

    /// Reads one record.
    pub async fn get_record(&self, id: &str) -> Result<EccRecord, ClientError> {
        let (_, r) = self
            .call::<(), _>(
                Method::GET,
                &format!("api/v1/ecc/{}", encode(id)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(r)
    }

    /// Lists records.
    pub async fn list_records(&self, q: &RecordQuery) -> Result<RecordPage, ClientError> {
        let query = serde_urlencoded_query(q);
        let (_, p) = self
            .call::<(), _>(
                Method::GET,
                &format!("api/v1/ecc{query}"),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(p)
    }

    /// Runs a REST action, waiting up to `wait` for its result.
    pub async fn rest_action(
        &self,
        action: &RestAction,
        wait: Duration,
    ) -> Result<ActionOutcome, ClientError> {
        self.action(Method::POST, "api/v1/actions/rest", Some(action), wait)
            .await
    }

    /// Runs a command on a MID, waiting up to `wait` for its result.
    pub async fn command_action(
        &self,
        action: &CommandAction,
        wait: Duration,
    ) -> Result<ActionOutcome<CommandResponse>, ClientError> {
        self.action(Method::POST, "api/v1/actions/command", Some(action), wait)
            .await
    }

    /// Runs the action `name` (`POST /api/v1/actions/{name}`) with any body, waiting up
    /// to `wait` for its result: what `ctl run NAME` uses for an action it knows only
    /// from the OpenAPI document.
    pub async fn run_action<B: Serialize, R: DeserializeOwned>(
        &self,
        name: &str,
        body: &B,
        wait: Duration,
    ) -> Result<ActionOutcome<R>, ClientError> {
        let path = format!("api/v1/actions/{}", encode(name));
        self.action(Method::POST, &path, Some(body), wait).await
    }

    /// The instance's OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("api/v1/openapi.json").await
    }

    /// Cancels an output: it is `cancelled` at once if it had not started, else its
    /// MID is told to stop it (the record says which, by its state).
    pub async fn cancel_record(&self, id: &str) -> Result<EccRecord, ClientError> {
        let (_, r) = self
            .call::<(), _>(
                Method::POST,
                &format!("api/v1/ecc/{}/cancel", encode(id)),
                None,
                Self::DEFAULT_TIMEOUT,
            )
            .await?;
        Ok(r)
    }

    /// Reads a command's streamed output (`GET /api/v1/actions/{id}/output`): the
    /// chunks after `after` (all with `None`); with `follow`, the answer stays open
    /// until the output finished and ends with an `end` line.
    pub async fn follow_output(
        &self,
        id: &str,
        after: Option<u64>,
        follow: bool,
    ) -> Result<crate::follow::OutputFollower, ClientError> {
        let mut url = self
            .base
            .join(&format!("api/v1/actions/{}/output", encode(id)))
            .map_err(|_| ClientError::BadUrl(format!("{}api/v1/actions/{id}/output", self.base)))?;
        {
            let mut query = url.query_pairs_mut();
            if let Some(after) = after {
                query.append_pair("after", &after.to_string());
            }
            if follow {
                query.append_pair("follow", "1");
            }
        }
        // No overall timeout: a followed command may run for hours.
        let resp = self
            .http
            .get(url.clone())
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.to_string(),
                source: source.without_url(),
            })?;
        if !resp.status().is_success() {
            return Err(answer_json::<serde::de::IgnoredAny>(&url, resp)
                .await
                .err()
                .unwrap_or_else(|| ClientError::Unexpected {
                    url: url.to_string(),
                    detail: "an error status with a success body".into(),
                }));
        }
        Ok(crate::follow::OutputFollower::new(resp, url.to_string()))
    }

    /// Runs a SOAP action, waiting up to `wait` for its result.
    pub async fn soap_action(
        &self,
        action: &SoapAction,
        wait: Duration,
    ) -> Result<ActionOutcome<SoapResponse>, ClientError> {
        self.action(Method::POST, "api/v1/actions/soap", Some(action), wait)
            .await
    }

    /// An action's result by output id, waiting up to `wait` for it (`R`:
    /// [`RestResponse`] or [`SoapResponse`], by the action's kind).
    pub async fn get_action<R: DeserializeOwned>(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<ActionOutcome<R>, ClientError> {
        let path = format!("api/v1/actions/{}", encode(id));
        self.action::<(), R>(Method::GET, &path, None, wait).await
    }
}
