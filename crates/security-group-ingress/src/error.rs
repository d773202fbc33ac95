//! What can go wrong, in words that tell the user what to do.

use crate::input::InputError;
use custom_resource::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(transparent)]
    Input(#[from] InputError),

    #[error(
        "security group {group_id} does not exist: check GroupId \
         (ClusterDiscovery.ClusterSecurityGroupId)"
    )]
    MissingGroup { group_id: String },

    /// An EC2 call failed for another reason (permissions, throttling after retries, an outage);
    /// the Reason goes on with what AWS said ([`AwsError`]).
    #[error("{call} failed")]
    Aws {
        call: &'static str,
        #[source]
        source: AwsError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_keeps_the_sdk_error_and_its_reason_says_what_aws_said() {
        custom_resource::aws::assert_keeps_sdk_error(
            ("UnauthorizedOperation", "not allowed to revoke"),
            |source| IngressError::Aws {
                call: "ec2:RevokeSecurityGroupIngress",
                source,
            },
            "ec2:RevokeSecurityGroupIngress failed: UnauthorizedOperation: not allowed to revoke",
        );
    }
}
