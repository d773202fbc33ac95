//! One invocation: parse, run the lifecycle under a panic guard and a timer, answer exactly once.

use crate::lifecycle::{Context, CustomResource, Failure, Outcome, Progress};
use crate::request::{self, Action, ParseError, Reply, Request};
use crate::response::{self, Response, Status};
use crate::sender::{Delivery, Sender};
use futures_util::FutureExt;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

/// Prefix of the physical id answered for a Create that failed before it knew of anything it
/// made. CloudFormation's rollback then sends a Delete with this id; the resource's Delete still
/// runs and removes whatever it owns ([`crate::Owner`]), since the Create may have made something
/// whose answer was lost.
pub const FAILED_CREATE_PREFIX: &str = "failed-create:";

/// The most the framework keeps back before Lambda's deadline to answer FAILED in time: room for
/// a few attempts of the response PUT ([`Sender::send`] sizes them to what is left).
const MAX_SAFETY_MARGIN: Duration = Duration::from_secs(10);
/// Kept back from Lambda's own deadline for the end of the invocation (the runtime's report).
const KILL_SLACK: Duration = Duration::from_millis(250);

/// How a function hands a request on to a new invocation of itself ([`Progress::Continue`]).
pub trait Reinvoke: Send + Sync {
    /// Invoke `function_arn` asynchronously with `payload`.
    fn reinvoke(
        &self,
        function_arn: &str,
        payload: Vec<u8>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// For resources that always finish in one invocation.
pub struct NoReinvoke;

impl Reinvoke for NoReinvoke {
    async fn reinvoke(&self, _: &str, _: Vec<u8>) -> Result<(), String> {
        Err("this function cannot continue a request in another invocation".to_owned())
    }
}

/// What one invocation ends with.
enum Ending {
    Answer(Response),
    Continue(Value),
}

/// Handle one Lambda event. Returns `Err` only when no response could be delivered (so Lambda's
/// own retry of the asynchronous invocation gets another chance) or the event was not a
/// custom-resource request at all.
pub async fn handle<R: CustomResource>(
    resource: &R,
    sender: &Sender,
    reinvoke: &impl Reinvoke,
    event: LambdaEvent<Value>,
) -> Result<(), lambda_runtime::Error> {
    let kill_at = lambda_deadline(event.context.deadline);
    let answer_by = answer_by(kill_at);
    let aws_request_id = event.context.request_id;
    let function_arn = event.context.invoked_function_arn;
    let (reply, request) = match request::parse(event.payload) {
        Ok(parsed) => parsed,
        Err(ParseError::NotCustomResource(why)) => {
            error!(%aws_request_id, error = %why, "event ignored");
            return Err(why.into());
        }
        Err(ParseError::Malformed {
            reply,
            physical_id,
            reason,
        }) => {
            let span = span(&reply, "unknown", &aws_request_id);
            let id = physical_id.unwrap_or_else(|| failed_create_id(&reply));
            return answer(sender, *reply, Response::failed(id, reason), kill_at)
                .instrument(span)
                .await;
        }
    };
    let span = span(&reply, request.action.name(), &aws_request_id);
    async move {
        info!(
            resource_type = %request.envelope.resource_type,
            physical_id = request.action.physical_id().unwrap_or(""),
            round = request.continued.as_ref().map_or(0, |c| c.round),
            "request received"
        );
        let ctx = Context::new(answer_by, request.continued.clone());
        let response = match run(resource, &request, &reply, &ctx).await {
            Ending::Answer(response) => response,
            Ending::Continue(state) => {
                let payload =
                    reply.continuation(state, request.continued.as_ref(), ctx.first_started());
                // Bounded by the answer's time, so that a hung call still leaves the margin to
                // answer FAILED.
                let handed = tokio::time::timeout_at(
                    ctx.answer_by(),
                    reinvoke.reinvoke(&function_arn, payload),
                )
                .await
                .unwrap_or_else(|_| Err("lambda:Invoke did not answer in time".to_owned()));
                match handed {
                    Ok(()) => {
                        info!(step = %ctx.current_step(), "continuing in a new invocation");
                        return Ok(()); // the Reply went with the payload: the next invocation answers
                    }
                    Err(why) => Response::failed(
                        fallback_id(&request, &reply, &ctx),
                        format!(
                            "could not continue in a new invocation while {}: {why}",
                            ctx.current_step()
                        ),
                    ),
                }
            }
        };
        answer(sender, reply, response, kill_at).await
    }
    .instrument(span)
    .await
}

fn span(reply: &Reply, request_type: &str, aws_request_id: &str) -> tracing::Span {
    let envelope = reply.envelope();
    info_span!(
        "custom_resource",
        aws_request_id,
        request_id = %envelope.request_id,
        logical_resource_id = %envelope.logical_resource_id,
        request_type,
    )
}

/// Run the resource's lifecycle method; a panic or the deadline becomes a FAILED response.
async fn run<R: CustomResource>(
    resource: &R,
    request: &Request,
    reply: &Reply,
    ctx: &Context,
) -> Ending {
    if request.action.physical_id().is_some() && request.known_physical_id().is_none() {
        info!("Delete after a Create that answered no id: cleaning up what this resource owns");
    }
    let work = async {
        match &request.action {
            Action::Create => resource.create(request, ctx).await,
            Action::Update { .. } => resource.update(request, ctx).await,
            Action::Delete { physical_id } => {
                resource.delete(request, ctx).await.map(|p| match p {
                    Progress::Done(()) => Progress::Done(Outcome::new(physical_id.clone())),
                    Progress::Continue(state) => Progress::Continue(state),
                })
            }
        }
    };
    let result = tokio::select! {
        finished = AssertUnwindSafe(work).catch_unwind() => match finished {
            Ok(result) => result,
            Err(_) => Err(Failure::new(format!(
                "internal error: the provider panicked while {}; see its logs for request {}",
                ctx.current_step(),
                request.envelope.request_id
            ))),
        },
        () = tokio::time::sleep_until(ctx.answer_by()) => {
            warn!(step = %ctx.current_step(), "answering FAILED before the Lambda deadline");
            Err(Failure::new(format!(
                "timed out after {:.1} s while {}; answered before the function's own timeout. \
                 Retry the stack operation, or raise the function's Timeout if this step is slow",
                ctx.elapsed().as_secs_f64(),
                ctx.current_step()
            )))
        }
    };
    Ending::Answer(match result {
        Ok(Progress::Continue(state)) => return Ending::Continue(state),
        Ok(Progress::Done(outcome)) if matches!(request.action, Action::Delete { .. }) => {
            success(outcome)
        }
        Ok(Progress::Done(outcome)) if outcome.physical_id.trim().is_empty() => Response::failed(
            fallback_id(request, reply, ctx),
            "internal error: the provider returned an empty physical id",
        ),
        Ok(Progress::Done(outcome)) => success(outcome),
        Err(failure) => {
            let id = failure
                .physical_id
                .unwrap_or_else(|| fallback_id(request, reply, ctx));
            Response::failed(id, failure.reason)
        }
    })
}

fn success(outcome: Outcome) -> Response {
    Response {
        status: Status::Success,
        reason: None,
        physical_id: outcome.physical_id,
        data: outcome.data,
        no_echo: outcome.no_echo,
    }
}

/// The id to answer a failure with: the one the resource already has; on Create, the one the
/// handler recorded ([`Context::record_physical_id`]), else the marker.
fn fallback_id(request: &Request, reply: &Reply, ctx: &Context) -> String {
    request
        .action
        .physical_id()
        .map(str::to_owned)
        .or_else(|| ctx.recorded_physical_id())
        .unwrap_or_else(|| failed_create_id(reply))
}

fn failed_create_id(reply: &Reply) -> String {
    let envelope = reply.envelope();
    format!(
        "{FAILED_CREATE_PREFIX}{}:{}",
        envelope.logical_resource_id, envelope.request_id
    )
}

async fn answer(
    sender: &Sender,
    reply: Reply,
    response: Response,
    kill_at: Instant,
) -> Result<(), lambda_runtime::Error> {
    let rendered = response::render(reply.envelope(), &response);
    match rendered.status {
        Status::Success => info!(physical_id = %response.physical_id, "answering SUCCESS"),
        Status::Failed => warn!(
            physical_id = %response.physical_id,
            reason = response.reason.as_deref().unwrap_or(""),
            "answering FAILED"
        ),
    }
    match sender.send(reply, &rendered, kill_at).await {
        Delivery::Delivered { .. } | Delivery::Rejected { .. } => Ok(()),
        Delivery::Undelivered { last_error, .. } => {
            Err(format!("response not delivered: {last_error}").into())
        }
    }
}

/// Lambda's deadline (epoch milliseconds) as an [`Instant`], less [`KILL_SLACK`].
fn lambda_deadline(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    Instant::now() + left.saturating_sub(KILL_SLACK)
}

/// When to answer FAILED at the latest: a margin before `kill_at`, at most [`MAX_SAFETY_MARGIN`]
/// and a fifth of the time left, so short timeouts still get work done.
fn answer_by(kill_at: Instant) -> Instant {
    let left = kill_at.saturating_duration_since(Instant::now());
    let margin = (left / 5).min(MAX_SAFETY_MARGIN);
    kill_at - margin
}
