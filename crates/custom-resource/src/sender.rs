//! The response PUT to the pre-signed URL.

use crate::lifecycle::error_chain;
use crate::request::Reply;
use crate::response::{Rendered, Status};
use std::time::Duration;
use tokio::time::Instant;
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

/// The longest one PUT attempt may take (S3 answers in well under a second).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// An attempt with less time than this is not started.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// How long the next attempt may take with `left` before the deadline: half of it (so a stalled
/// attempt leaves room for one more), all of it when little is left, never more than
/// [`ATTEMPT_TIMEOUT`]; `None` when there is no time for an attempt.
fn attempt_budget(left: Duration) -> Option<Duration> {
    if left < MIN_ATTEMPT {
        return None;
    }
    let share = if left >= Duration::from_secs(2) {
        left / 2
    } else {
        left
    };
    Some(share.min(ATTEMPT_TIMEOUT))
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
            .timeout(ATTEMPT_TIMEOUT)
            .build()?;
        Ok(Self { http, retry })
    }

    /// PUT the body before `until` (Lambda's deadline); consumes the [`Reply`], so a request
    /// cannot be answered twice. Attempts are sized to the time left: each may take at most half
    /// of it (and [`ATTEMPT_TIMEOUT`]), so a stalled first attempt leaves room for another.
    pub async fn send(&self, reply: Reply, rendered: &Rendered, until: Instant) -> Delivery {
        let mut last_error = String::new();
        let mut attempts = 0;
        for attempt in 1..=self.retry.attempts {
            if attempt > 1 {
                let delay = self.retry.delay(attempt - 2);
                if Instant::now() + delay + MIN_ATTEMPT > until {
                    break;
                }
                tokio::time::sleep(delay).await;
            }
            let Some(budget) = attempt_budget(until.saturating_duration_since(Instant::now()))
            else {
                break;
            };
            attempts = attempt;
            let result = self
                .http
                .put(reply.url.expose().clone())
                .timeout(budget)
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
        if attempts == 0 {
            last_error = "no time left before the function's deadline".to_owned();
        }
        error!(
            attempts,
            error = %last_error,
            url = %reply.url,
            "could not deliver the response to CloudFormation"
        );
        Delivery::Undelivered {
            attempts,
            last_error,
        }
    }
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
            fast().send(reply(&url), &body(), later()).await,
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
            fast().send(reply(&url), &body(), later()).await,
            Delivery::Delivered { attempts: 3 }
        );
        assert_eq!(seen.lock().unwrap().statuses, [500, 503, 200]);
    }

    #[tokio::test]
    async fn never_retries_4xx() {
        let (url, seen) = receiver(vec![403, 403]).await;
        assert_eq!(
            fast().send(reply(&url), &body(), later()).await,
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
        match fast().send(reply(&url), &body(), later()).await {
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

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn attempts_fit_the_time_left() {
        assert_eq!(
            attempt_budget(Duration::from_secs(60)),
            Some(ATTEMPT_TIMEOUT)
        );
        assert_eq!(
            attempt_budget(Duration::from_secs(8)),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            attempt_budget(Duration::from_millis(1500)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(attempt_budget(Duration::from_millis(50)), None);
    }

    #[tokio::test]
    async fn a_stalled_put_is_cut_short_and_retried_before_the_deadline() {
        // The first PUT never answers; the deadline is 3 s away: the first attempt gets 1.5 s,
        // the second gets through.
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        let app = Router::new().route(
            "/r",
            put(move || {
                let flag = flag.clone();
                async move {
                    if !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://{addr}/r?X-Amz-Signature=s");
        let started = Instant::now();
        let until = started + Duration::from_secs(3);
        assert_eq!(
            fast().send(reply(&url), &body(), until).await,
            Delivery::Delivered { attempts: 2 }
        );
        assert!(Instant::now() < until);
    }

    #[tokio::test]
    async fn no_attempt_is_started_without_time_for_it() {
        let (url, seen) = receiver(vec![]).await;
        let delivery = fast().send(reply(&url), &body(), Instant::now()).await;
        assert!(
            matches!(delivery, Delivery::Undelivered { attempts: 0, .. }),
            "{delivery:?}"
        );
        assert!(seen.lock().unwrap().statuses.is_empty());
    }

    #[test]
    fn jitter_stays_within_the_ceiling() {
        let policy = RetryPolicy::default();
        for retry in 0..20 {
            assert!(policy.delay(retry) <= policy.max_delay);
        }
    }
}
