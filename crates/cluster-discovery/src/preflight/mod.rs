//! The `Preflight` custom resource: before the stack makes anything slow, check what the user
//! named and the guide leaves to them (the Hopsworks bucket, the SSH key pair, the Hopsworks
//! subnet) and fail in seconds with Reasons that say how to fix each. Served by the
//! ClusterDiscovery function (same read-only role), told apart by its resource type. Delete does
//! nothing: nothing is made.
//!
//! The Hopsworks version is checked against Hopsworks.ai's catalogue by HopsworksCluster, which
//! holds the API key, before it creates the cluster.

mod checks;
mod error;

pub use error::{Hint, PreflightError};

use crate::discover::Clients;
use crate::input::CLUSTER_NAME;
use custom_resource::arn::is_eks_cluster_name;
use custom_resource::{Properties, PropertyError};

/// The resource type the template gives the pre-flight resource.
pub const RESOURCE_TYPE: &str = "Custom::Preflight";
pub const BUCKET_NAME: &str = "BucketName";
pub const SSH_KEY_NAME: &str = "SshKeyName";
pub const SUBNET_ID: &str = "SubnetId";
/// `"true"` when the stack creates the EKS cluster (it does not exist before the stack's Create).
pub const NEW_CLUSTER: &str = "NewCluster";

/// What to check; an empty property checks nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checks {
    pub bucket: Option<String>,
    pub key_pair: Option<String>,
    pub subnet: Option<SubnetCheck>,
}

/// The Hopsworks subnet must be in the EKS cluster's VPC, and public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetCheck {
    pub subnet_id: String,
    pub cluster_name: String,
    pub new_cluster: bool,
}

impl Checks {
    /// The properties, checked before any call.
    pub fn parse(properties: &Properties) -> Result<Self, PreflightError> {
        let bucket = properties.optional_str(BUCKET_NAME)?.map(str::to_owned);
        if let Some(given) = &bucket
            && !is_bucket_name(given)
        {
            return Err(PreflightError::InvalidBucketName {
                given: given.clone(),
            });
        }
        let key_pair = properties.optional_str(SSH_KEY_NAME)?.map(str::to_owned);
        let subnet = match properties.optional_str(SUBNET_ID)? {
            None => None,
            Some(given) if !is_subnet_id(given) => {
                return Err(PreflightError::InvalidSubnetId {
                    given: given.to_owned(),
                });
            }
            Some(subnet_id) => {
                let cluster_name = properties.required_str(
                    CLUSTER_NAME,
                    "the EKS cluster whose VPC the Hopsworks subnet must be in",
                )?;
                if !is_eks_cluster_name(cluster_name) {
                    return Err(PropertyError::invalid(
                        CLUSTER_NAME,
                        "an EKS cluster name",
                        format!("{cluster_name:?}"),
                    )
                    .into());
                }
                Some(SubnetCheck {
                    subnet_id: subnet_id.to_owned(),
                    cluster_name: cluster_name.to_owned(),
                    new_cluster: properties.bool(NEW_CLUSTER, false)?,
                })
            }
        };
        Ok(Self {
            bucket,
            key_pair,
            subnet,
        })
    }

    /// What an Update checks: only what changed. A value that did not change passed when it
    /// was set, and the Update of a rollback (the old values again) must not fail on something
    /// that changed outside the stack since.
    pub fn changed_since(self, old: &Checks) -> Checks {
        fn new<T: PartialEq>(now: Option<T>, before: &Option<T>) -> Option<T> {
            now.filter(|v| before.as_ref() != Some(v))
        }
        Checks {
            bucket: new(self.bucket, &old.bucket),
            key_pair: new(self.key_pair, &old.key_pair),
            subnet: new(self.subnet, &old.subnet),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bucket.is_none() && self.key_pair.is_none() && self.subnet.is_none()
    }
}

impl Clients {
    /// Every check at once; what failed, each with its own Reason.
    pub async fn preflight(&self, checks: &Checks) -> Vec<PreflightError> {
        let region = self
            .ec2
            .config()
            .region()
            .map(ToString::to_string)
            .unwrap_or_default();
        let region = region.as_str();
        let (bucket, key_pair, subnet) = tokio::join!(
            async {
                match &checks.bucket {
                    Some(bucket) => self.check_bucket(bucket, region).await,
                    None => Ok(()),
                }
            },
            async {
                match &checks.key_pair {
                    Some(name) => self.check_key_pair(name, region).await,
                    None => Ok(()),
                }
            },
            async {
                match &checks.subnet {
                    Some(subnet) => self.check_subnet(subnet, region).await,
                    None => Ok(()),
                }
            },
        );
        [bucket, key_pair, subnet]
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }
}

/// One Reason for all that failed, each in full.
pub fn reason(errors: &[PreflightError]) -> String {
    errors
        .iter()
        .map(|e| custom_resource::error_chain(e))
        .collect::<Vec<_>>()
        .join(". Also: ")
}

/// S3 bucket names: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with
/// a letter or digit.
fn is_bucket_name(text: &str) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&text.len())
        && alnum(text.as_bytes().first())
        && alnum(text.as_bytes().last())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

fn is_subnet_id(text: &str) -> bool {
    text.strip_prefix("subnet-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(value: Value) -> Result<Checks, PreflightError> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        Checks::parse(&Properties::new(map))
    }

    #[test]
    fn empty_properties_check_nothing() {
        let checks = parse(json!({"BucketName": "", "SshKeyName": " ", "SubnetId": ""})).unwrap();
        assert!(checks.is_empty(), "{checks:?}");
    }

    #[test]
    fn a_subnet_is_checked_against_the_named_cluster() {
        let checks = parse(json!({
            "BucketName": "hops-data.eu",
            "SubnetId": "subnet-0123abcd",
            "ClusterName": "demo",
            "NewCluster": "true",
        }))
        .unwrap();
        assert_eq!(checks.bucket.as_deref(), Some("hops-data.eu"));
        assert_eq!(
            checks.subnet,
            Some(SubnetCheck {
                subnet_id: "subnet-0123abcd".into(),
                cluster_name: "demo".into(),
                new_cluster: true,
            })
        );
    }

    #[test]
    fn malformed_values_are_refused_before_any_call_naming_the_parameter() {
        let err = parse(json!({"BucketName": "s3://hops"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("HopsworksBucketName \"s3://hops\""),
            "{err}"
        );
        let err = parse(json!({"BucketName": "Hops"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lowercase"), "{err}");
        let err = parse(json!({"SubnetId": "sg-0123abcd", "ClusterName": "demo"}))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("HopsworksSubnetId \"sg-0123abcd\""),
            "{err}"
        );
        let err = parse(json!({"SubnetId": "subnet-0123abcd"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("property ClusterName is required"), "{err}");
    }

    #[test]
    fn an_update_checks_only_what_changed() {
        let old = parse(json!({"BucketName": "a-bucket", "SshKeyName": "k"})).unwrap();
        let new = parse(json!({"BucketName": "a-bucket", "SshKeyName": "other"})).unwrap();
        let changed = new.changed_since(&old);
        assert_eq!(changed.bucket, None);
        assert_eq!(changed.key_pair.as_deref(), Some("other"));
        assert!(old.clone().changed_since(&old).is_empty());
    }

    #[test]
    fn several_failures_make_one_reason_with_each_in_full() {
        let errors = [
            PreflightError::NoSuchBucket {
                bucket: "b".into(),
                region: "us-east-2".into(),
            },
            PreflightError::NoSuchKeyPair {
                name: "k".into(),
                region: "us-east-2".into(),
            },
        ];
        let text = reason(&errors);
        assert!(
            text.starts_with("S3 bucket b (HopsworksBucketName) does not exist"),
            "{text}"
        );
        assert!(
            text.contains(". Also: EC2 key pair \"k\" (HopsworksSshKeyName) was not found"),
            "{text}"
        );
    }

    #[test]
    fn the_hint_lists_the_public_subnets_or_says_there_are_none() {
        assert!(Hint(vec![]).to_string().contains("has none"));
        assert_eq!(
            Hint(vec!["subnet-a".into(), "subnet-b".into()]).to_string(),
            "the cluster's public subnets: subnet-a, subnet-b"
        );
    }
}
