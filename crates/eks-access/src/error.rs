//! What can go wrong, in words that tell the user what to do.

use crate::aws_auth::map_roles::MapRolesError;
use custom_resource::PropertyError;
use custom_resource::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Property(#[from] PropertyError),

    #[error(
        "ClusterName {0:?} is not a valid EKS cluster name: use 1 to 100 letters, digits, hyphens \
         and underscores, starting with a letter or digit"
    )]
    InvalidClusterName(String),

    #[error(
        "{property} {given:?} is not an IAM role ARN: expected arn:aws:iam::ACCOUNT:role/NAME \
         (ClusterDiscovery's RoleArn gives the Hopsworks instance profile's role)"
    )]
    InvalidRoleArn { property: String, given: String },

    #[error(
        "Username {0:?} is not allowed: use letters, digits and -_.@: (at most 128), not starting \
         with system:"
    )]
    InvalidUsername(String),

    #[error("Groups holds {0:?}: a Kubernetes group name uses letters, digits and -_.: only")]
    InvalidGroup(String),

    #[error(transparent)]
    Cluster(#[from] eks_cluster::ClusterError),

    #[error(
        "AccessMethod is access-entry, but EKS cluster {name} uses authentication mode \
         {mode}, which has no access entries: set AccessMethod to auto or aws-auth, or switch the \
         cluster to API_AND_CONFIG_MAP (aws eks update-cluster-config --name {name} \
         --access-config authenticationMode=API_AND_CONFIG_MAP)"
    )]
    AccessEntriesDisabled { name: String, mode: String },

    #[error(
        "AccessMethod is aws-auth, but EKS cluster {name} uses authentication mode API, which \
         ignores aws-auth: set AccessMethod to auto or access-entry"
    )]
    AwsAuthIgnored { name: String },

    #[error(
        "this EKS cluster is already used by Hopsworks stack {owner} (its aws-auth maps {role} for \
         it); an EKS cluster serves one Hopsworks cluster only: delete that stack first, or use \
         another cluster"
    )]
    ClusterTaken { owner: String, role: String },

    #[error(
        "role {role} is already mapped in aws-auth as user {username:?} with groups {groups}; \
         this stack will not change a mapping it did not make: remove that entry from aws-auth, \
         or set Username and Groups to match it"
    )]
    MappedDifferently {
        role: String,
        username: String,
        groups: String,
    },

    #[error(
        "aws-auth in kube-system cannot be read, and nothing was written: {problem}. Fix it with \
         `kubectl edit configmap aws-auth -n kube-system`, then retry"
    )]
    Unparsable { problem: MapRolesError },

    #[error(
        "the aws-auth annotation {annotation} is not the JSON this stack writes, so ownership of \
         its entries is unknown; nothing was written: fix or remove the annotation, then retry"
    )]
    BadOwnership { annotation: &'static str },

    #[error(
        "aws-auth would grow to {bytes} bytes, over Kubernetes' 1 MiB limit for a ConfigMap; \
         nothing was written: remove unused entries, or use access entries (AccessMethod \
         access-entry on an API_AND_CONFIG_MAP cluster)"
    )]
    TooLarge { bytes: usize },

    #[error(
        "the Kubernetes API of cluster {cluster} did not accept this function's identity {identity} \
         (401 Unauthorized: it is not mapped in the cluster). Ways out: switch the cluster to \
         API_AND_CONFIG_MAP so access entries are used (no Kubernetes access needed); or set \
         KubernetesRoleArn to a role mapped as cluster admin (system:masters); or map this \
         function's role in aws-auth with group system:masters"
    )]
    Unauthorized { cluster: String, identity: String },

    #[error(
        "the Kubernetes API of cluster {cluster} refused this function's identity {identity} \
         (403 Forbidden: it is mapped, but without rights on ConfigMap aws-auth: {message}). Ways \
         out: switch the cluster to API_AND_CONFIG_MAP so access entries are used; or set \
         KubernetesRoleArn to a role mapped as cluster admin; or give this function's mapping \
         the group system:masters"
    )]
    Forbidden {
        cluster: String,
        identity: String,
        message: String,
    },

    #[error(
        "aws-auth kept changing under this function ({attempts} conflicting writes in a row); \
         nothing of ours was written: retry the stack operation"
    )]
    Contention { attempts: u32 },

    #[error(
        "the Kubernetes API of cluster {cluster} did not answer a {call} of aws-auth within \
         {seconds:.1} s (the time this invocation had left); retry the stack operation"
    )]
    Slow {
        cluster: String,
        call: &'static str,
        seconds: f64,
    },

    #[error(
        "eks:CreateAccessEntry says an access entry for {role} exists on cluster {cluster}, but \
         eks:DescribeAccessEntry does not find it ({attempts} times); nothing was changed: retry \
         the stack operation"
    )]
    EntryUnseen {
        cluster: String,
        role: String,
        attempts: u32,
    },

    #[error("the Kubernetes API of cluster {cluster} failed: {message}")]
    Kubernetes { cluster: String, message: String },

    #[error(
        "cannot reach the Kubernetes API of cluster {cluster} at {endpoint}: {source}. A \
         private-only endpoint needs this function in the cluster's VPC; a TLS error means the \
         server's certificate is not the cluster's (certificateAuthority from DescribeCluster)"
    )]
    Unreachable {
        cluster: String,
        endpoint: String,
        #[source]
        source: Unreached,
    },

    #[error(
        "an access entry for {role} on cluster {cluster} belongs to Hopsworks stack {owner}; an EKS \
         cluster serves one Hopsworks cluster only"
    )]
    EntryTaken {
        cluster: String,
        role: String,
        owner: String,
    },

    /// An AWS call failed for another reason (permissions, throttling after retries, an outage);
    /// the text goes on with what AWS said ([`AwsError`]).
    #[error("{call} failed: {source}")]
    Aws {
        call: &'static str,
        #[source]
        source: AwsError,
    },

    #[error(
        "sts:AssumeRole failed: {source} (KubernetesRoleArn {role} must trust this function's \
         role)"
    )]
    AssumeRole {
        role: String,
        #[source]
        source: AwsError,
    },

    /// This function's own credentials could not be loaded.
    #[error("credentials failed: {0}")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),

    /// An AWS call answered without what it always holds, or could not be made at all.
    #[error("{call} failed: {problem}")]
    Answer {
        call: &'static str,
        problem: &'static str,
    },

    /// The EKS token could not be signed (the Reason reads "sigv4 failed: could not sign the EKS
    /// token: " and the signer's error chain).
    #[error("sigv4 failed")]
    Token(#[source] crate::token::TokenError),
}

/// Why the Kubernetes API could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Unreached {
    #[error("the endpoint is not a URL: {0}")]
    Url(#[source] http::uri::InvalidUri),

    #[error("DescribeCluster gave no usable certificate authority")]
    NoAuthority,

    /// Kubernetes' client error, with its causes (what TLS or the connection said).
    #[error("{}", custom_resource::error_chain(.0))]
    Kube(#[source] kube::Error),
}

impl AccessError {
    /// `KubernetesRoleArn` could not be assumed (its trust policy, or STS itself).
    pub fn is_assume_role(&self) -> bool {
        matches!(
            self,
            AccessError::AssumeRole { .. }
                | AccessError::Answer {
                    call: "sts:AssumeRole",
                    ..
                }
        )
    }

    /// The Kubernetes API could not be used at all (not reached, not answering, or refusing this
    /// identity): nothing can have been read or written through it.
    pub fn is_kubernetes_access(&self) -> bool {
        matches!(
            self,
            AccessError::Unauthorized { .. }
                | AccessError::Forbidden { .. }
                | AccessError::Unreachable { .. }
                | AccessError::Slow { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custom_resource::aws::assert_keeps_sdk_error;

    #[test]
    fn failed_aws_calls_keep_the_sdk_error_and_their_reasons_say_what_aws_said() {
        assert_keeps_sdk_error(
            ("AccessDeniedException", "not allowed"),
            |source| AccessError::Aws {
                call: "eks:CreateAccessEntry",
                source,
            },
            "eks:CreateAccessEntry failed: AccessDeniedException: not allowed",
        );
        let assume = assert_keeps_sdk_error(
            ("AccessDenied", "not trusted"),
            |source| AccessError::AssumeRole {
                role: "arn:aws:iam::111122223333:role/admin".to_owned(),
                source,
            },
            "sts:AssumeRole failed: AccessDenied: not trusted (KubernetesRoleArn \
             arn:aws:iam::111122223333:role/admin must trust this function's role)",
        );
        assert!(assume.is_assume_role());
    }
}
