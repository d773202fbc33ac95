//! Requests, the response envelope, and retries.
//!
//! The contract: every request carries `x-api-key`, `hopsai-api-version: v1` and a JSON content
//! type; HTTP 403 means the key has no access (the body may be plain text); otherwise the body is
//! a JSON envelope whose `code` decides: 2xx is success, 404 is "absent" (not an error), anything
//! else an error whose text is `message`. Throttling (429), 5xx and connection errors are retried
//! with jittered backoff, a bounded number of times.

use crate::key::ApiKey;
use crate::model::{Cluster, CreateRequest, NewCluster};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tracing::{info, warn};

pub const DEFAULT_BASE_URL: &str = "https://api.hopsworks.ai";
const USER_AGENT: &str = concat!("hopsworks-eks-stack/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Hopsworks.ai refused the API key{origin} (HTTP 403): it has no access to \
         hopsworks.ai{detail}; check the key, or create a new one in Hopsworks.ai (Settings → API \
         keys)"
    )]
    Forbidden { origin: String, detail: String },
    #[error("Hopsworks.ai answered {code}: {message}")]
    Api { code: i64, message: String },
    #[error("Hopsworks.ai answered HTTP {status} with a body that is not JSON")]
    NotJson { status: u16 },
    #[error("Hopsworks.ai is throttling or failing: {last} (gave up after {attempts} attempts)")]
    Exhausted { attempts: u32, last: String },
    #[error("the Hopsworks.ai client could not be built: {0}")]
    Setup(String),
}

impl Error {
    /// The code of an API error (400, 409, …).
    pub fn code(&self) -> Option<i64> {
        match self {
            Error::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Envelope {
    code: i64,
    message: String,
    payload: Option<Value>,
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
    /// Where the key came from, for a 403's message (e.g. the secret's ARN).
    key_source: String,
    retry: Retry,
}

enum Attempt {
    Done(Result<Envelope, Error>),
    Retry {
        last: String,
        after: Option<Duration>,
    },
}

impl Client {
    pub fn new(base_url: &str, key: ApiKey, retry: Retry) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            key_source: String::new(),
            retry,
        })
    }

    /// Name where the key came from in a 403's message ("from secret arn:…").
    pub fn with_key_source(mut self, source: impl Into<String>) -> Self {
        self.key_source = source.into();
        self
    }

    /// Create a cluster; its id.
    pub async fn create_cluster(&self, cluster: &NewCluster) -> Result<String, Error> {
        let body = serde_json::to_value(CreateRequest {
            cloud_provider: "AWS",
            cluster,
        })
        .map_err(|e| Error::Setup(e.to_string()))?;
        let envelope = self
            .call(Method::POST, "/api/clusters", Some(&body))
            .await?;
        envelope
            .payload
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Api {
                code: envelope.code,
                message: "the answer to create has no cluster id".to_owned(),
            })
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

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Envelope, Error> {
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            match self.attempt(method.clone(), path, body).await {
                Attempt::Done(result) => {
                    if attempt > 1 {
                        info!(%method, path, attempt, "Hopsworks.ai answered after retries");
                    }
                    return result;
                }
                Attempt::Retry { last: why, after } => {
                    warn!(%method, path, attempt, error = %why, "Hopsworks.ai request will be retried");
                    last = why;
                    if attempt < self.retry.attempts {
                        tokio::time::sleep(after.unwrap_or_else(|| self.backoff(attempt))).await;
                    }
                }
            }
        }
        Err(Error::Exhausted {
            attempts: self.retry.attempts,
            last,
        })
    }

    async fn attempt(&self, method: Method, path: &str, body: Option<&Value>) -> Attempt {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", self.key.expose())
            .header("hopsai-api-version", "v1")
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    last: self.key.scrub(&e.to_string()),
                    after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(30)));
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::FORBIDDEN {
            let body = self.key.scrub(text.trim());
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
            return Attempt::Done(Err(Error::Forbidden { origin, detail }));
        }
        let envelope: Envelope = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(_) if retryable(status.as_u16() as i64) => {
                return Attempt::Retry {
                    last: format!("HTTP {status}"),
                    after: retry_after,
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
        let message = self.key.scrub(&envelope.message);
        if retryable(code) || retryable(status.as_u16() as i64) {
            return Attempt::Retry {
                last: format!("{code}: {message}"),
                after: retry_after,
            };
        }
        Attempt::Done(Err(Error::Api { code, message }))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry
            .base
            .saturating_mul(2u32.saturating_pow(attempt - 1))
            .min(self.retry.max);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(fastrand::u64(millis / 2..=millis))
    }
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
    use axum::http::HeaderMap;
    use axum::routing::any;
    use std::sync::{Arc, Mutex};

    /// A server answering `(status, body)` in turn, recording the headers it saw.
    async fn server(script: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<HeaderMap>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let record = seen.clone();
        let app = Router::new().fallback(any(move |headers: HeaderMap| {
            let (record, script) = (record.clone(), script.clone());
            async move {
                record.lock().unwrap().push(headers);
                let (status, body) = script.lock().unwrap().next().unwrap_or((500, "{}"));
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), seen)
    }

    fn client(base: &str) -> Client {
        let retry = Retry {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        };
        Client::new(base, ApiKey::from_secret("KEY123").unwrap(), retry).unwrap()
    }

    #[tokio::test]
    async fn sends_the_contract_headers_and_reads_404_as_gone() {
        let (base, seen) = server(vec![(
            404,
            r#"{"apiVersion":"v1","status":"error","code":404,"message":"cluster not found"}"#,
        )])
        .await;
        assert_eq!(client(&base).get_cluster("x").await.unwrap(), None);
        let headers = &seen.lock().unwrap()[0];
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
}
