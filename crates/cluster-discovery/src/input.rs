//! The resource's properties, validated before anything is called.

use crate::error::DiscoveryError;
use custom_resource::Properties;
use custom_resource::arn::{Arn, is_eks_cluster_name, is_iam_name};

pub const CLUSTER_NAME: &str = "ClusterName";
pub const INSTANCE_PROFILE: &str = "InstanceProfile";

/// What the user asked to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub cluster_name: String,
    pub instance_profile: InstanceProfileRef,
}

/// The Hopsworks instance profile, by name or by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceProfileRef {
    pub name: String,
    /// The account, when given as an ARN: it must be the cluster's.
    pub account: Option<String>,
}

impl Input {
    pub fn parse(properties: &Properties) -> Result<Self, DiscoveryError> {
        let cluster_name = properties.required_str(
            CLUSTER_NAME,
            "the name of the EKS cluster Hopsworks will use, in this stack's region",
        )?;
        if !is_eks_cluster_name(cluster_name) {
            return Err(DiscoveryError::InvalidClusterName {
                given: cluster_name.to_owned(),
            });
        }
        let profile = properties.required_str(
            INSTANCE_PROFILE,
            "the name or ARN of the instance profile Hopsworks.ai launches its VMs with",
        )?;
        Ok(Self {
            cluster_name: cluster_name.to_owned(),
            instance_profile: InstanceProfileRef::parse(profile)?,
        })
    }
}

impl InstanceProfileRef {
    fn parse(given: &str) -> Result<Self, DiscoveryError> {
        if is_iam_name(given) {
            return Ok(Self {
                name: given.to_owned(),
                account: None,
            });
        }
        let invalid = || DiscoveryError::InvalidInstanceProfile {
            given: given.to_owned(),
        };
        let arn = Arn::parse(given).ok_or_else(invalid)?;
        match (arn.service, arn.typed_name()) {
            ("iam", Some(("instance-profile", name))) if is_iam_name(name) => Ok(Self {
                name: name.to_owned(),
                account: Some(arn.account.to_owned()),
            }),
            ("iam", Some(("role", role))) => Err(DiscoveryError::RoleInsteadOfInstanceProfile {
                given: given.to_owned(),
                role: role.to_owned(),
            }),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(cluster: &str, profile: &str) -> Result<Input, DiscoveryError> {
        let Some(map) = json!({ CLUSTER_NAME: cluster, INSTANCE_PROFILE: profile })
            .as_object()
            .cloned()
        else {
            unreachable!()
        };
        Input::parse(&Properties::new(map))
    }

    #[test]
    fn accepts_profile_name_or_arn() {
        let by_name = input("demo", "hopsworks-profile").unwrap();
        assert_eq!(by_name.instance_profile.name, "hopsworks-profile");
        let by_arn = input(
            "demo",
            "arn:aws:iam::123456789012:instance-profile/p/hopsworks-profile",
        )
        .unwrap();
        assert_eq!(by_arn.instance_profile.name, "hopsworks-profile");
        assert_eq!(
            by_arn.instance_profile.account.as_deref(),
            Some("123456789012")
        );
    }

    #[test]
    fn role_arn_is_refused_with_the_way_to_fix_it() {
        let err = input("demo", "arn:aws:iam::123456789012:role/hopsworks/hops-role")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a role ARN"), "{err}");
        assert!(err.contains("instance-profile/"), "{err}");
        assert!(err.contains("hops-role"), "{err}");
    }

    #[test]
    fn malformed_inputs_name_the_property() {
        let err = input("demo cluster", "p").unwrap_err().to_string();
        assert!(err.starts_with("ClusterName \"demo cluster\""), "{err}");
        let err = input("demo", "arn:aws:s3:::bucket")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("InstanceProfile \"arn:aws:s3:::bucket\""),
            "{err}"
        );
        let err = input("", "p").unwrap_err().to_string();
        assert!(err.contains("property ClusterName is required"), "{err}");
    }
}
