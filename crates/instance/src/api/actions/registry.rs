//! The instance's one table of actions: name → [`Action`]. The route
//! `POST /api/v1/actions/{name}` finds its action here, parses the body as the action's
//! type (errors name the field, as everywhere in the API) and runs it through
//! [`super::act`], which gives every action the same wait, `Idempotency-Key` and answer.
//! The OpenAPI document's action entries are generated from the same table.

use super::super::AppState;
use super::super::error::ApiError;
use super::super::extract::{ApiJson, ApiQuery};
use super::{WaitQuery, act};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::response::Response;
use futures::future::BoxFuture;
use openmid_proto::api::NewOutput;
use openmid_proto::probe::Contract;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use utoipa::ToSchema;

/// Every action, one line each.
static ACTIONS: [&dyn Runs; 10] = [
    &Registered::<super::rest::RestCall>(PhantomData),
    &Registered::<super::soap::SoapCall>(PhantomData),
    &Registered::<super::command::CommandRun>(PhantomData),
    &Registered::<super::ssh::SshRun>(PhantomData),
    &Registered::<super::sql::SqlRun>(PhantomData),
    &Registered::<super::ldap::LdapSearch>(PhantomData),
    &Registered::<super::file_import::FileRead>(PhantomData),
    &Registered::<super::discovery::PingHosts>(PhantomData),
    &Registered::<super::discovery::ScanPorts>(PhantomData),
    &Registered::<super::snmp::SnmpRead>(PhantomData),
];

/// One action of the API.
pub trait Action: Send + Sync + 'static {
    /// Its name: the route is `POST /api/v1/actions/{NAME}`.
    const NAME: &'static str;
    /// One line for the OpenAPI document and `ctl run --help`.
    const SUMMARY: &'static str;
    /// What a 200 answer means, for the document.
    const FINISHED: &'static str;
    /// The output streams its jobs send while they run (`stdout`, `stderr`, `rows`),
    /// which `GET /api/v1/actions/{id}/output` follows; `ctl run` follows them by
    /// default.
    const STREAMS: &'static [&'static str] = &[];
    /// The topic it runs (its response is the topic's).
    type Contract: Contract<Response: ToSchema>;
    /// The request body.
    type Body: DeserializeOwned + Serialize + ToSchema + Send + 'static;
    /// Turns a body into the output to queue.
    fn build(body: Self::Body, state: &AppState) -> BoxFuture<'_, Result<NewOutput, ApiError>>;
}

/// What the OpenAPI generator learns of an action.
pub struct Documented {
    /// [`Action::NAME`].
    pub name: &'static str,
    /// [`Action::SUMMARY`].
    pub summary: &'static str,
    /// [`Action::FINISHED`].
    pub finished: &'static str,
    /// [`Action::STREAMS`].
    pub streams: &'static [&'static str],
    /// The body's schema name and every schema it needs.
    pub body: (
        String,
        Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ),
    /// The response's schema name and every schema it needs.
    pub response: (
        String,
        Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ),
}

trait Runs: Send + Sync {
    fn name(&self) -> &'static str;
    fn run(&self, state: AppState, req: Request) -> BoxFuture<'static, Result<Response, ApiError>>;
    fn document(&self) -> Documented;
}

struct Registered<A>(PhantomData<fn() -> A>);

impl<A: Action> Runs for Registered<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn run(&self, state: AppState, req: Request) -> BoxFuture<'static, Result<Response, ApiError>> {
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let ApiQuery(q) = ApiQuery::<WaitQuery>::from_request_parts(&mut parts, &state).await?;
            let headers = parts.headers.clone();
            let req = Request::from_parts(parts, body);
            let ApiJson(body) = ApiJson::<A::Body>::from_request(req, &state).await?;
            let route = format!("actions/{}", A::NAME);
            act(&state, &headers, &q, &route, body, |b| A::build(b, &state)).await
        })
    }

    fn document(&self) -> Documented {
        Documented {
            name: A::NAME,
            summary: A::SUMMARY,
            finished: A::FINISHED,
            streams: A::STREAMS,
            body: schemas::<A::Body>(),
            response: schemas::<<A::Contract as Contract>::Response>(),
        }
    }
}

fn schemas<T: ToSchema>() -> (
    String,
    Vec<(
        String,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    )>,
) {
    let mut all = vec![(T::name().to_string(), T::schema())];
    T::schemas(&mut all);
    (T::name().to_string(), all)
}

/// `POST /api/v1/actions/{name}`.
pub async fn run_action(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let action = ACTIONS.iter().find(|a| a.name() == name).ok_or_else(|| {
        let names: Vec<&str> = ACTIONS.iter().map(|a| a.name()).collect();
        ApiError::not_found(format!(
            "no action `{name}`; the actions are: {}",
            names.join(", ")
        ))
    })?;
    action.run(state, req).await
}

/// Every action, as the OpenAPI document describes it.
pub fn documented() -> Vec<Documented> {
    ACTIONS.iter().map(|a| a.document()).collect()
}
