//! Requests, the response envelope, and retries.
//!
//! The contract: every request carries `x-api-key`, `hopsai-api-version: v1` and a JSON content
//! type; HTTP 403 means the key has no access (the body may be plain text); otherwise the body is
//! a JSON envelope whose `code` decides: 2xx is success, 404 is "absent" (not an error), anything
//! else an error whose text is `message`. Throttling (429), 5xx and connection errors are retried
//! with jittered backoff, a bounded number of times, and never past the client's deadline
//! ([`Client::within`]). Creating is not idempotent, so a create is never simply repeated: see
//! [`Client::create_cluster`].

use crate::key::ApiKey;
use crate::model::{
    Autoscale, AutoscaleRequest, Cluster, CreateRequest, ModifyInstanceTypeRequest, NewCluster,
    NodeInfo, NodeType, Ports, PortsRequest, UpgradeRequest, Version, Workers, WorkersRequest,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

pub const DEFAULT_BASE_URL: &str = "https://api.hopsworks.ai";
const USER_AGENT: &str = concat!("hopsworks-eks-stack/", env!("CARGO_PKG_VERSION"));
/// The most one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Less time than this left is no time for another attempt.
const MIN_ATTEMPT: Duration = Duration::from_millis(50);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Hopsworks.ai refused the API key{origin} (HTTP {status}): it has no access to \
         hopsworks.ai{detail}; check the key, or create a new one in Hopsworks.ai (Settings → API \
         keys)"
    )]
    Forbidden {
        status: u16,
        origin: String,
        detail: String,
    },
    #[error("Hopsworks.ai answered {code}: {message}")]
    Api { code: i64, message: String },
    #[error("Hopsworks.ai answered HTTP {status} with a body that is not JSON")]
    NotJson { status: u16 },
    #[error("Hopsworks.ai is throttling or failing: {last} (gave up after {attempts} attempts)")]
    Exhausted { attempts: u32, last: String },
    /// The deadline given with [`Client::within`] came before an answer (or before the next
    /// attempt could start): the caller's time ran out, not necessarily Hopsworks.ai's patience.
    #[error("Hopsworks.ai gave no answer in the time left{}", last_error(.last))]
    OutOfTime { last: String },
    /// A change ([`Client::add_workers`] and the other day-2 calls) sent but not clearly answered
    /// (a 5xx, a dropped connection, a timeout): Hopsworks.ai may have applied it, so it is not
    /// sent again; the caller reads the cluster to learn what happened.
    #[error("Hopsworks.ai gave no clear answer to {what}, which it may have applied: {last}")]
    Unanswered { what: String, last: String },
    #[error("the Hopsworks.ai client could not be built: {0}")]
    Setup(String),
}

fn last_error(last: &str) -> String {
    if last.is_empty() {
        String::new()
    } else {
        format!(" (last: {last})")
    }
}

impl Error {
    /// The code of an API error (400, 409, …).
    pub fn code(&self) -> Option<i64> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the call ran out of the time it was given ([`Client::within`]): worth trying again
    /// with more time, in a new invocation, rather than a failure.
    pub fn is_out_of_time(&self) -> bool {
        matches!(self, Error::OutOfTime { .. })
    }

    /// Whether a change was sent without a clear answer ([`Error::Unanswered`]): it may have been
    /// applied.
    pub fn is_unanswered(&self) -> bool {
        matches!(self, Error::Unanswered { .. })
    }

    /// Whether Hopsworks.ai refused the key (HTTP 401 or 403).
    pub fn is_key_refused(&self) -> bool {
        matches!(self, Error::Forbidden { .. })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Envelope {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) payload: Option<Value>,
}

/// Retry policy: `attempts` in all, waits of up to `base * 2^n` (capped), or what `Retry-After` says.
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(500),
            max: Duration::from_secs(8),
        }
    }
}

/// A Hopsworks.ai API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    /// Where the key came from, for a 401's or 403's message (e.g. the secret's ARN).
    key_source: String,
    pub(crate) retry: Retry,
    /// No call (attempts, waits between them) goes past this.
    deadline: Option<Instant>,
}

/// What [`Client::create_cluster`] got: the cluster it made, or the one it found already made.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The id of a cluster this call made.
    Made(String),
    /// A cluster made earlier: by an attempt whose answer was lost, or by a concurrent caller.
    Found(Box<Cluster>),
}

impl Created {
    pub fn id(&self) -> &str {
        match self {
            Created::Made(id) => id,
            Created::Found(cluster) => &cluster.id,
        }
    }
}

enum Attempt {
    Done(Result<Envelope, Error>),
    Retry {
        last: String,
        after: Option<Duration>,
        /// Whether the request may have reached Hopsworks.ai and taken effect (a 5xx, a dropped
        /// connection or a timeout after it was sent), unlike a throttled or refused connection.
        maybe_applied: bool,
    },
}

impl Client {
    pub fn new(base_url: &str, key: ApiKey, retry: Retry) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            key_source: String::new(),
            retry,
            deadline: None,
        })
    }

    /// Name where the key came from in a 401's or 403's message ("from secret arn:…").
    pub fn with_key_source(mut self, source: impl Into<String>) -> Self {
        self.key_source = source.into();
        self
    }

    /// This client, for calls that must be over within `budget` from now: each attempt's timeout,
    /// the waits between attempts and `Retry-After` are cut to fit, and a call that cannot finish
    /// in time ends with [`Error::OutOfTime`].
    pub fn within(&self, budget: Duration) -> Self {
        Self {
            deadline: Some(Instant::now() + budget),
            ..self.clone()
        }
    }

    /// Create a cluster. A POST is not idempotent: one whose answer was lost (a dropped
    /// connection, a 5xx or a timeout after Hopsworks.ai applied it) or that was refused (the name
    /// is taken: a concurrent caller made it) may mean the cluster exists. So before trying again,
    /// and after a refusal, the account's clusters are listed and one that `is_ours` says is ours
    /// is returned ([`Created::Found`]) instead of a second cluster or an error.
    pub async fn create_cluster(
        &self,
        cluster: &NewCluster,
        is_ours: impl Fn(&Cluster) -> bool,
    ) -> Result<Created, Error> {
        let body = serde_json::to_value(CreateRequest {
            cloud_provider: "AWS",
            cluster,
        })
        .map_err(|e| Error::Setup(e.to_string()))?;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            let Some(timeout) = self.attempt_timeout() else {
                return Err(Error::OutOfTime { last });
            };
            let refused = match self
                .attempt(Method::POST, "/api/clusters", Some(&body), timeout)
                .await
            {
                Attempt::Done(Ok(envelope)) => match created_id(&envelope) {
                    Some(id) => return Ok(Created::Made(id)),
                    None => Error::Api {
                        code: envelope.code,
                        message: "the answer to create has no cluster id".to_owned(),
                    },
                },
                Attempt::Done(Err(e @ Error::Api { .. })) => e,
                Attempt::Done(Err(e)) => return Err(e),
                Attempt::Retry {
                    last: why, after, ..
                } => {
                    warn!(attempt, error = %why, "create: no clear answer; looking before trying again");
                    last = why;
                    if attempt < self.retry.attempts {
                        self.pause(after.unwrap_or_else(|| self.backoff(attempt)), &last)
                            .await?;
                    }
                    if let Some(found) = self.find(&is_ours).await? {
                        info!(cluster_id = %found.id, "the create was applied after all: adopting");
                        return Ok(Created::Found(Box::new(found)));
                    }
                    continue;
                }
            };
            return match self.find(&is_ours).await? {
                Some(found) => {
                    info!(cluster_id = %found.id, error = %refused, "create refused, but the cluster is ours: adopting");
                    Ok(Created::Found(Box::new(found)))
                }
                None => Err(refused),
            };
        }
        Err(Error::Exhausted {
            attempts: self.retry.attempts,
            last,
        })
    }

    /// The first of the account's clusters `is_ours` accepts.
    async fn find(&self, is_ours: &impl Fn(&Cluster) -> bool) -> Result<Option<Cluster>, Error> {
        Ok(self.list_clusters().await?.into_iter().find(is_ours))
    }

    /// The cluster, or `None` when Hopsworks.ai says 404 (gone).
    pub async fn get_cluster(&self, id: &str) -> Result<Option<Cluster>, Error> {
        let envelope = self
            .call(Method::GET, &format!("/api/clusters/{id}"), None)
            .await?;
        if envelope.code == 404 {
            return Ok(None);
        }
        let cluster = envelope
            .payload
            .and_then(|mut p| p.get_mut("cluster").map(Value::take))
            .unwrap_or(Value::Null);
        serde_json::from_value(cluster)
            .map(Some)
            .map_err(|e| Error::Api {
                code: envelope.code,
                message: format!("the cluster in the answer does not read: {e}"),
            })
    }

    /// Terminate a cluster (404: already gone, which is fine).
    pub async fn delete_cluster(&self, id: &str) -> Result<(), Error> {
        self.call(Method::DELETE, &format!("/api/clusters/{id}"), None)
            .await
            .map(drop)
    }

    /// The account's AWS clusters.
    pub async fn list_clusters(&self) -> Result<Vec<Cluster>, Error> {
        let envelope = self
            .call(Method::GET, "/api/clusters?cloud=AWS", None)
            .await?;
        let clusters = envelope
            .payload
            .and_then(|mut p| p.get_mut("clusters").map(Value::take))
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(clusters).map_err(|e| Error::Api {
            code: envelope.code,
            message: format!("the cluster list does not read: {e}"),
        })
    }

    /// Add workers: `POST /api/clusters/{id}/workers`. Not repeated once it may have been
    /// applied ([`Error::Unanswered`]): adding twice would add twice as many.
    pub async fn add_workers(&self, id: &str, workers: &[Workers]) -> Result<(), Error> {
        let body = to_body(&WorkersRequest { workers })?;
        self.change(
            Method::POST,
            &format!("/api/clusters/{id}/workers"),
            &body,
            "adding workers",
        )
        .await
    }

    /// Remove workers (the same body as adding): `DELETE /api/clusters/{id}/workers`.
    pub async fn remove_workers(&self, id: &str, workers: &[Workers]) -> Result<(), Error> {
        let body = to_body(&WorkersRequest { workers })?;
        self.change(
            Method::DELETE,
            &format!("/api/clusters/{id}/workers"),
            &body,
            "removing workers",
        )
        .await
    }

    /// Turn autoscale on or change it: `POST /api/clusters/{id}/autoscale`.
    pub async fn set_autoscale(&self, id: &str, autoscale: &Autoscale) -> Result<(), Error> {
        let body = to_body(&AutoscaleRequest { autoscale })?;
        self.change(
            Method::POST,
            &format!("/api/clusters/{id}/autoscale"),
            &body,
            "setting autoscale",
        )
        .await
    }

    /// Turn autoscale off: `DELETE /api/clusters/{id}/autoscale`.
    pub async fn disable_autoscale(&self, id: &str) -> Result<(), Error> {
        self.change(
            Method::DELETE,
            &format!("/api/clusters/{id}/autoscale"),
            &Value::Null,
            "disabling autoscale",
        )
        .await
    }

    /// Open exactly these ports: `POST /api/clusters/{id}/ports`.
    pub async fn set_ports(&self, id: &str, ports: &Ports) -> Result<(), Error> {
        let body = to_body(&PortsRequest { ports })?;
        self.change(
            Method::POST,
            &format!("/api/clusters/{id}/ports"),
            &body,
            "setting the open ports",
        )
        .await
    }

    /// Upgrade to `version`: `POST /api/clusters/{id}/upgrade`; the cluster's ECR registry account
    /// goes with it when the version is above 3.0.0 (the contract).
    pub async fn upgrade(
        &self,
        id: &str,
        version: &str,
        docker_registry_account: &str,
    ) -> Result<(), Error> {
        let body = to_body(&UpgradeRequest::new(version, docker_registry_account))?;
        self.change(
            Method::POST,
            &format!("/api/clusters/{id}/upgrade"),
            &body,
            "the upgrade",
        )
        .await
    }

    /// Roll the last upgrade back: `PUT /api/clusters/{id}/upgrade/rollback`.
    pub async fn rollback_upgrade(&self, id: &str) -> Result<(), Error> {
        self.change(
            Method::PUT,
            &format!("/api/clusters/{id}/upgrade/rollback"),
            &Value::Null,
            "the upgrade's rollback",
        )
        .await
    }

    /// Change a node's instance type: `PUT /api/clusters/{id}/nodes/modify-instance-type`.
    pub async fn modify_instance_type(
        &self,
        id: &str,
        node_type: NodeType,
        instance_type: &str,
    ) -> Result<(), Error> {
        let body = to_body(&ModifyInstanceTypeRequest {
            node_info: NodeInfo {
                node_type,
                instance_type,
            },
        })?;
        self.change(
            Method::PUT,
            &format!("/api/clusters/{id}/nodes/modify-instance-type"),
            &body,
            "the instance type change",
        )
        .await
    }

    /// The Hopsworks versions Hopsworks.ai offers on AWS.
    pub async fn versions(&self) -> Result<Vec<Version>, Error> {
        let envelope = self
            .call(Method::GET, "/api/clusters/hopsworks/versions/AWS", None)
            .await?;
        let versions = envelope
            .payload
            .and_then(|mut p| p.get_mut("versions").map(Value::take))
            .unwrap_or(Value::Array(Vec::new()));
        serde_json::from_value(versions).map_err(|e| Error::Api {
            code: envelope.code,
            message: format!("the version catalogue does not read: {e}"),
        })
    }

    /// A day-2 change: sent once ([`Client::call_once`]), its ack dropped.
    async fn change(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<(), Error> {
        let body = (!body.is_null()).then_some(body);
        self.call_once(method, path, body, what).await.map(drop)
    }

    /// A call that changes something and must not be repeated once it may have taken effect:
    /// retried only while the attempts surely did not (throttled, the connection refused). An
    /// attempt that may have been applied ends the call with [`Error::Unanswered`] (`what` names
    /// the change), and the caller finds out from the resource itself, as a create does by
    /// listing before posting again.
    pub(crate) async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Envelope, Error> {
        self.retrying(method, path, body, Some(what)).await
    }

    /// An idempotent call (GET, DELETE), retried.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Envelope, Error> {
        self.retrying(method, path, body, None).await
    }

    /// The attempts of one call, within the retry policy and the deadline. A change (`once`
    /// names it) ends at the first attempt that may have been applied; anything else is retried.
    async fn retrying(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        once: Option<&str>,
    ) -> Result<Envelope, Error> {
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            let Some(timeout) = self.attempt_timeout() else {
                return Err(Error::OutOfTime { last });
            };
            let (why, after) = match self.attempt(method.clone(), path, body, timeout).await {
                Attempt::Done(result) => {
                    if attempt > 1 {
                        info!(%method, path, attempt, "Hopsworks.ai answered after retries");
                    }
                    return result;
                }
                Attempt::Retry {
                    last: why,
                    maybe_applied: true,
                    ..
                } if let Some(what) = once => {
                    warn!(%method, path, attempt, error = %why, "no clear answer to a change: not sent again");
                    return Err(Error::Unanswered {
                        what: what.to_owned(),
                        last: why,
                    });
                }
                Attempt::Retry {
                    last: why, after, ..
                } => (why, after),
            };
            warn!(%method, path, attempt, error = %why, "Hopsworks.ai request will be retried");
            last = why;
            if attempt < self.retry.attempts {
                self.pause(after.unwrap_or_else(|| self.backoff(attempt)), &last)
                    .await?;
            }
        }
        if self.attempt_timeout().is_none() {
            return Err(Error::OutOfTime { last });
        }
        Err(Error::Exhausted {
            attempts: self.retry.attempts,
            last,
        })
    }

    /// How long the next attempt may take; `None` when the deadline leaves no time for one.
    fn attempt_timeout(&self) -> Option<Duration> {
        match self.deadline {
            None => Some(ATTEMPT_TIMEOUT),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                (left >= MIN_ATTEMPT).then(|| left.min(ATTEMPT_TIMEOUT))
            }
        }
    }

    /// Wait before the next attempt, unless that wait would reach the deadline.
    pub(crate) async fn pause(&self, wait: Duration, last: &str) -> Result<(), Error> {
        if let Some(deadline) = self.deadline
            && Instant::now() + wait + MIN_ATTEMPT > deadline
        {
            return Err(Error::OutOfTime {
                last: last.to_owned(),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    async fn attempt(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Attempt {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout)
            .header("x-api-key", self.key.expose())
            .header("hopsai-api-version", "v1")
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = match request.send().await {
            Ok(r) => r,
            // A request that cannot be built fails the same way every time: no retry. (Without
            // the source chain: a header error's source could quote the header.)
            Err(e) if e.is_builder() => {
                return Attempt::Done(Err(Error::Setup(
                    "the request to Hopsworks.ai could not be built".to_owned(),
                )));
            }
            Err(e) => {
                return Attempt::Retry {
                    last: self.key.scrub(&e.to_string()),
                    after: None,
                    maybe_applied: !e.is_connect(),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => {
                return Attempt::Retry {
                    last: self.key.scrub(&e.to_string()),
                    after: None,
                    maybe_applied: true,
                };
            }
        };
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Attempt::Done(Err(self.refused(status.as_u16(), &text)));
        }
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(_) if retryable(status.as_u16() as i64) => {
                return Attempt::Retry {
                    last: format!("HTTP {status}"),
                    after: retry_after,
                    maybe_applied: status != StatusCode::TOO_MANY_REQUESTS,
                };
            }
            Err(_) => {
                return Attempt::Done(Err(Error::NotJson {
                    status: status.as_u16(),
                }));
            }
        };
        let code = envelope.code;
        if code / 100 == 2 || code == 404 {
            return Attempt::Done(Ok(envelope));
        }
        if code == 401 || code == 403 {
            return Attempt::Done(Err(self.refused(code as u16, &envelope.message)));
        }
        let message = self.key.scrub(&envelope.message);
        if retryable(code) || retryable(status.as_u16() as i64) {
            return Attempt::Retry {
                last: format!("{code}: {message}"),
                after: retry_after,
                maybe_applied: code != 429 && status != StatusCode::TOO_MANY_REQUESTS,
            };
        }
        Attempt::Done(Err(Error::Api { code, message }))
    }

    /// A 401 or 403: the key, named by where it came from; the body quoted without it.
    fn refused(&self, status: u16, body: &str) -> Error {
        let body = self.key.scrub(body.trim());
        let detail = if body.is_empty() {
            String::new()
        } else {
            format!(" ({})", truncate(&body, 200))
        };
        let origin = if self.key_source.is_empty() {
            String::new()
        } else {
            format!(" from {}", self.key_source)
        };
        Error::Forbidden {
            status,
            origin,
            detail,
        }
    }

    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry
            .base
            .saturating_mul(2u32.saturating_pow(attempt - 1))
            .min(self.retry.max);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(fastrand::u64(millis / 2..=millis))
    }
}

pub(crate) fn created_id(envelope: &Envelope) -> Option<String> {
    envelope
        .payload
        .as_ref()
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

fn to_body(body: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(body).map_err(|e| Error::Setup(e.to_string()))
}

fn retryable(code: i64) -> bool {
    code == 429 || (500..600).contains(&code)
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::{HeaderMap, Method as HttpMethod, Uri};
    use axum::routing::any;
    use std::sync::{Arc, Mutex};

    /// One scripted answer: status, body, and optionally a delay before it and a `Retry-After`.
    #[derive(Clone, Copy)]
    struct Reply {
        status: u16,
        body: &'static str,
        delay: Duration,
        retry_after: Option<u64>,
    }

    fn reply(status: u16, body: &'static str) -> Reply {
        Reply {
            status,
            body,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }

    /// What the server saw of one request.
    struct Seen {
        method: String,
        path: String,
        headers: HeaderMap,
        body: String,
    }

    /// A server answering from `script` in turn, recording what it saw.
    async fn server_with(script: Vec<Reply>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let record = seen.clone();
        let app = Router::new().fallback(any(
            move |method: HttpMethod, uri: Uri, headers: HeaderMap, body: String| {
                let (record, script) = (record.clone(), script.clone());
                async move {
                    record.lock().unwrap().push(Seen {
                        method: method.to_string(),
                        path: uri.to_string(),
                        headers,
                        body,
                    });
                    let next = script.lock().unwrap().next();
                    let r = next.unwrap_or_else(|| reply(500, "{}"));
                    tokio::time::sleep(r.delay).await;
                    let mut headers = HeaderMap::new();
                    if let Some(s) = r.retry_after {
                        headers.insert("retry-after", s.to_string().parse().unwrap());
                    }
                    (
                        axum::http::StatusCode::from_u16(r.status).unwrap(),
                        headers,
                        r.body,
                    )
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    async fn server(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
        server_with(script.into_iter().map(|(s, b)| reply(s, b)).collect()).await
    }

    fn client(base: &str) -> Client {
        let retry = Retry {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        };
        Client::new(base, ApiKey::from_secret("KEY123").unwrap(), retry).unwrap()
    }

    fn calls(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    #[tokio::test]
    async fn sends_the_contract_headers_and_reads_404_as_gone() {
        let (base, seen) = server(vec![(
            404,
            r#"{"apiVersion":"v1","status":"error","code":404,"message":"cluster not found"}"#,
        )])
        .await;
        assert_eq!(client(&base).get_cluster("x").await.unwrap(), None);
        let headers = &seen.lock().unwrap()[0].headers;
        assert_eq!(headers["x-api-key"], "KEY123");
        assert_eq!(headers["hopsai-api-version"], "v1");
        assert_eq!(headers["content-type"], "application/json");
        assert!(headers.get("accept").is_none_or(|v| v == "*/*"));
    }

    #[tokio::test]
    async fn an_error_code_in_a_200_is_an_error_with_the_message() {
        let (base, _) = server(vec![(
            200,
            r#"{"apiVersion":"v1","status":"error","code":400,"message":"bucket hops is not empty"}"#,
        )])
        .await;
        let err = client(&base).delete_cluster("x").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Hopsworks.ai answered 400: bucket hops is not empty"
        );
    }

    #[tokio::test]
    async fn forbidden_is_plain_text_and_never_echoes_the_key() {
        let (base, seen) = server(vec![(403, "Unauthorized KEY123")]).await;
        let err = client(&base).list_clusters().await.unwrap_err().to_string();
        assert!(err.contains("HTTP 403"), "{err}");
        assert!(!err.contains("KEY123"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 1, "403 must not be retried");
    }

    #[tokio::test]
    async fn a_401_names_where_the_key_came_from_as_a_403_does() {
        for (status, body) in [
            (401, "Unauthorized"),
            (401, r#"{"code":401,"message":"Unauthorized"}"#),
            (200, r#"{"code":401,"message":"invalid api key"}"#),
        ] {
            let (base, seen) = server(vec![(status, body)]).await;
            let err = client(&base)
                .with_key_source("secret arn:aws:secretsmanager:r:1:secret:k")
                .list_clusters()
                .await
                .unwrap_err();
            assert!(matches!(err, Error::Forbidden { status: 401, .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(
                    "refused the API key from secret arn:aws:secretsmanager:r:1:secret:k (HTTP 401)"
                ),
                "{text}"
            );
            assert_eq!(seen.lock().unwrap().len(), 1, "401 must not be retried");
        }
    }

    #[tokio::test]
    async fn throttling_and_5xx_are_retried_then_answered() {
        let ok = r#"{"apiVersion":"v1","status":"ok","code":200,"payload":{"clusters":[{"id":"a","state":"running"}]}}"#;
        let (base, seen) = server(vec![
            (429, r#"{"code":429,"message":"Too many requests"}"#),
            (503, "Service Unavailable"),
            (500, r#"{"code":500,"message":"oops"}"#),
            (200, ok),
        ])
        .await;
        let clusters = client(&base).list_clusters().await.unwrap();
        assert_eq!(clusters[0].id, "a");
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_storm_gives_up_after_the_bounded_attempts() {
        let (base, seen) = server(vec![(500, "{}"); 10]).await;
        let err = client(&base).get_cluster("x").await.unwrap_err();
        assert!(matches!(err, Error::Exhausted { attempts: 4, .. }), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_slow_answer_ends_the_call_at_its_deadline() {
        let slow = Reply {
            delay: Duration::from_secs(20),
            ..reply(200, "{}")
        };
        let (base, _) = server_with(vec![slow; 4]).await;
        let started = Instant::now();
        let err = client(&base)
            .within(Duration::from_millis(400))
            .get_cluster("x")
            .await
            .unwrap_err();
        assert!(err.is_out_of_time(), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_retry_after_past_the_deadline_ends_the_call_at_once() {
        let throttled = Reply {
            retry_after: Some(20),
            ..reply(429, r#"{"code":429,"message":"Too many requests"}"#)
        };
        let (base, seen) = server_with(vec![throttled; 4]).await;
        let started = Instant::now();
        let err = client(&base)
            .within(Duration::from_secs(3))
            .list_clusters()
            .await
            .unwrap_err();
        assert!(err.is_out_of_time(), "{err}");
        assert!(err.to_string().contains("429"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    const MADE: &str = r#"{"code":200,"payload":{"id":"c-1"}}"#;
    const OURS: &str = r#"{"code":200,"payload":{"clusters":[{"id":"other","name":"x"},{"id":"c-1","name":"fs","tags":[{"name":"owner","value":"me"}]}]}}"#;
    const NOT_OURS: &str =
        r#"{"code":200,"payload":{"clusters":[{"id":"other","name":"fs","tags":[]}]}}"#;
    const NONE: &str = r#"{"code":200,"payload":{"clusters":[]}}"#;
    const NAME_TAKEN: &str = r#"{"code":400,"message":"a cluster named fs already exists"}"#;

    fn ours(c: &Cluster) -> bool {
        c.name == "fs" && c.tag("owner") == Some("me")
    }

    fn new_cluster() -> NewCluster {
        NewCluster {
            name: "fs".into(),
            ..NewCluster::default()
        }
    }

    #[tokio::test]
    async fn a_create_without_a_clear_answer_looks_before_posting_again() {
        // Applied, then a 5xx (or a dropped connection): the lookup finds it; no second POST.
        let (base, seen) = server(vec![(503, "Service Unavailable"), (200, OURS)]).await;
        let created = client(&base)
            .create_cluster(&new_cluster(), ours)
            .await
            .unwrap();
        assert_eq!(created.id(), "c-1");
        assert!(matches!(created, Created::Found(_)));
        assert_eq!(
            calls(&seen),
            ["POST /api/clusters", "GET /api/clusters?cloud=AWS"]
        );
        // Not applied: nothing found, so the POST is tried again.
        let (base, seen) = server(vec![(503, "{}"), (200, NONE), (200, MADE)]).await;
        let created = client(&base)
            .create_cluster(&new_cluster(), ours)
            .await
            .unwrap();
        assert_eq!(created, Created::Made("c-1".into()));
        assert_eq!(calls(&seen).len(), 3);
    }

    #[tokio::test]
    async fn a_refused_create_adopts_our_cluster_only() {
        // A concurrent delivery made it: the name is taken, by our own cluster.
        let (base, _) = server(vec![(400, NAME_TAKEN), (200, OURS)]).await;
        let created = client(&base)
            .create_cluster(&new_cluster(), ours)
            .await
            .unwrap();
        assert_eq!(created.id(), "c-1");
        // Someone else's cluster of that name: the refusal stands.
        let (base, seen) = server(vec![(400, NAME_TAKEN), (200, NOT_OURS)]).await;
        let err = client(&base)
            .create_cluster(&new_cluster(), ours)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(400), "{err}");
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(calls(&seen).len(), 2, "a refusal is not retried");
    }

    #[tokio::test]
    async fn a_create_that_runs_out_of_time_says_so() {
        let slow = Reply {
            delay: Duration::from_secs(20),
            ..reply(200, MADE)
        };
        let (base, seen) = server_with(vec![slow]).await;
        let err = client(&base)
            .within(Duration::from_millis(400))
            .create_cluster(&new_cluster(), ours)
            .await
            .unwrap_err();
        assert!(err.is_out_of_time(), "{err}");
        assert_eq!(calls(&seen), ["POST /api/clusters"]);
    }

    const ACK: &str = r#"{"apiVersion":"v1","status":"ok","code":200}"#;

    fn bodies(seen: &Mutex<Vec<Seen>>) -> Vec<Value> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|s| serde_json::from_str(&s.body).unwrap_or(Value::Null))
            .collect()
    }

    #[tokio::test]
    async fn day2_changes_use_the_contracts_paths_and_bodies() {
        let (base, seen) = server(vec![(200, ACK); 8]).await;
        let c = client(&base);
        let workers = [Workers {
            instance_type: "m5.xlarge".into(),
            disk_size: 256,
            count: 2,
        }];
        c.add_workers("c-1", &workers).await.unwrap();
        c.remove_workers("c-1", &workers).await.unwrap();
        let autoscale = Autoscale {
            non_gpu: Some(crate::model::AutoscaleGroup {
                instance_type: "m5.2xlarge".into(),
                disk_size: 512,
                min_workers: 0,
                max_workers: 4,
                standby_workers: 0.5,
                downscale_wait_time: 300,
            }),
            gpu: None,
        };
        c.set_autoscale("c-1", &autoscale).await.unwrap();
        c.disable_autoscale("c-1").await.unwrap();
        let ports = Ports {
            feature_store: true,
            kafka: true,
            ..Ports::default()
        };
        c.set_ports("c-1", &ports).await.unwrap();
        c.upgrade("c-1", "4.0.0", "111122223333").await.unwrap();
        c.rollback_upgrade("c-1").await.unwrap();
        c.modify_instance_type("c-1", NodeType::Head, "m5.4xlarge")
            .await
            .unwrap();
        assert_eq!(
            calls(&seen),
            [
                "POST /api/clusters/c-1/workers",
                "DELETE /api/clusters/c-1/workers",
                "POST /api/clusters/c-1/autoscale",
                "DELETE /api/clusters/c-1/autoscale",
                "POST /api/clusters/c-1/ports",
                "POST /api/clusters/c-1/upgrade",
                "PUT /api/clusters/c-1/upgrade/rollback",
                "PUT /api/clusters/c-1/nodes/modify-instance-type",
            ]
        );
        let group = serde_json::json!({"workers": [{"instanceType": "m5.xlarge", "diskSize": 256, "count": 2}]});
        assert_eq!(
            bodies(&seen),
            [
                group.clone(),
                group,
                serde_json::json!({"autoscale": {"nonGpu": {"instanceType": "m5.2xlarge", "diskSize": 512,
                    "minWorkers": 0, "maxWorkers": 4, "standbyWorkers": 0.5, "downscaleWaitTime": 300}}}),
                Value::Null,
                serde_json::json!({"ports": {"featureStore": true, "onlineFeatureStore": false, "kafka": true, "ssh": false}}),
                serde_json::json!({"version": "4.0.0", "dockerRegistryAccount": "111122223333"}),
                Value::Null,
                serde_json::json!({"nodeInfo": {"nodeType": "head", "instanceType": "m5.4xlarge"}}),
            ]
        );
        let headers = &seen.lock().unwrap()[3].headers;
        assert_eq!(headers["x-api-key"], "KEY123");
        assert_eq!(headers["hopsai-api-version"], "v1");
    }

    #[tokio::test]
    async fn a_change_answered_5xx_is_not_sent_again() {
        let (base, seen) = server(vec![(503, "Service Unavailable"), (200, ACK)]).await;
        let err = client(&base)
            .add_workers("c-1", &[Workers::default()])
            .await
            .unwrap_err();
        assert!(err.is_unanswered(), "{err}");
        assert!(
            err.to_string()
                .starts_with("Hopsworks.ai gave no clear answer to adding workers"),
            "{err}"
        );
        assert_eq!(calls(&seen), ["POST /api/clusters/c-1/workers"]);
    }

    #[tokio::test]
    async fn a_change_that_times_out_is_not_sent_again() {
        let slow = Reply {
            delay: Duration::from_secs(20),
            ..reply(200, ACK)
        };
        let (base, seen) = server_with(vec![slow; 2]).await;
        let err = client(&base)
            .within(Duration::from_millis(400))
            .upgrade("c-1", "4.0.0", "111122223333")
            .await
            .unwrap_err();
        assert!(err.is_unanswered(), "{err}");
        assert_eq!(calls(&seen), ["POST /api/clusters/c-1/upgrade"]);
    }

    #[tokio::test]
    async fn a_throttled_change_is_sent_again_and_a_refusal_is_not() {
        let (base, seen) = server(vec![
            (429, r#"{"code":429,"message":"Too many requests"}"#),
            (200, ACK),
        ])
        .await;
        client(&base)
            .set_ports("c-1", &Ports::default())
            .await
            .unwrap();
        assert_eq!(calls(&seen).len(), 2);
        let (base, seen) = server(vec![(
            400,
            r#"{"code":400,"message":"cluster is not running"}"#,
        )])
        .await;
        let err = client(&base).rollback_upgrade("c-1").await.unwrap_err();
        assert_eq!(err.code(), Some(400));
        assert_eq!(
            err.to_string(),
            "Hopsworks.ai answered 400: cluster is not running"
        );
        assert_eq!(calls(&seen).len(), 1);
    }

    #[tokio::test]
    async fn the_version_catalogue_reads() {
        let (base, seen) = server(vec![(
            200,
            r#"{"code":200,"payload":{"versions":[{"version":"3.9.0","upgradableFromVersion":"","default":true,"experimental":false,"regions":{"ubuntu":["us-east-2"],"centos":null},"releaseNotesUrl":null},{"version":"4.0.0","upgradableFromVersion":"3.9.0"}]}}"#,
        )])
        .await;
        let versions = client(&base).versions().await.unwrap();
        assert_eq!(calls(&seen), ["GET /api/clusters/hopsworks/versions/AWS"]);
        assert_eq!(versions.len(), 2);
        assert!(versions[0].default);
        assert_eq!(versions[1].upgradable_from_version, "3.9.0");
        assert_eq!(versions[0].regions.for_os("ubuntu"), ["us-east-2"]);
        assert!(versions[0].regions.for_os("centos").is_empty());
        assert!(versions[1].regions.for_os("ubuntu").is_empty());
    }
}
