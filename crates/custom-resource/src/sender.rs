//! The response PUT to the pre-signed URL.

use crate::request::Reply;
use crate::response::{Rendered, Status};
use std::time::Duration;
use tracing::{error, info, warn};

/// How the PUT ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// S3 accepted it (2xx).
    Delivered { attempts: u32 },
    /// S3 refused it with a 4xx (an expired or altered URL): retrying cannot help.
    Rejected { status: u16 },
    /// Every attempt failed to connect or got a 5xx.
    Undelivered { attempts: u32, last_error: String },
}

/// Bounded, jittered retries: `attempts` tries in all, the n-th wait drawn from
/// `0..=min(max_delay, base_delay * 2^n)` ("full jitter").
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        Duration::from_millis(fastrand::u64(0..=ceiling.as_millis() as u64))
    }
}

/// Sends responses. Built once per process and shared by every invocation.
#[derive(Debug, Clone)]
pub struct Sender {
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl Sender {
    pub fn new(retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, retry })
    }

    /// PUT the body; consumes the [`Reply`], so a request cannot be answered twice.
    pub async fn send(&self, reply: Reply, rendered: &Rendered) -> Delivery {
        let mut last_error = String::new();
        for attempt in 1..=self.retry.attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry.delay(attempt - 2)).await;
            }
            let result = self
                .http
                .put(reply.url.expose().clone())
                // The URL is signed without a Content-Type: any other value makes S3 answer 403.
                .header(reqwest::header::CONTENT_TYPE, "")
                .body(rendered.body.clone())
                .send()
                .await;
            match result {
                Ok(resp) if resp.status().is_success() => {
                    info!(
                        status = ?rendered.status,
                        http_status = resp.status().as_u16(),
                        attempt,
                        url = %reply.url,
                        "response delivered to CloudFormation"
                    );
                    return Delivery::Delivered { attempts: attempt };
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status().as_u16();
                    error!(
                        http_status = status,
                        attempt,
                        url = %reply.url,
                        "CloudFormation's response URL refused the response; the URL may have \
                         expired (not retried)"
                    );
                    return Delivery::Rejected { status };
                }
                Ok(resp) => last_error = format!("HTTP {}", resp.status().as_u16()),
                // `without_url`: reqwest puts the whole URL, signature included, in its errors.
                Err(e) => last_error = error_chain(&e.without_url()),
            }
            warn!(attempt, error = %last_error, url = %reply.url, "response PUT failed");
        }
        error!(
            attempts = self.retry.attempts,
            error = %last_error,
            url = %reply.url,
            "could not deliver the response to CloudFormation"
        );
        Delivery::Undelivered {
            attempts: self.retry.attempts,
            last_error,
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Envelope, RawEvent, ResponseUrl};
    use axum::{Router, http::HeaderMap, http::StatusCode, routing::put};
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen {
        statuses: Vec<u16>,
        content_types: Vec<Option<String>>,
        lengths: Vec<(Option<String>, usize)>,
    }

    /// A receiver that answers with `script` in turn (then 200) and records what it saw.
    async fn receiver(script: Vec<u16>) -> (String, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let state = seen.clone();
        let app = Router::new().route(
            "/r",
            put(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (seen, script) = (state.clone(), script.clone());
                async move {
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    let mut s = seen.lock().unwrap();
                    s.statuses.push(status);
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .map(|v| v.to_str().unwrap_or_default().to_owned())
                    };
                    s.content_types.push(header("content-type"));
                    s.lengths.push((header("content-length"), body.len()));
                    StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/r?X-Amz-Signature=s"), seen)
    }

    fn reply(url: &str) -> Reply {
        Reply {
            envelope: Envelope {
                request_id: "r".into(),
                stack_id: "s".into(),
                logical_resource_id: "l".into(),
                resource_type: "Custom::T".into(),
            },
            url: ResponseUrl::parse(url).unwrap(),
            raw: RawEvent(serde_json::Value::Null),
        }
    }

    fn fast() -> Sender {
        Sender::new(RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .unwrap()
    }

    fn body() -> Rendered {
        Rendered {
            status: Status::Success,
            body: br#"{"Status":"SUCCESS"}"#.to_vec(),
        }
    }

    #[tokio::test]
    async fn puts_with_empty_content_type_and_exact_length() {
        let (url, seen) = receiver(vec![]).await;
        assert_eq!(
            fast().send(reply(&url), &body()).await,
            Delivery::Delivered { attempts: 1 }
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.content_types, [Some(String::new())]);
        assert_eq!(seen.lengths, [(Some("20".to_owned()), 20)]);
    }

    #[tokio::test]
    async fn retries_5xx_then_delivers() {
        let (url, seen) = receiver(vec![500, 503]).await;
        assert_eq!(
            fast().send(reply(&url), &body()).await,
            Delivery::Delivered { attempts: 3 }
        );
        assert_eq!(seen.lock().unwrap().statuses, [500, 503, 200]);
    }

    #[tokio::test]
    async fn never_retries_4xx() {
        let (url, seen) = receiver(vec![403, 403]).await;
        assert_eq!(
            fast().send(reply(&url), &body()).await,
            Delivery::Rejected { status: 403 }
        );
        assert_eq!(seen.lock().unwrap().statuses, [403]);
    }

    #[tokio::test]
    async fn gives_up_after_the_bounded_attempts_without_leaking_the_url() {
        // Nothing listens on this port: every attempt is a connection error.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/r?X-Amz-Signature=SECRET");
        match fast().send(reply(&url), &body()).await {
            Delivery::Undelivered {
                attempts,
                last_error,
            } => {
                assert_eq!(attempts, 4);
                assert!(!last_error.contains("SECRET"), "{last_error}");
            }
            other => panic!("expected Undelivered, got {other:?}"),
        }
    }

    #[test]
    fn jitter_stays_within_the_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..20 {
            assert!(policy.delay(retry) <= policy.max_delay);
        }
    }
}
