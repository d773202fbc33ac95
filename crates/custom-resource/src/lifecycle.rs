//! The typed lifecycle a resource implements, and what a handler returns.

use crate::request::Request;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tracing::info;

/// A custom resource. Each method gets the parsed request and a [`Context`]; what it returns (or
/// the panic, or the deadline) becomes the one response CloudFormation receives.
pub trait CustomResource: Send + Sync {
    fn create(
        &self,
        request: &Request,
        ctx: &Context,
    ) -> impl Future<Output = Result<Progress<Outcome>, Failure>> + Send;

    /// Return the same physical id to update in place; a different one means replacement, and
    /// CloudFormation will later send a Delete for the old id.
    fn update(
        &self,
        request: &Request,
        ctx: &Context,
    ) -> impl Future<Output = Result<Progress<Outcome>, Failure>> + Send;

    /// Must be idempotent: something already gone is a success.
    fn delete(
        &self,
        request: &Request,
        ctx: &Context,
    ) -> impl Future<Output = Result<Progress<()>, Failure>> + Send;
}

/// Where a lifecycle method got to.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<T> {
    /// Finished: answer CloudFormation.
    Done(T),
    /// Not finished, and this invocation is running out of time: the framework invokes the
    /// function again (asynchronously) with this state, which the next call reads from
    /// [`Context::state`]. Only the invocation that finishes answers CloudFormation.
    Continue(serde_json::Value),
}

/// A successful Create or Update.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub physical_id: String,
    /// Readable with `Fn::GetAtt`.
    pub data: BTreeMap<String, String>,
    /// Mask `data` in the console and in `describe-stack-resource` output.
    pub no_echo: bool,
}

impl Outcome {
    pub fn new(physical_id: impl Into<String>) -> Self {
        Self {
            physical_id: physical_id.into(),
            ..Self::default()
        }
    }

    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.data.insert(key.into(), value.into());
        self
    }
}

/// A failed request. The reason becomes the `Reason` shown in the console: write it for the
/// person who has to fix the template or the account.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub reason: String,
    /// The id to answer with; defaults to the request's id, or the failed-create marker.
    pub physical_id: Option<String>,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            physical_id: None,
        }
    }

    /// For a Create that made something before it failed: the rollback Delete gets this id.
    pub fn with_physical_id(mut self, id: impl Into<String>) -> Self {
        self.physical_id = Some(id.into());
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Any error becomes a Failure whose reason is its [`error_chain`].
impl<E: std::error::Error> From<E> for Failure {
    fn from(err: E) -> Self {
        Self::new(error_chain(&err))
    }
}

/// An error's message and its sources', joined by ": "; a source whose message the text already
/// holds (an error that prints its source too) is not repeated, and the chain ends at an
/// [`AwsError`](crate::aws::AwsError), whose message already says what the SDK's chain below it does.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        if e.is::<crate::aws::AwsError>() {
            break;
        }
        source = e.source();
    }
    text
}

/// What a handler can tell the framework while it works, the time it has left, and where an
/// earlier invocation of the same request left off.
#[derive(Debug, Clone)]
pub struct Context {
    step: Arc<Mutex<Cow<'static, str>>>,
    physical_id: Arc<Mutex<Option<String>>>,
    started: Instant,
    deadline: Instant,
    continued: Option<Continued>,
}

/// The state a previous invocation handed on with [`Progress::Continue`].
#[derive(Debug, Clone, PartialEq)]
pub struct Continued {
    pub state: serde_json::Value,
    /// How many invocations came before this one.
    pub round: u32,
    /// When the first invocation for this request started.
    pub first_started: SystemTime,
}

impl Context {
    pub(crate) fn new(deadline: Instant, continued: Option<Continued>) -> Self {
        Self {
            step: Arc::new(Mutex::new(Cow::Borrowed("starting"))),
            physical_id: Arc::new(Mutex::new(None)),
            started: Instant::now(),
            deadline,
            continued,
        }
    }

    /// The state handed on by the previous invocation, if this one continues a request.
    pub fn state(&self) -> Option<&serde_json::Value> {
        self.continued.as_ref().map(|c| &c.state)
    }

    pub fn continued(&self) -> Option<&Continued> {
        self.continued.as_ref()
    }

    /// When work on this request began (the first invocation), for overall deadlines.
    pub fn first_started(&self) -> SystemTime {
        self.continued.as_ref().map_or_else(
            || SystemTime::now() - self.started.elapsed(),
            |c| c.first_started,
        )
    }

    /// Record (and log) what the handler is doing now, so that a timeout or a panic can say where
    /// it happened.
    pub fn step(&self, what: impl Into<Cow<'static, str>>) {
        let what = what.into();
        info!(step = %what, "step");
        if let Ok(mut step) = self.step.lock() {
            *step = what;
        }
    }

    pub fn current_step(&self) -> String {
        self.step
            .lock()
            .map(|s| s.to_string())
            .unwrap_or_else(|_| "an unknown step".to_owned())
    }

    /// Record the physical id of what this Create is making, as soon as it is known (before the
    /// call that makes it, when the id is chosen rather than given). Every later way this
    /// invocation can end without the handler's own answer (timeout, panic, a failed hand-over,
    /// an error without an id of its own) answers with it, so the rollback Delete gets it.
    pub fn record_physical_id(&self, id: impl Into<String>) {
        let id = id.into();
        info!(physical_id = %id, "physical id recorded");
        if let Ok(mut recorded) = self.physical_id.lock() {
            *recorded = Some(id);
        }
    }

    /// The id recorded with [`Context::record_physical_id`], if any.
    pub fn recorded_physical_id(&self) -> Option<String> {
        self.physical_id.lock().ok().and_then(|id| id.clone())
    }

    /// How long one call may take: at most `cap`, and never past the time the framework must
    /// answer, so that no single call outlives the invocation's answer.
    pub fn call_budget(&self, cap: Duration) -> Duration {
        self.remaining().min(cap)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn answer_by(&self) -> Instant {
        self.deadline
    }

    /// Time left before the framework must answer.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}
