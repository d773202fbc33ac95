//! What the function needs to know about the cluster: one DescribeCluster.

use crate::error::AccessError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone)]
pub struct ClusterInfo {
    pub name: String,
    pub region: String,
    pub endpoint: String,
    /// PEM bundle of the cluster's CA (`certificateAuthority.data`, base64-decoded).
    pub ca_pem: Vec<u8>,
    /// `CONFIG_MAP` when the cluster has no `accessConfig`.
    pub authentication_mode: String,
}

impl ClusterInfo {
    pub fn access_entries_enabled(&self) -> bool {
        matches!(
            self.authentication_mode.as_str(),
            "API" | "API_AND_CONFIG_MAP"
        )
    }

    pub fn aws_auth_enabled(&self) -> bool {
        self.authentication_mode != "API"
    }
}

pub async fn describe(eks: &aws_sdk_eks::Client, name: &str) -> Result<ClusterInfo, AccessError> {
    let cluster = eks_cluster::describe_active(eks, name).await?;
    let ca_pem = cluster
        .certificate_authority()
        .and_then(|ca| ca.data())
        .and_then(|data| STANDARD.decode(data.trim()).ok())
        .unwrap_or_default();
    Ok(ClusterInfo {
        name: name.to_owned(),
        region: eks
            .config()
            .region()
            .map(ToString::to_string)
            .unwrap_or_default(),
        endpoint: cluster.endpoint().unwrap_or_default().to_owned(),
        ca_pem,
        authentication_mode: eks_cluster::authentication_mode(&cluster),
    })
}

pub fn aws_error<E, R>(call: &'static str, err: aws_sdk_eks::error::SdkError<E, R>) -> AccessError
where
    E: aws_sdk_eks::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    AccessError::Aws {
        call,
        source: custom_resource::aws::AwsError::new(err),
    }
}

/// The outcome of a call whose `ResourceNotFoundException` means "not there" (already gone, never
/// made): `None` then, any other error named after `call`.
pub fn found<T, E, R>(
    call: &'static str,
    result: Result<T, aws_sdk_eks::error::SdkError<E, R>>,
) -> Result<Option<T>, AccessError>
where
    E: aws_sdk_eks::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e)
            if e.as_service_error()
                .and_then(aws_sdk_eks::error::ProvideErrorMetadata::code)
                == Some("ResourceNotFoundException") =>
        {
            Ok(None)
        }
        Err(e) => Err(aws_error(call, e)),
    }
}
