//! AWS SDK errors as a Reason can carry them.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// `Code: message` for a service error (what AWS said), the whole cause chain otherwise
/// (timeouts, connection errors). Neither holds credentials.
pub fn sdk_error_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(err).to_string(),
    }
}

/// A failed AWS SDK call, the SDK's error kept whole as the [`source`](std::error::Error::source)
/// (for logs and callers that look into it), shown as [`sdk_error_message`] shows it. Meant to be
/// the `#[source]` of a variant that names the call (`#[error("ec2:DescribeVpcs failed")]`):
/// [`error_chain`](crate::error_chain) then reads `ec2:DescribeVpcs failed: Code: message` and
/// does not go on into the SDK's own chain, which this text already says.
#[derive(Debug)]
pub struct AwsError {
    message: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl AwsError {
    pub fn new<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        Self {
            message: sdk_error_message(&err),
            source: Box::new(err),
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AwsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// For the tests of errors that hold an [`AwsError`]: `wrap` is given a failed call whose service
/// answered `code: message`; the error it makes must keep the SDK's error among its sources and
/// read `reason` as a Reason ([`error_chain`](crate::error_chain)). Returns that error for more
/// checks.
#[doc(hidden)]
pub fn assert_keeps_sdk_error<E: std::error::Error>(
    (code, message): (&str, &str),
    wrap: impl FnOnce(AwsError) -> E,
    reason: &str,
) -> E {
    use aws_smithy_types::error::ErrorMetadata;
    let sdk: SdkError<ErrorMetadata, ()> = SdkError::service_error(
        ErrorMetadata::builder().code(code).message(message).build(),
        (),
    );
    let err = wrap(AwsError::new(sdk));
    let kept = std::iter::successors(err.source(), |e| e.source())
        .any(|e| e.is::<SdkError<ErrorMetadata, ()>>());
    assert!(kept, "the SDK's error is not among the sources of {err:?}");
    assert_eq!(crate::error_chain(&err), reason);
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::error::ErrorMetadata;

    #[derive(Debug, thiserror::Error)]
    enum CallFailed {
        #[error("ec2:DescribeVpcs failed")]
        Aws(#[source] AwsError),
    }

    #[test]
    fn a_failed_call_reads_code_and_message_once_and_keeps_the_sdk_error() {
        let sdk: SdkError<ErrorMetadata, ()> = SdkError::service_error(
            ErrorMetadata::builder()
                .code("InternalError")
                .message("try again later")
                .build(),
            (),
        );
        let err = CallFailed::Aws(AwsError::new(sdk));
        assert_eq!(
            crate::error_chain(&err),
            "ec2:DescribeVpcs failed: InternalError: try again later"
        );
        let kept = std::error::Error::source(&err)
            .and_then(std::error::Error::source)
            .and_then(|e| e.downcast_ref::<SdkError<ErrorMetadata, ()>>());
        assert!(kept.is_some_and(|e| e.as_service_error().is_some()));
    }
}
