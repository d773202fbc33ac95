//! CloudFormation custom resources on AWS Lambda.
//!
//! A resource implements [`CustomResource`] (create / update / delete); [`serve`] runs it under the
//! Lambda runtime and guarantees one response per request, whatever happens: success, error,
//! panic, or a deadline that is about to pass. See `dispatch` for how.

pub mod arn;
pub mod aws;
mod dispatch;
mod lifecycle;
pub mod logging;
mod owner;
mod properties;
mod request;
mod response;
mod sender;

pub use dispatch::{FAILED_CREATE_PREFIX, NoReinvoke, Reinvoke, handle};
pub use lifecycle::{Context, Continued, CustomResource, Failure, Outcome, Progress, error_chain};
pub use owner::{OWNER_TAG, Owner, stack_name};
pub use properties::{Properties, PropertyEnum, PropertyError};
pub use request::{Action, CONTINUATION_KEY, Envelope, Reply, Request, ResponseUrl};
pub use response::{MAX_BODY_BYTES, MAX_PHYSICAL_ID_BYTES, Status};
pub use sender::{Delivery, RetryPolicy, Sender};

use lambda_runtime::service_fn;

/// Run `resource` as this Lambda function's handler until the runtime stops.
pub async fn serve<R: CustomResource>(resource: R) -> Result<(), lambda_runtime::Error> {
    serve_continuing(resource, NoReinvoke).await
}

/// The same, for a resource that may hand a request on to a new invocation
/// ([`Progress::Continue`]) through `reinvoke`.
pub async fn serve_continuing<R: CustomResource>(
    resource: R,
    reinvoke: impl Reinvoke,
) -> Result<(), lambda_runtime::Error> {
    let sender = Sender::new(RetryPolicy::default())?;
    let (resource, sender, reinvoke) = (&resource, &sender, &reinvoke);
    lambda_runtime::run(service_fn(move |event| {
        handle(resource, sender, reinvoke, event)
    }))
    .await
}
