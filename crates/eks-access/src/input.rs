//! The resource's properties, validated before anything is called.

use crate::error::AccessError;
use custom_resource::{Properties, PropertyEnum};

pub const CLUSTER_NAME: &str = "ClusterName";
pub const ROLE_ARN: &str = "RoleArn";
pub const USERNAME: &str = "Username";
pub const GROUPS: &str = "Groups";
pub const ACCESS_METHOD: &str = "AccessMethod";
pub const KUBERNETES_ROLE_ARN: &str = "KubernetesRoleArn";
pub const DRY_RUN: &str = "DryRun";

/// How the role is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Access entries when the cluster's authentication mode allows them, else aws-auth.
    Auto,
    AccessEntry,
    AwsAuth,
}

impl PropertyEnum for Method {
    const VALUES: &'static [(&'static str, Self)] = &[
        ("auto", Method::Auto),
        ("access-entry", Method::AccessEntry),
        ("aws-auth", Method::AwsAuth),
    ];
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::AccessEntry => "access-entry",
            Method::AwsAuth => "aws-auth",
        }
    }
}

/// A role ARN, and the form EKS matches (without its IAM path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    pub given: String,
    pub canonical: String,
    pub account: String,
    pub partition: String,
}

impl RoleArn {
    pub fn parse(property: &str, given: &str) -> Result<Self, AccessError> {
        let invalid = || AccessError::InvalidRoleArn {
            property: property.to_owned(),
            given: given.to_owned(),
        };
        let role = custom_resource::arn::RoleArn::parse(given).ok_or_else(invalid)?;
        Ok(Self {
            given: given.to_owned(),
            canonical: role.without_path(),
            account: role.account.to_owned(),
            partition: role.partition.to_owned(),
        })
    }

    pub fn has_path(&self) -> bool {
        self.given != self.canonical
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub cluster_name: String,
    pub role: RoleArn,
    pub username: String,
    pub groups: Vec<String>,
    pub method: Method,
    pub kubernetes_role: Option<RoleArn>,
    pub dry_run: bool,
    /// `Tags` (`KEY=VALUE` items) for an access entry it creates; aws-auth has none.
    pub tags: Vec<(String, String)>,
}

impl Input {
    pub fn parse(p: &Properties) -> Result<Self, AccessError> {
        let cluster_name = p.required_str(CLUSTER_NAME, "the EKS cluster to map the role into")?;
        if !custom_resource::arn::is_eks_cluster_name(cluster_name) {
            return Err(AccessError::InvalidClusterName(cluster_name.to_owned()));
        }
        let role = RoleArn::parse(
            ROLE_ARN,
            p.required_str(
                ROLE_ARN,
                "the ARN of the role to map (ClusterDiscovery.RoleArn)",
            )?,
        )?;
        let username = p.optional_str(USERNAME)?.unwrap_or("hopsworks").to_owned();
        let valid_username = username.len() <= 128
            && !username.starts_with("system:")
            && username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c));
        if !valid_username {
            return Err(AccessError::InvalidUsername(username));
        }
        let mut groups = p.list(GROUPS)?;
        if groups.is_empty() {
            groups.push("system:masters".to_owned());
        }
        if let Some(bad) = groups.iter().find(|g| {
            g.len() > 128
                || !g
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        }) {
            return Err(AccessError::InvalidGroup(bad.clone()));
        }
        let kubernetes_role = p
            .optional_str(KUBERNETES_ROLE_ARN)?
            .map(|arn| RoleArn::parse(KUBERNETES_ROLE_ARN, arn))
            .transpose()?;
        Ok(Self {
            cluster_name: cluster_name.to_owned(),
            role,
            username,
            groups,
            method: p.enumerated(ACCESS_METHOD, Method::Auto)?,
            kubernetes_role,
            dry_run: p.bool(DRY_RUN, false)?,
            tags: p.tags("Tags")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(value: Value) -> Result<Input, AccessError> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        Input::parse(&Properties::new(map))
    }

    #[test]
    fn tags_for_the_access_entry_are_key_value_items() {
        let mut v = json!({"ClusterName": "c1", "RoleArn": "arn:aws:iam::123456789012:role/hops",
                           "Tags": "team=data"});
        assert_eq!(
            parse(v.clone()).unwrap().tags,
            [("team".to_owned(), "data".to_owned())]
        );
        v["Tags"] = json!("aws:x=y");
        assert!(parse(v).is_err());
    }

    #[test]
    fn defaults_follow_the_seed_guide() {
        let input =
            parse(json!({"ClusterName": "demo", "RoleArn": "arn:aws:iam::111122223333:role/hops"}))
                .unwrap();
        assert_eq!(input.username, "hopsworks");
        assert_eq!(input.groups, ["system:masters"]);
        assert_eq!(input.method, Method::Auto);
        assert!(!input.dry_run);
        assert!(!input.role.has_path());
    }

    #[test]
    fn role_path_is_stripped_for_matching() {
        let role = RoleArn::parse("RoleArn", "arn:aws:iam::111122223333:role/a/b/hops").unwrap();
        assert_eq!(role.canonical, "arn:aws:iam::111122223333:role/hops");
        assert!(role.has_path());
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(json!({"ClusterName": "demo", "RoleArn": "arn:aws:iam::111122223333:instance-profile/p"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "RoleArn \"arn:aws:iam::111122223333:instance-profile/p\" is not an IAM role ARN"
            ),
            "{err}"
        );
        let err = parse(json!({"ClusterName": "demo", "RoleArn": "arn:aws:iam::111122223333:role/r", "AccessMethod": "configmap"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("one of auto, access-entry, aws-auth"), "{err}");
        let err = parse(json!({"ClusterName": "demo", "RoleArn": "arn:aws:iam::111122223333:role/r", "Username": "system:admin"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Username"), "{err}");
    }
}
