//! A Lambda Runtime API that runs the compiled function binary, as Lambda does.
//!
//! Each process gets its own Runtime API server (so a killed process can never take a later
//! invocation), Lambda's environment variables, the standard `/next` headers (request id, deadline,
//! function ARN, trace id), and is killed when an invocation outlives the function's timeout. The
//! next invocation then starts a fresh process: a cold start, as on Lambda.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// How one invocation ended, as the Lambda service sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The runtime posted a response.
    Response(Vec<u8>),
    /// The runtime posted an error (`/error`).
    Error(Value),
    /// The invocation outlived the timeout; the process was killed.
    TimedOut,
    /// The process exited during the invocation.
    Crashed(Option<i32>),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Response(_))
    }
}

/// A function's configuration.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub name: String,
    pub binary: PathBuf,
    /// Arguments to the binary (a Python baseline runs as `python -m awslambdaric module.handler`).
    pub args: Vec<String>,
    pub timeout: Duration,
    pub memory_mb: u32,
    pub region: String,
    pub account_id: String,
    /// Extra environment (e.g. `AWS_ENDPOINT_URL`).
    pub env: Vec<(String, String)>,
}

impl FunctionConfig {
    pub fn new(name: &str, binary: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            binary,
            args: Vec::new(),
            timeout: Duration::from_secs(30),
            memory_mb: 128,
            region: "us-east-2".to_owned(),
            account_id: "123456789012".to_owned(),
            env: Vec::new(),
        }
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.name
        )
    }
}

struct Pending {
    id: String,
    body: Vec<u8>,
    deadline_ms: u64,
}

struct Api {
    queue: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    inflight: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    function_arn: String,
    /// When the process first polled `/next`: the end of its start-up (init).
    first_poll: OnceLock<Instant>,
    polled: Notify,
}

struct Process {
    child: Child,
    spawned: Instant,
    queue: mpsc::Sender<Pending>,
    api: Arc<Api>,
    server: JoinHandle<()>,
}

impl Drop for Process {
    fn drop(&mut self) {
        self.server.abort();
        let _ = self.child.start_kill();
    }
}

/// The current process of a function, for the benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct ProcessInfo {
    pub pid: Option<u32>,
    /// Just before `exec`.
    pub spawned: Instant,
    /// Its first `/next` poll, once made.
    pub first_poll: Option<Instant>,
}

impl ProcessInfo {
    /// Exec to the first `/next` poll.
    pub fn start_up(&self) -> Option<Duration> {
        self.first_poll.map(|t| t.duration_since(self.spawned))
    }
}

/// A deployed function: invocations run one at a time, in a process kept warm between them.
pub struct LambdaFunction {
    config: FunctionConfig,
    process: tokio::sync::Mutex<Option<Process>>,
    /// The pid of the process started last, to kill it mid-invocation ([`LambdaFunction::crash`]).
    pid: Mutex<Option<u32>>,
    logs: Arc<Mutex<Vec<String>>>,
    cold_starts: Mutex<u32>,
}

impl LambdaFunction {
    pub fn new(config: FunctionConfig) -> Self {
        Self {
            config,
            process: tokio::sync::Mutex::new(None),
            pid: Mutex::new(None),
            logs: Arc::default(),
            cold_starts: Mutex::new(0),
        }
    }

    pub fn config(&self) -> &FunctionConfig {
        &self.config
    }

    /// Every line the function's processes wrote to stdout and stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn cold_starts(&self) -> u32 {
        self.cold_starts.lock().map(|c| *c).unwrap_or_default()
    }

    /// The process kept warm, if one is alive.
    pub async fn process(&self) -> Option<ProcessInfo> {
        let slot = self.process.lock().await;
        slot.as_ref().map(|p| ProcessInfo {
            pid: p.child.id(),
            spawned: p.spawned,
            first_poll: p.api.first_poll.get().copied(),
        })
    }

    /// Start a process (cold) without invoking it, and wait until it polls `/next` (or the
    /// timeout passes): a start-up alone.
    pub async fn start_cold(&self) -> Option<ProcessInfo> {
        let mut slot = self.process.lock().await;
        *slot = None;
        let process = self.start().await;
        let api = process.api.clone();
        *slot = Some(process);
        drop(slot);
        let polled = api.polled.notified();
        if api.first_poll.get().is_none() {
            let _ = tokio::time::timeout(self.config.timeout, polled).await;
        }
        self.process().await
    }

    /// Kill the process with SIGKILL wherever it is, as a crash would (a panic under
    /// `panic = "abort"`, running out of memory): the invocation ends without an answer, and an
    /// asynchronous invocation is retried by Lambda in a new process.
    pub fn crash(&self) {
        let pid = self.pid.lock().ok().and_then(|p| *p);
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// Stop the warm process: the next invocation starts cold.
    pub async fn stop(&self) {
        *self.process.lock().await = None;
    }

    /// One synchronous invocation.
    pub async fn invoke(&self, event: &Value) -> Outcome {
        let mut slot = self.process.lock().await;
        let alive = match slot.as_mut() {
            Some(p) => matches!(p.child.try_wait(), Ok(None)),
            None => false,
        };
        if !alive {
            *slot = Some(self.start().await);
        }
        let Some(process) = slot.as_mut() else {
            unreachable!("a process was just started")
        };
        let id = crate::random_uuid();
        let deadline_ms = now_ms() + self.config.timeout.as_millis() as u64;
        let (tx, rx) = oneshot::channel();
        if let Ok(mut inflight) = process.api.inflight.lock() {
            inflight.insert(id.clone(), tx);
        }
        let pending = Pending {
            id,
            body: serde_json::to_vec(event).unwrap_or_default(),
            deadline_ms,
        };
        if process.queue.send(pending).await.is_err() {
            *slot = None;
            return Outcome::Crashed(None);
        }
        let outcome = tokio::select! {
            outcome = rx => outcome.unwrap_or(Outcome::Crashed(None)),
            () = tokio::time::sleep(self.config.timeout) => Outcome::TimedOut,
            status = process.child.wait() => Outcome::Crashed(status.ok().and_then(|s| s.code())),
        };
        if !outcome.is_success() && !matches!(outcome, Outcome::Error(_)) {
            *slot = None; // killed (timeout) or dead (crash): the next invocation starts cold
        }
        outcome
    }

    /// An asynchronous invocation, as CloudFormation makes: on a function error, timeout or
    /// crash, Lambda tries twice more. Returns every attempt's outcome.
    pub async fn invoke_async(&self, event: &Value, retry_delay: Duration) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(retry_delay).await;
            }
            let outcome = self.invoke(event).await;
            let done = outcome.is_success();
            outcomes.push(outcome);
            if done {
                break;
            }
        }
        outcomes
    }

    async fn start(&self) -> Process {
        if let Ok(mut c) = self.cold_starts.lock() {
            *c += 1;
        }
        let (queue, rx) = mpsc::channel(1);
        let api = Arc::new(Api {
            queue: tokio::sync::Mutex::new(rx),
            inflight: Mutex::default(),
            function_arn: self.config.arn(),
            first_poll: OnceLock::new(),
            polled: Notify::new(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let (addr, server) = crate::server::spawn(router).await;
        let c = &self.config;
        let mut command = Command::new(&c.binary);
        command
            .args(&c.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &c.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", c.memory_mb.to_string())
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", c.name),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("2026/11/25/[$LATEST]{}", crate::random_hex(32)),
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_REGION", &c.region)
            .env("AWS_DEFAULT_REGION", &c.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing-session")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("LAMBDA_RUNTIME_DIR", "/var/runtime")
            .env("TZ", ":UTC")
            .envs(c.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = Instant::now();
        let mut child = command.spawn().expect("start the function binary");
        if let Ok(mut pid) = self.pid.lock() {
            *pid = child.id();
        }
        pump(child.stdout.take(), self.logs.clone());
        pump(child.stderr.take(), self.logs.clone());
        Process {
            child,
            spawned,
            queue,
            api,
            server,
        }
    }
}

fn pump(stream: Option<impl AsyncRead + Unpin + Send + 'static>, logs: Arc<Mutex<Vec<String>>>) {
    let Some(stream) = stream else { return };
    let echo = std::env::var_os("BENCH_ECHO_LOGS").is_some();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("{line}");
            }
            if let Ok(mut logs) = logs.lock() {
                logs.push(line);
            }
        }
    });
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

async fn next(State(api): State<Arc<Api>>) -> impl IntoResponse {
    if api.first_poll.set(Instant::now()).is_ok() {
        api.polled.notify_waiters();
    }
    let pending = api.queue.lock().await.recv().await;
    let Some(pending) = pending else {
        return (StatusCode::GONE, HeaderMap::new(), Vec::new());
    };
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("content-type", "application/json".to_owned());
    set("lambda-runtime-aws-request-id", pending.id);
    set(
        "lambda-runtime-deadline-ms",
        pending.deadline_ms.to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        api.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{}-{};Parent={};Sampled=0",
            crate::random_hex(8),
            crate::random_hex(24),
            crate::random_hex(16)
        ),
    );
    (StatusCode::OK, headers, pending.body)
}

fn finish(api: &Api, id: &str, outcome: Outcome) -> (StatusCode, Json<Value>) {
    let sender = api.inflight.lock().ok().and_then(|mut m| m.remove(id));
    match sender {
        Some(tx) => {
            let _ = tx.send(outcome);
            (StatusCode::ACCEPTED, Json(json!({"status": "OK"})))
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"errorType": "InvalidRequestID", "errorMessage": "unknown request id"})),
        ),
    }
}

async fn response(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    finish(&api, &id, Outcome::Response(body.to_vec()))
}

async fn error(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    finish(&api, &id, Outcome::Error(value))
}

async fn init_error(body: axum::body::Bytes) -> impl IntoResponse {
    eprintln!("function init error: {}", String::from_utf8_lossy(&body));
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"})))
}
