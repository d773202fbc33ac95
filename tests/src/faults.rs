//! A proxy in front of moto that injects the failures AWS has: throttling, 5xx, slow answers.
//! It also plays Lambda's `Invoke` API for the functions registered with it (moto would try to run
//! them in Docker), so a function that hands a request on to a new invocation of itself is run
//! through the bench's Runtime API, as Lambda would.
//!
//! A rule matches a substring of `"METHOD /path?query body"` (so `"Action=DescribeVpcs"` picks an
//! EC2 call, `"GET /clusters/"` EKS's DescribeCluster) and fires a bounded number of times. Errors
//! are shaped as each protocol shapes them, so the SDK classifies them as AWS's would be.

use crate::lambda::LambdaFunction;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The service's throttling error (EKS 429 ThrottlingException, EC2 RequestLimitExceeded,
    /// IAM Throttling).
    Throttle,
    /// HTTP 500 with the service's internal-error code.
    ServerError,
    /// Forward the request, but only after this long.
    Delay(Duration),
    /// Forward the request at once (AWS applies it), but answer only after this long: a slow
    /// answer, or with a long enough wait, one the client gives up on.
    AnswerAfter(Duration),
    /// Forward the request (AWS applies it), then close the connection without an answer: the
    /// reply lost between a side effect and the caller.
    DropAnswer,
    /// Forward the request (AWS applies it), then kill the registered functions' processes
    /// ([`LambdaFunction::crash`]) before they see the answer.
    Crash,
}

#[derive(Debug, Clone)]
struct Rule {
    needle: String,
    fault: Fault,
    /// Matching requests to let through before the fault fires.
    skip: usize,
    remaining: usize,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    functions: Mutex<Vec<Arc<LambdaFunction>>>,
    /// `"METHOD /path body"` of every request seen, for counting API calls.
    seen: Mutex<Vec<String>>,
    /// When each forwarded request was waiting for moto (the emulator's share of an invocation).
    upstream: Mutex<Vec<(Instant, Instant)>>,
    /// The bench's IAM, when a stack installed it: asked before a request goes anywhere.
    authorizer: Mutex<Option<Arc<dyn Authorizer>>>,
}

/// A request as IAM sees it: what it asks (as [`FaultProxy::requests`] records it) and who asks
/// (the access key id its signature names).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub request: &'a str,
    pub access_key: Option<&'a str>,
}

/// Decides whether a call may be made (the bench's IAM, [`crate::iam`]). `Err(message)` denies
/// it: the proxy answers as the service answers a call its caller's policies deny.
pub trait Authorizer: Send + Sync {
    fn authorize<'a>(
        &'a self,
        call: Call<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// The proxy; its [`FaultProxy::endpoint`] goes into `AWS_ENDPOINT_URL`.
#[derive(Clone)]
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
}

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
    shared: Arc<Shared>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> Self {
        let shared: Arc<Shared> = Arc::default();
        let state = Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            shared: shared.clone(),
        };
        let router = Router::new().fallback(forward).with_state(state);
        let (addr, _) = crate::server::spawn(router).await;
        Self {
            endpoint: format!("http://{addr}"),
            shared,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Serve Lambda `Invoke` for `function` (by name or ARN), in place of an earlier
    /// configuration of the same function.
    pub fn register_function(&self, function: Arc<LambdaFunction>) {
        if let Ok(mut functions) = self.shared.functions.lock() {
            functions.retain(|f| f.config().name != function.config().name);
            functions.push(function);
        }
    }

    /// Inject `fault` into the next `times` requests that contain `needle`.
    pub fn inject(&self, needle: &str, fault: Fault, times: usize) {
        self.inject_after(needle, 0, fault, times);
    }

    /// The same, once `skip` requests containing `needle` have gone through untouched (the
    /// second of two identical calls, say).
    pub fn inject_after(&self, needle: &str, skip: usize, fault: Fault, times: usize) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(Rule {
                needle: needle.to_owned(),
                fault,
                skip,
                remaining: times,
            });
        }
    }

    /// Check every request with `authorizer` before it is served (one at a time: a later call
    /// replaces it).
    pub fn authorize_with(&self, authorizer: Arc<dyn Authorizer>) {
        if let Ok(mut slot) = self.shared.authorizer.lock() {
            *slot = Some(authorizer);
        }
    }

    /// How many injected faults have not fired yet.
    pub fn unfired(&self) -> usize {
        self.shared
            .rules
            .lock()
            .map(|rules| rules.iter().map(|r| r.remaining).sum())
            .unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.clear();
        }
        if let Ok(mut seen) = self.shared.seen.lock() {
            seen.clear();
        }
        if let Ok(mut upstream) = self.shared.upstream.lock() {
            upstream.clear();
        }
    }

    /// How long at least one request was waiting for moto since the last
    /// [`FaultProxy::clear`] (concurrent requests overlap: the union of their waits).
    pub fn upstream_time(&self) -> Duration {
        let mut spans = self
            .shared
            .upstream
            .lock()
            .map(|u| u.clone())
            .unwrap_or_default();
        spans.sort();
        let mut total = Duration::ZERO;
        let mut covered: Option<Instant> = None;
        for (start, end) in spans {
            let from = covered.map_or(start, |c| c.max(start));
            total += end.saturating_duration_since(from);
            covered = Some(covered.map_or(end, |c| c.max(end)));
        }
        total
    }

    /// How many requests so far contained `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.shared
            .seen
            .lock()
            .map(|s| s.iter().filter(|r| r.contains(needle)).count())
            .unwrap_or_default()
    }

    /// Every request seen, as `"METHOD /path x-amz-target body"`.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Every request seen, as the IAM action it needs (`eks:DescribeCluster`).
    pub fn actions(&self) -> Vec<String> {
        self.requests().iter().map(|r| action(r)).collect()
    }
}

async fn forward(
    State(up): State<Upstream>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let key = format!(
        "{method} {path} {target} {}",
        String::from_utf8_lossy(&body)
    );
    if let Ok(mut seen) = up.shared.seen.lock() {
        seen.push(key.clone());
    }
    if let Err(message) = authorized(&up.shared, &key, &headers).await {
        return access_denied(&key, &message);
    }
    let fault = up.shared.rules.lock().ok().and_then(|mut rules| {
        let rule = rules
            .iter_mut()
            .find(|r| r.remaining > 0 && key.contains(&r.needle))?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.remaining -= 1;
        Some(rule.fault)
    });
    match fault {
        Some(Fault::Throttle) => return error_response(&key, true),
        Some(Fault::ServerError) => return error_response(&key, false),
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::AnswerAfter(_) | Fault::DropAnswer | Fault::Crash) | None => {}
    }
    let answer = match invoke(&up.shared, &method, path, &headers, &body) {
        Some(response) => response,
        None => forward_timed(&up, method, path, &headers, body).await,
    };
    match fault {
        Some(Fault::AnswerAfter(d)) => {
            tokio::time::sleep(d).await;
            answer
        }
        // Unwinding out of the handler makes the server drop the connection unanswered, which
        // is what a client sees when the network fails after the request was applied.
        Some(Fault::DropAnswer) => std::panic::resume_unwind(Box::new("answer dropped")),
        Some(Fault::Crash) => {
            let functions = up
                .shared
                .functions
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default();
            for function in functions {
                function.crash();
            }
            std::panic::resume_unwind(Box::new("caller crashed"))
        }
        _ => answer,
    }
}

async fn forward_timed(
    up: &Upstream,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut request = up.http.request(method, format!("{}{path}", up.base));
    for (name, value) in headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    let started = Instant::now();
    let answer = forward_upstream(request.body(body)).await;
    if let Ok(mut upstream) = up.shared.upstream.lock() {
        upstream.push((started, Instant::now()));
    }
    answer
}

async fn forward_upstream(request: reqwest::RequestBuilder) -> Response {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status();
            let mut out = HeaderMap::new();
            for (name, value) in resp.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    out.insert(name, value.clone());
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            (status, out, bytes).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Lambda's `Invoke` (`POST /2015-03-31/functions/{name}/invocations`) for a registered function:
/// `Event` invocations are queued (202) and run as Lambda runs them, retries included.
fn invoke(
    shared: &Shared,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let name = path
        .strip_prefix("/2015-03-31/functions/")?
        .split('/')
        .next()?
        .replace("%3A", ":")
        .replace("%3a", ":");
    if method != Method::POST || !path.contains("/invocations") {
        return None;
    }
    let function = shared
        .functions
        .lock()
        .ok()?
        .iter()
        .find(|f| {
            let config = f.config();
            config.name == name || config.arn() == name
        })?
        .clone();
    let event: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if kind != "Event" {
        return Some(
            (
                StatusCode::BAD_REQUEST,
                "the bench serves Event invocations only",
            )
                .into_response(),
        );
    }
    tokio::spawn(async move {
        function
            .invoke_async(&event, Duration::from_millis(200))
            .await;
    });
    Some(
        (
            StatusCode::ACCEPTED,
            [("x-amz-executed-version", "$LATEST")],
            "",
        )
            .into_response(),
    )
}

/// Whether the installed authorizer (if any) lets the caller make the request `key`.
async fn authorized(shared: &Shared, key: &str, headers: &HeaderMap) -> Result<(), String> {
    let Some(authorizer) = shared.authorizer.lock().ok().and_then(|a| a.clone()) else {
        return Ok(());
    };
    // SigV4: `Credential=<access key id>/<date>/<region>/<service>/aws4_request`.
    let access_key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').next());
    authorizer
        .authorize(Call {
            request: key,
            access_key,
        })
        .await
}

/// A call denied by IAM, answered in the shape of the protocol the request used, as the service
/// answers it (EC2 `UnauthorizedOperation`, IAM/STS `AccessDenied`, `AccessDeniedException`
/// elsewhere), so the SDK reports it as AWS's would be.
fn access_denied(key: &str, message: &str) -> Response {
    let request_id = crate::random_uuid();
    let xml_message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if key.contains("Version=2016-11-15") {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>UnauthorizedOperation</Code>\
             <Message>{xml_message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        );
        return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], body).into_response();
    }
    if action(key).starts_with("s3:") {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
             <Message>{xml_message}</Message><RequestId>{request_id}</RequestId></Error>"
        );
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            body,
        )
            .into_response();
    }
    if key.contains("Action=") {
        let body = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{xml_message}\
             </Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        );
        return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], body).into_response();
    }
    // JSON 1.1 (ECR, Secrets Manager: the operation in X-Amz-Target) answer 400, REST-JSON
    // (EKS, Lambda) 403.
    let json_1_1 = key.split(' ').nth(2).is_some_and(|t| t != "-");
    let status = if json_1_1 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::FORBIDDEN
    };
    let body = serde_json::json!({"__type": "AccessDeniedException", "message": message});
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", "AccessDeniedException"),
            ("x-amzn-requestid", request_id.as_str()),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The IAM action a request (as [`FaultProxy::requests`] records it) needs.
pub fn action(request: &str) -> String {
    let mut parts = request.splitn(4, ' ');
    let (method, path, target, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // JSON 1.1 protocols name the operation in X-Amz-Target.
    if let Some((prefix, operation)) = target.split_once('.') {
        let service = match prefix {
            "secretsmanager" => "secretsmanager",
            p if p.starts_with("AmazonEC2ContainerRegistry") => "ecr",
            other => other,
        };
        return format!("{service}:{operation}");
    }
    // Query protocols: Action= in the form body, the service from its Version.
    if let Some(operation) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        let service = if body.contains("Version=2016-11-15") {
            "ec2"
        } else if body.contains("Version=2011-06-15") {
            "sts"
        } else {
            "iam"
        };
        return format!("{service}:{operation}");
    }
    // S3 (path-style, as the SDK addresses it on an IP endpoint): `GET /<bucket>?location`.
    if let ("GET", Some((bucket, "location"))) = (method, path.split_once('?'))
        && !bucket.trim_matches('/').contains('/')
    {
        return "s3:GetBucketLocation".to_owned();
    }
    // REST: EKS and Lambda.
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let operation = match (method, segments.as_slice()) {
        ("POST", ["2015-03-31", "functions", _, "invocations"]) => "lambda:InvokeFunction",
        ("GET", ["clusters", _]) => "eks:DescribeCluster",
        ("POST", ["clusters", _, "access-entries"]) => "eks:CreateAccessEntry",
        ("GET", ["clusters", _, "access-entries"]) => "eks:ListAccessEntries",
        ("GET", ["clusters", _, "access-entries", _]) => "eks:DescribeAccessEntry",
        ("DELETE", ["clusters", _, "access-entries", _]) => "eks:DeleteAccessEntry",
        ("POST", ["clusters", _, "access-entries", _, "access-policies"]) => {
            "eks:AssociateAccessPolicy"
        }
        ("GET", ["clusters", _, "access-entries", _, "access-policies"]) => {
            "eks:ListAssociatedAccessPolicies"
        }
        ("DELETE", ["clusters", _, "access-entries", _, "access-policies", _]) => {
            "eks:DisassociateAccessPolicy"
        }
        // The resource's ARN, URL-encoded, is one segment.
        ("POST", ["tags", _]) => "eks:TagResource",
        ("DELETE", ["tags", _]) => "eks:UntagResource",
        _ => return format!("unknown:{method} {path}"),
    };
    operation.to_owned()
}

/// Every call `proxy` saw must be one of `allowed` (the function's declared IAM actions);
/// `sts:GetCallerIdentity` needs no permission.
pub fn assert_calls_within(proxy: &FaultProxy, allowed: &[&str]) {
    for action in proxy.actions() {
        assert!(
            action == "sts:GetCallerIdentity" || allowed.contains(&action.as_str()),
            "the function called {action}, which its IAM_ACTIONS (and so its role) do not list"
        );
    }
}

/// An error in the shape of the protocol the request used.
fn error_response(key: &str, throttle: bool) -> Response {
    let request_id = crate::random_uuid();
    if key.contains("Version=2016-11-15") {
        // EC2 query protocol
        let (status, code) = if throttle {
            (StatusCode::SERVICE_UNAVAILABLE, "RequestLimitExceeded")
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
             <Message>Injected by the bench</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        );
        return (status, [("content-type", "text/xml")], body).into_response();
    }
    if key.contains("Action=") {
        // IAM / STS query protocol
        let (status, code, kind) = if throttle {
            (StatusCode::BAD_REQUEST, "Throttling", "Sender")
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceFailure",
                "Receiver",
            )
        };
        let body = format!(
            "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>Injected by the \
             bench</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        );
        return (status, [("content-type", "text/xml")], body).into_response();
    }
    // REST-JSON (EKS)
    let (status, code, message) = if throttle {
        (
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlingException",
            "Rate exceeded",
        )
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            "Injected by the bench",
        )
    };
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-amzn-errortype", code),
            ("x-amzn-requestid", request_id.as_str()),
        ],
        format!("{{\"message\":\"{message}\"}}"),
    )
        .into_response()
}
