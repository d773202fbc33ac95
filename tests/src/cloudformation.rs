//! CloudFormation's side of the custom-resource protocol, played over HTTP.
//!
//! [`Receiver`] serves the pre-signed ResponseURLs and checks each PUT as S3 and CloudFormation
//! would: the signature in the query, no Content-Type (the URL is signed without one, so S3 answers
//! 403 to any other), an exact Content-Length, a JSON body of at most 4096 bytes with the protocol's
//! fields. [`Player`] sends Create / Update / Delete to a function through the Lambda Runtime API
//! (asynchronously, with Lambda's retries) and waits for the one answer.

use crate::lambda::{LambdaFunction, Outcome};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::put;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub const MAX_BODY_BYTES: usize = 4096;
pub const STACK_ID: &str = "arn:aws:cloudformation:us-east-2:123456789012:stack/hopsworks-eks/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f";

/// One PUT the receiver accepted or refused.
#[derive(Debug, Clone)]
pub struct Put {
    pub request_id: String,
    pub http_status: u16,
    pub body: Vec<u8>,
    /// What is wrong with it, as CloudFormation or S3 would see it (empty when valid).
    pub problems: Vec<String>,
    /// When it arrived (the end of an invocation, as CloudFormation sees it).
    pub received: std::time::Instant,
}

#[derive(Default)]
struct Receipts {
    /// Signature and StackId issued for each request id.
    issued: HashMap<String, (String, String)>,
    puts: Vec<Put>,
    /// Status codes to answer with before accepting (fault injection), consumed in order.
    script: Vec<u16>,
    /// How many of the next PUTs hang without an answer (a stalled S3 connection).
    stalls: usize,
}

/// The ResponseURL server.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    state: Arc<(Mutex<Receipts>, Notify)>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state: Arc<(Mutex<Receipts>, Notify)> = Arc::default();
        let router = Router::new()
            .route("/responses/{request_id}", put(receive))
            .with_state(state.clone());
        let (addr, _) = crate::server::spawn(router).await;
        Self { addr, state }
    }

    /// A pre-signed URL for `request_id`; its signature is a secret the tests look for in logs.
    pub fn url_for(&self, request_id: &str) -> (String, String) {
        self.url_for_stack(request_id, STACK_ID)
    }

    /// The same, for a request of stack `stack_id` (which the answer must echo).
    pub fn url_for_stack(&self, request_id: &str, stack_id: &str) -> (String, String) {
        let signature = crate::random_hex(64);
        if let Ok(mut r) = self.state.0.lock() {
            r.issued.insert(
                request_id.to_owned(),
                (signature.clone(), stack_id.to_owned()),
            );
        }
        let url = format!(
            "http://{}/responses/{request_id}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=7200&X-Amz-Signature={signature}",
            self.addr
        );
        (url, signature)
    }

    /// Answer the next PUTs with these HTTP statuses (e.g. 500, 503) before accepting again.
    pub fn fail_next(&self, statuses: &[u16]) {
        if let Ok(mut r) = self.state.0.lock() {
            r.script.extend_from_slice(statuses);
        }
    }

    /// The next `count` PUTs get no answer at all: the connection stalls, as a network path can.
    pub fn stall_next(&self, count: usize) {
        if let Ok(mut r) = self.state.0.lock() {
            r.stalls += count;
        }
    }

    /// How many injected failures (scripted statuses, stalls) have not struck yet.
    pub fn unfired(&self) -> usize {
        self.state
            .0
            .lock()
            .map(|r| r.script.len() + r.stalls)
            .unwrap_or_default()
    }

    pub fn puts_for(&self, request_id: &str) -> Vec<Put> {
        self.state
            .0
            .lock()
            .map(|r| {
                r.puts
                    .iter()
                    .filter(|p| p.request_id == request_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until a PUT for `request_id` is accepted (2xx), or `timeout` passes.
    pub async fn wait_accepted(&self, request_id: &str, timeout: Duration) -> Option<Put> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.1.notified();
            if let Some(put) = self
                .puts_for(request_id)
                .into_iter()
                .find(|p| p.http_status == 200)
            {
                return Some(put);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

async fn receive(
    State(state): State<Arc<(Mutex<Receipts>, Notify)>>,
    Path(request_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let (lock, notify) = &*state;
    let stalled = {
        let mut receipts = lock.lock().unwrap_or_else(|e| e.into_inner());
        let stall = receipts.stalls > 0;
        receipts.stalls = receipts.stalls.saturating_sub(1);
        stall
    };
    if stalled {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return StatusCode::GATEWAY_TIMEOUT;
    }
    let mut receipts = match lock.lock() {
        Ok(r) => r,
        Err(e) => e.into_inner(),
    };
    let received = std::time::Instant::now();
    let mut problems = Vec::new();
    let issued = receipts.issued.get(&request_id).cloned();
    let (signed, stack_id) = issued.unzip();
    let mut status = StatusCode::OK;
    if signed.is_none() || signed != query.get("X-Amz-Signature").cloned() {
        problems.push("signature does not match an issued URL".to_owned());
        status = StatusCode::FORBIDDEN;
    }
    match headers.get("content-type").map(|v| v.as_bytes()) {
        None | Some(b"") => {}
        Some(other) => {
            problems.push(format!(
                "Content-Type {:?}: the URL is signed without one (S3 answers 403 SignatureDoesNotMatch)",
                String::from_utf8_lossy(other)
            ));
            status = StatusCode::FORBIDDEN;
        }
    }
    let length = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if length != Some(body.len()) {
        problems.push(format!(
            "Content-Length {length:?} for a body of {} bytes",
            body.len()
        ));
        status = StatusCode::LENGTH_REQUIRED;
    }
    if status == StatusCode::OK && !receipts.script.is_empty() {
        status = StatusCode::from_u16(receipts.script.remove(0)).unwrap_or(StatusCode::OK);
    }
    if status == StatusCode::OK {
        problems.extend(protocol_problems(
            &body,
            &request_id,
            stack_id.as_deref().unwrap_or_default(),
        ));
    }
    receipts.puts.push(Put {
        request_id,
        http_status: status.as_u16(),
        body: body.to_vec(),
        problems,
        received,
    });
    notify.notify_waiters();
    status
}

/// What CloudFormation would reject in a response body.
fn protocol_problems(body: &[u8], request_id: &str, stack_id: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if body.len() > MAX_BODY_BYTES {
        problems.push(format!("body is {} bytes, over 4096", body.len()));
    }
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        problems.push("body is not a JSON object".to_owned());
        return problems;
    };
    let text = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default();
    match text("Status") {
        "SUCCESS" => {}
        "FAILED" if !text("Reason").is_empty() => {}
        "FAILED" => problems.push("FAILED without a Reason".to_owned()),
        other => problems.push(format!("Status {other:?}")),
    }
    let id = text("PhysicalResourceId");
    if id.is_empty() || id.len() > 1024 {
        problems.push(format!("PhysicalResourceId of {} bytes", id.len()));
    }
    if text("RequestId") != request_id {
        problems.push("RequestId does not echo the request".to_owned());
    }
    if text("StackId") != stack_id {
        problems.push("StackId does not echo the request".to_owned());
    }
    if text("LogicalResourceId").is_empty() {
        problems.push("no LogicalResourceId".to_owned());
    }
    if text("Reason").chars().any(char::is_control) {
        problems.push("Reason holds control characters".to_owned());
    }
    if let Some(data) = doc.get("Data")
        && !data.is_object()
    {
        problems.push("Data is not an object".to_owned());
    }
    problems
}

/// The answer CloudFormation read.
#[derive(Debug, Clone)]
pub struct Answer {
    pub request_id: String,
    pub status: String,
    pub reason: String,
    pub physical_id: String,
    pub data: Map<String, Value>,
    pub no_echo: bool,
    pub logical_id: String,
    /// Every attempt Lambda made (async invocations are retried on error).
    pub invocations: Vec<Outcome>,
    /// The URL's signature: must never appear in a log line.
    pub signature: String,
    /// When the accepted PUT arrived.
    pub answered: std::time::Instant,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.status == "SUCCESS"
    }

    /// The seconds in a Reason that starts "timed out after N s".
    pub fn timed_out_after(&self) -> Option<f64> {
        self.reason
            .strip_prefix("timed out after ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    }

    pub fn attr(&self, key: &str) -> &str {
        self.data
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Plays CloudFormation for one function.
pub struct Player<'a> {
    pub function: &'a LambdaFunction,
    pub receiver: Receiver,
    pub resource_type: String,
    /// The StackId requests carry (another stack: another player with another id).
    pub stack_id: String,
    /// How long after the invocations end to keep listening for a second (wrong) PUT.
    pub grace: Duration,
    /// How long to wait for the answer after the first invocation ends (long for resources that
    /// continue in further invocations).
    pub answer_timeout: Duration,
    /// Lambda waits about a minute before retrying an async invocation; the bench waits this.
    pub retry_delay: Duration,
}

impl<'a> Player<'a> {
    pub async fn new(function: &'a LambdaFunction, resource_type: &str) -> Self {
        Self {
            function,
            receiver: Receiver::start().await,
            resource_type: resource_type.to_owned(),
            stack_id: STACK_ID.to_owned(),
            grace: Duration::from_millis(300),
            answer_timeout: Duration::from_millis(300),
            retry_delay: Duration::from_millis(200),
        }
    }

    pub async fn create(&self, logical_id: &str, properties: Value) -> Answer {
        self.send("Create", logical_id, properties, None, None)
            .await
    }

    pub async fn update(
        &self,
        logical_id: &str,
        physical_id: &str,
        properties: Value,
        old_properties: Value,
    ) -> Answer {
        self.send(
            "Update",
            logical_id,
            properties,
            Some(old_properties),
            Some(physical_id),
        )
        .await
    }

    pub async fn delete(&self, logical_id: &str, physical_id: &str, properties: Value) -> Answer {
        self.send("Delete", logical_id, properties, None, Some(physical_id))
            .await
    }

    /// Send a raw event (for malformed-request tests); the ResponseURL is filled in.
    pub async fn send_event(&self, mut event: Map<String, Value>) -> Answer {
        let request_id = crate::random_uuid();
        let stack_id = event
            .get("StackId")
            .and_then(Value::as_str)
            .unwrap_or(STACK_ID)
            .to_owned();
        let (url, signature) = self.receiver.url_for_stack(&request_id, &stack_id);
        event.insert("RequestId".into(), json!(request_id));
        event.insert("ResponseURL".into(), json!(url));
        self.deliver(Value::Object(event), &request_id, signature)
            .await
    }

    /// One Create delivered twice at once, as Lambda may (two execution environments: this
    /// player's function and `other`, the second `stagger` after the first). Returns what each
    /// accepted PUT said, in the order they arrived; CloudFormation keeps the first.
    pub async fn create_twice(
        &self,
        other: &LambdaFunction,
        logical_id: &str,
        properties: Value,
        stagger: Duration,
    ) -> Vec<(String, String, String)> {
        let event = self.event("Create", logical_id, properties, None, None);
        self.deliver_twice(other, event, stagger).await
    }

    /// Any request (an [`Player::event`]) delivered twice at once, as [`Player::create_twice`].
    pub async fn deliver_twice(
        &self,
        other: &LambdaFunction,
        mut event: Map<String, Value>,
        stagger: Duration,
    ) -> Vec<(String, String, String)> {
        let request_id = crate::random_uuid();
        let (url, _) = self.receiver.url_for_stack(&request_id, &self.stack_id);
        event.insert("RequestId".into(), json!(request_id));
        event.insert("ResponseURL".into(), json!(url));
        let event = Value::Object(event);
        let second = async {
            tokio::time::sleep(stagger).await;
            other.invoke_async(&event, self.retry_delay).await
        };
        tokio::join!(self.function.invoke_async(&event, self.retry_delay), second);
        self.receiver
            .wait_accepted(&request_id, self.answer_timeout)
            .await
            .unwrap_or_else(|| panic!("no response reached CloudFormation for {request_id}"));
        // Each delivery answers, the one that continued in further invocations included.
        let deadline = tokio::time::Instant::now() + self.answer_timeout;
        while self.accepted(&request_id) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(self.grace).await;
        self.receiver
            .puts_for(&request_id)
            .iter()
            .filter(|p| p.http_status == 200)
            .map(|p| {
                let doc: Value = serde_json::from_slice(&p.body).unwrap_or_default();
                let text = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
                (text("Status"), text("PhysicalResourceId"), text("Reason"))
            })
            .collect()
    }

    fn accepted(&self, request_id: &str) -> usize {
        self.receiver
            .puts_for(request_id)
            .iter()
            .filter(|p| p.http_status == 200)
            .count()
    }

    /// A request of `request_type` as CloudFormation sends it, without its RequestId and
    /// ResponseURL (the player adds them when it sends it).
    pub fn event(
        &self,
        request_type: &str,
        logical_id: &str,
        properties: Value,
        old_properties: Option<Value>,
        physical_id: Option<&str>,
    ) -> Map<String, Value> {
        let mut props = properties;
        if let Some(map) = props.as_object_mut() {
            map.insert("ServiceToken".into(), json!(self.function.config().arn()));
        }
        let mut event = Map::new();
        event.insert("RequestType".into(), json!(request_type));
        event.insert("ServiceToken".into(), json!(self.function.config().arn()));
        event.insert("StackId".into(), json!(self.stack_id));
        event.insert("ResourceType".into(), json!(self.resource_type));
        event.insert("LogicalResourceId".into(), json!(logical_id));
        event.insert("ResourceProperties".into(), props);
        if let Some(old) = old_properties {
            event.insert("OldResourceProperties".into(), old);
        }
        if let Some(id) = physical_id {
            event.insert("PhysicalResourceId".into(), json!(id));
        }
        event
    }

    async fn send(
        &self,
        request_type: &str,
        logical_id: &str,
        properties: Value,
        old_properties: Option<Value>,
        physical_id: Option<&str>,
    ) -> Answer {
        let event = self.event(
            request_type,
            logical_id,
            properties,
            old_properties,
            physical_id,
        );
        self.send_event(event).await
    }

    /// Invoke (with Lambda's async retries), then insist on exactly one valid accepted PUT.
    async fn deliver(&self, event: Value, request_id: &str, signature: String) -> Answer {
        let invocations = self.function.invoke_async(&event, self.retry_delay).await;
        let accepted = self
            .receiver
            .wait_accepted(request_id, self.answer_timeout)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no response reached CloudFormation for {request_id}: the stack would hang \
                     (invocations: {invocations:?})"
                )
            });
        tokio::time::sleep(self.grace).await;
        let all = self.receiver.puts_for(request_id);
        let accepted_count = all.iter().filter(|p| p.http_status == 200).count();
        assert_eq!(
            accepted_count, 1,
            "CloudFormation got {accepted_count} responses for one request"
        );
        assert!(
            accepted.problems.is_empty(),
            "invalid response: {:?}",
            accepted.problems
        );
        let doc: Value = serde_json::from_slice(&accepted.body).unwrap_or_default();
        let text = |k: &str| doc[k].as_str().unwrap_or_default().to_owned();
        Answer {
            request_id: request_id.to_owned(),
            status: text("Status"),
            reason: text("Reason"),
            physical_id: text("PhysicalResourceId"),
            logical_id: text("LogicalResourceId"),
            data: doc["Data"].as_object().cloned().unwrap_or_default(),
            no_echo: doc["NoEcho"].as_bool().unwrap_or(false),
            invocations,
            signature,
            answered: accepted.received,
        }
    }
}
