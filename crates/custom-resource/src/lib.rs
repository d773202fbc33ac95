//! CloudFormation custom resources on AWS Lambda.
//!
//! A resource implements [`CustomResource`] (create / update / delete); [`serve`] runs it under the
//! Lambda runtime and guarantees one response per request, whatever happens: success, error,
//! panic, or a deadline that is about to pass. See `dispatch` for how.

pub mod aws;
mod dispatch;
mod lifecycle;
pub mod logging;
mod properties;
mod request;
mod response;
mod sender;

pub use dispatch::{FAILED_CREATE_PREFIX, handle};
pub use lifecycle::{Context, CustomResource, Failure, Outcome};
pub use properties::{Properties, PropertyEnum, PropertyError};
pub use request::{Action, Envelope, Reply, Request, ResponseUrl};
pub use response::{MAX_BODY_BYTES, MAX_PHYSICAL_ID_BYTES, Status};
pub use sender::{Delivery, RetryPolicy, Sender};

use lambda_runtime::service_fn;

/// Run `resource` as this Lambda function's handler until the runtime stops.
pub async fn serve<R: CustomResource>(resource: R) -> Result<(), lambda_runtime::Error> {
    let sender = Sender::new(RetryPolicy::default())?;
    let (resource, sender) = (&resource, &sender);
    lambda_runtime::run(service_fn(move |event| handle(resource, sender, event))).await
}
