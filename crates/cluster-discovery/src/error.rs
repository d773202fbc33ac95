//! What can go wrong, in words that tell the user what to do.

use custom_resource::PropertyError;
use custom_resource::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Property(#[from] PropertyError),

    #[error(
        "ClusterName {given:?} is not a valid EKS cluster name: use 1 to 100 letters, digits, \
         hyphens and underscores, starting with a letter or digit"
    )]
    InvalidClusterName { given: String },

    #[error(
        "InstanceProfile {given:?} is neither an instance profile name nor an instance profile ARN \
         (arn:aws:iam::123456789012:instance-profile/NAME)"
    )]
    InvalidInstanceProfile { given: String },

    #[error(
        "InstanceProfile {given} is a role ARN; pass the instance profile that holds role {role} \
         instead: its ARN looks like arn:aws:iam::ACCOUNT:instance-profile/NAME (IAM console → \
         Roles → {role} → Instance profile ARNs)"
    )]
    RoleInsteadOfInstanceProfile { given: String, role: String },

    #[error(
        "InstanceProfile is in account {profile_account}, but the EKS cluster and this stack are \
         in account {account}: use an instance profile of account {account}"
    )]
    ForeignInstanceProfile {
        profile_account: String,
        account: String,
    },

    #[error(transparent)]
    Cluster(#[from] eks_cluster::ClusterError),

    #[error(
        "EKS cluster {name} has no {field} in DescribeCluster; Hopsworks needs it ({why}). \
         Upgrade the cluster to a current EKS platform version"
    )]
    ClusterIncomplete {
        name: String,
        field: &'static str,
        why: &'static str,
    },

    #[error(
        "instance profile {name} was not found in account {account}: check InstanceProfile (the \
         instance profile's name, not the role's) or create it"
    )]
    InstanceProfileNotFound { name: String, account: String },

    #[error(
        "instance profile {name} has no role: add the Hopsworks role to it (aws iam \
         add-role-to-instance-profile --instance-profile-name {name} --role-name ROLE)"
    )]
    InstanceProfileWithoutRole { name: String },

    /// An AWS call failed for another reason (permissions, throttling after retries, an outage);
    /// the Reason goes on with what AWS said ([`AwsError`]).
    #[error("{call} failed")]
    Aws {
        call: &'static str,
        #[source]
        source: AwsError,
    },

    /// An AWS call answered without what it always holds.
    #[error("{call} failed: {problem}")]
    Answer { call: &'static str, problem: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_keeps_the_sdk_error_and_its_reason_says_what_aws_said() {
        custom_resource::aws::assert_keeps_sdk_error(
            (
                "UnauthorizedOperation",
                "not allowed to call ec2:DescribeVpcs",
            ),
            |source| DiscoveryError::Aws {
                call: "ec2:DescribeVpcs",
                source,
            },
            "ec2:DescribeVpcs failed: UnauthorizedOperation: not allowed to call ec2:DescribeVpcs",
        );
    }
}
