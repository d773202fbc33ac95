//! The one DescribeCluster every resource starts with: the cluster must exist in this region and
//! be ACTIVE, and when it is not, the error says what to do.

use aws_sdk_eks::types::{Cluster, ClusterStatus};
use custom_resource::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "EKS cluster {name} was not found in region {region}: check ClusterName, and deploy the \
         stack in the cluster's region"
    )]
    NotFound { name: String, region: String },

    #[error("EKS cluster {name} is {status}, not ACTIVE: wait until it is ACTIVE, then retry")]
    NotActive { name: String, status: String },

    /// The call failed for another reason; the Reason goes on with what AWS said.
    #[error("eks:DescribeCluster failed")]
    Aws(#[source] AwsError),

    #[error("eks:DescribeCluster failed: the answer has no cluster")]
    NoCluster,
}

/// DescribeCluster `name`, which must be ACTIVE.
pub async fn describe_active(
    eks: &aws_sdk_eks::Client,
    name: &str,
) -> Result<Cluster, ClusterError> {
    let output = eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception())
            {
                ClusterError::NotFound {
                    name: name.to_owned(),
                    region: eks
                        .config()
                        .region()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                }
            } else {
                ClusterError::Aws(AwsError::new(e))
            }
        })?;
    let cluster = output.cluster.ok_or(ClusterError::NoCluster)?;
    match cluster.status() {
        Some(ClusterStatus::Active) => Ok(cluster),
        status => Err(ClusterError::NotActive {
            name: name.to_owned(),
            status: status
                .map_or("in an unknown state", |s| s.as_str())
                .to_owned(),
        }),
    }
}

/// `accessConfig.authenticationMode`, or `CONFIG_MAP` when the cluster does not say (older
/// clusters have no `accessConfig`).
pub fn authentication_mode(cluster: &Cluster) -> String {
    cluster
        .access_config()
        .and_then(|c| c.authentication_mode())
        .map_or("CONFIG_MAP", |m| m.as_str())
        .to_owned()
}
