//! The resource's properties, checked with the contract's rules before anything is called.

use custom_resource::{Properties, PropertyError};
use hopsworks_ai::model::{
    BucketConfiguration, ClusterConfiguration, NewCluster, Node, RonDb, Tag, Workers,
};
use serde_json::Value;

/// Everything a Create needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub secret_arn: String,
    pub cluster: NewCluster,
    pub poll_seconds: u64,
    pub timeout_minutes: u64,
}

/// What a Delete needs: read leniently, so that a stack whose properties would no longer pass
/// the Create's checks can still be deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteSettings {
    pub secret_arn: String,
    pub poll_seconds: u64,
    pub timeout_minutes: u64,
    /// The ECR registry of the cluster's repositories, when the properties say: for a cluster
    /// Hopsworks.ai no longer lists (it says itself otherwise).
    pub registry: Option<String>,
}

impl DeleteSettings {
    pub fn parse(p: &Properties) -> Result<Self, InputError> {
        let registry = match p.optional_str("EcrRegistryAccountId")? {
            Some(account) => Some(account.to_owned()),
            None => p
                .optional_str("InstanceProfileArn")?
                .and_then(instance_profile_account)
                .map(str::to_owned),
        };
        Ok(Self {
            secret_arn: p
                .required_str("ApiKeySecretArn", "the API key's secret")?
                .to_owned(),
            poll_seconds: p.int("PollIntervalSeconds", 30, 1, 300)?,
            timeout_minutes: p.int("TimeoutMinutes", 50, 1, 59)?,
            registry,
        })
    }
}

/// Properties an Update may change without replacing the Hopsworks cluster.
pub const IN_PLACE: &[&str] = &["ApiKeySecretArn", "PollIntervalSeconds", "TimeoutMinutes"];

/// Bad input: the framework's error, naming the property, what is expected and what was given.
pub type InputError = PropertyError;

fn invalid(property: &'static str, given: &str, expected: &'static str) -> InputError {
    PropertyError::invalid(property, expected, format!("{given:?}"))
}

impl Settings {
    pub fn parse(p: &Properties, default_region: &str) -> Result<Self, InputError> {
        let secret_arn = p
            .required_str(
                "ApiKeySecretArn",
                "the ARN of the Secrets Manager secret holding the Hopsworks.ai API key",
            )?
            .to_owned();
        if !(secret_arn.starts_with("arn:aws") && secret_arn.contains(":secretsmanager:")) {
            return Err(invalid(
                "ApiKeySecretArn",
                &secret_arn,
                "a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)",
            ));
        }
        let name = p.required_str("ClusterName", "the Hopsworks cluster's name")?;
        let name_ok = (1..=60).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                "ClusterName",
                name,
                "1 to 60 letters, digits, hyphens and underscores",
            ));
        }
        let instance_profile_arn = p.required_str(
            "InstanceProfileArn",
            "the ARN of the instance profile Hopsworks.ai launches VMs with",
        )?;
        let profile_account = instance_profile_account(instance_profile_arn).ok_or_else(|| {
            invalid(
                "InstanceProfileArn",
                instance_profile_arn,
                "an instance profile ARN, arn:aws:iam::ACCOUNT:instance-profile/NAME (or arn:aws-cn:…, \
                 arn:aws-us-gov:…; the instance profile, not its role)",
            )
        })?;
        let eks_cluster_name =
            p.required_str("EksClusterName", "the EKS cluster Hopsworks will use")?;
        if !custom_resource::arn::is_eks_cluster_name(eks_cluster_name) {
            return Err(invalid(
                "EksClusterName",
                eks_cluster_name,
                "an EKS cluster name matching ^[0-9A-Za-z][A-Za-z0-9-_]*$, at most 100 characters",
            ));
        }
        let ecr_account = p
            .optional_str("EcrRegistryAccountId")?
            .unwrap_or(profile_account);
        if ecr_account.len() != 12 || !ecr_account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "EcrRegistryAccountId",
                ecr_account,
                "a 12-digit AWS account id",
            ));
        }
        let bucket = p.required_str("BucketName", "the S3 bucket Hopsworks stores its data in")?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(
                "BucketName",
                bucket,
                "an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens",
            ));
        }
        let vpc_id = p.optional_str("VpcId")?.unwrap_or_default();
        let subnet_id = p.optional_str("SubnetId")?.unwrap_or_default();
        if vpc_id.is_empty() != subnet_id.is_empty() {
            return Err(invalid(
                "SubnetId",
                subnet_id,
                "set together with VpcId (VpcId and SubnetId go together: set both or neither)",
            ));
        }
        check_prefixed("VpcId", vpc_id, "vpc-")?;
        check_prefixed("SubnetId", subnet_id, "subnet-")?;
        let security_group_id = p.optional_str("SecurityGroupId")?.unwrap_or_default();
        check_prefixed("SecurityGroupId", security_group_id, "sg-")?;
        let backup: u32 = p.int("BackupRetentionDays", 0, 0, 3650)?;
        if (1..7).contains(&backup) {
            return Err(invalid(
                "BackupRetentionDays",
                &backup.to_string(),
                "0 (backups off) or at least 7",
            ));
        }
        let head_disk: u32 = p.int("HeadDiskSize", 512, 256, 16384)?;
        let worker_count: u32 = p.int("WorkerCount", 1, 0, 100)?;
        let workers = if worker_count == 0 {
            Vec::new()
        } else {
            vec![Workers {
                instance_type: p
                    .optional_str("WorkerInstanceType")?
                    .unwrap_or("m5.2xlarge")
                    .to_owned(),
                disk_size: p.int("WorkerDiskSize", 512, 64, 16384)?,
                count: worker_count,
            }]
        };
        let cluster = NewCluster {
            name: name.to_owned(),
            version: p
                .optional_str("HopsworksVersion")?
                .unwrap_or("3.9.0")
                .to_owned(),
            ssh_key_name: p.optional_str("SshKeyName")?.unwrap_or_default().to_owned(),
            cluster_configuration: ClusterConfiguration {
                head: Node {
                    instance_type: p
                        .optional_str("HeadInstanceType")?
                        .unwrap_or("m5.2xlarge")
                        .to_owned(),
                    disk_size: head_disk,
                    ha_enabled: false,
                },
                workers,
            },
            issue_lets_encrypt: true,
            attach_public_ip: true,
            backup_retention_period: backup,
            managed_users: true,
            tags: tags(p)?,
            ron_db: RonDb::default(),
            init_script: String::new(),
            run_init_script_first: false,
            os: "ubuntu".to_owned(),
            deactivate_log_report: false,
            collect_logs: false,
            region: p
                .optional_str("Region")?
                .unwrap_or(default_region)
                .to_owned(),
            bucket_name: bucket.to_owned(),
            instance_profile_arn: instance_profile_arn.to_owned(),
            head_instance_profile_arn: String::new(),
            vpc_id: vpc_id.to_owned(),
            subnet_id: subnet_id.to_owned(),
            security_group_id: security_group_id.to_owned(),
            eks_cluster_name: eks_cluster_name.to_owned(),
            ecr_registry_account_id: ecr_account.to_owned(),
            bucket_configuration: BucketConfiguration::default(),
        };
        if cluster.region.is_empty() {
            return Err(PropertyError::Missing {
                name: "Region".to_owned(),
                hint: "the AWS region of the cluster".to_owned(),
            });
        }
        Ok(Self {
            secret_arn,
            cluster,
            poll_seconds: p.int("PollIntervalSeconds", 30, 1, 300)?,
            timeout_minutes: p.int("TimeoutMinutes", 50, 1, 59)?,
        })
    }
}

/// The account in `arn:PARTITION:iam::ACCOUNT:instance-profile/NAME` (the contract's rule, in
/// any of the partitions a stack can run in: `aws`, `aws-cn`, `aws-us-gov`).
pub(crate) fn instance_profile_account(arn: &str) -> Option<&str> {
    let rest = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .into_iter()
        .find_map(|prefix| arn.strip_prefix(prefix))?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("instance-profile/")?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
        .then_some(account)
}

fn check_prefixed(property: &'static str, value: &str, prefix: &str) -> Result<(), InputError> {
    let ok = value.is_empty()
        || (value.starts_with(prefix)
            && value[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
            && value.len() > prefix.len());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            property,
            value,
            "an id of that kind (e.g. vpc-0a1b2c3d)",
        ))
    }
}

/// `Tags`: an object `{"k": "v"}` or a list of `"k=v"`.
fn tags(p: &Properties) -> Result<Vec<Tag>, InputError> {
    match p.as_map().get("Tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| Tag {
                name: k.clone(),
                value: v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            })
            .collect()),
        Some(_) => p
            .list("Tags")?
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok(Tag {
                    name: k.to_owned(),
                    value: v.to_owned(),
                }),
                _ => Err(invalid("Tags", &item, "KEY=VALUE for each tag")),
            })
            .collect(),
    }
}

/// The names of properties that differ between `old` and `new`, other than the in-place ones.
pub fn replacing_changes(old: &Properties, new: &Properties) -> Vec<String> {
    let mut keys: Vec<&String> = old.as_map().keys().chain(new.as_map().keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !IN_PLACE.contains(&k.as_str()))
        .filter(|k| old.as_map().get(*k) != new.as_map().get(*k))
        .cloned()
        .collect()
}

/// A fingerprint of the properties that shape the cluster (all but the in-place ones), kept as a
/// tag on the cluster this resource creates. An Update whose properties have the fingerprint of
/// the cluster as it is (CloudFormation's rollback Update, after a refused change) changes nothing
/// and may succeed. FNV-1a over the properties in key order: stable across builds and releases.
pub fn settings_fingerprint(p: &Properties) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut keys: Vec<&String> = p.as_map().keys().collect();
    keys.sort();
    for key in keys.into_iter().filter(|k| !IN_PLACE.contains(&k.as_str())) {
        let value = p.as_map()[key].to_string();
        for byte in key.bytes().chain([0]).chain(value.bytes()).chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(v: Value) -> Properties {
        let Value::Object(map) = v else {
            unreachable!()
        };
        Properties::new(map)
    }

    fn base() -> Value {
        json!({
            "ApiKeySecretArn": "arn:aws:secretsmanager:us-east-2:111122223333:secret:hopsworks/api-key-AbCdEf",
            "ClusterName": "fs-demo",
            "InstanceProfileArn": "arn:aws:iam::111122223333:instance-profile/hopsworks",
            "EksClusterName": "demo-eks",
            "BucketName": "hops-demo-bucket",
            "VpcId": "vpc-0a1b", "SubnetId": "subnet-0c2d", "SecurityGroupId": "sg-0e3f",
        })
    }

    #[test]
    fn defaults_give_the_contracts_vector() {
        let s = Settings::parse(&props(base()), "us-east-2").unwrap();
        assert_eq!(s.cluster.ecr_registry_account_id, "111122223333");
        assert_eq!(s.cluster.version, "3.9.0");
        assert_eq!(s.cluster.cluster_configuration.head.disk_size, 512);
        assert_eq!(s.cluster.cluster_configuration.workers[0].count, 1);
        assert_eq!(s.poll_seconds, 30);
    }

    #[test]
    fn contract_rules_are_enforced_with_the_property_named() {
        let cases = [
            (
                "InstanceProfileArn",
                json!("arn:aws:iam::111122223333:role/hopsworks"),
                "instance profile, not its role",
            ),
            ("EksClusterName", json!("-bad"), "EksClusterName"),
            ("EcrRegistryAccountId", json!("1234"), "12-digit"),
            ("BackupRetentionDays", json!("3"), "at least 7"),
            ("HeadDiskSize", json!("128"), "from 256"),
            ("SubnetId", json!(""), "go together"),
            ("ApiKeySecretArn", json!("my-secret"), "secretsmanager"),
        ];
        for (key, value, expected) in cases {
            let mut v = base();
            v[key] = value;
            let err = Settings::parse(&props(v), "us-east-2")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{key}: {err}");
        }
    }

    #[test]
    fn a_delete_reads_its_registry_from_the_account_or_the_instance_profile() {
        let d = DeleteSettings::parse(&props(base())).unwrap();
        assert_eq!(d.registry.as_deref(), Some("111122223333"));
        assert_eq!(d.poll_seconds, 30);
        let mut v = base();
        v["EcrRegistryAccountId"] = json!("444455556666");
        v["InstanceProfileArn"] = json!("not an ARN");
        let d = DeleteSettings::parse(&props(v)).unwrap();
        assert_eq!(d.registry.as_deref(), Some("444455556666"));
        let mut v = base();
        v["InstanceProfileArn"] = json!("arn:aws:iam::111122223333:role/hopsworks");
        assert_eq!(DeleteSettings::parse(&props(v)).unwrap().registry, None);
    }

    #[test]
    fn instance_profiles_of_every_partition_are_accepted() {
        for partition in ["aws", "aws-cn", "aws-us-gov"] {
            let mut v = base();
            v["InstanceProfileArn"] = json!(format!(
                "arn:{partition}:iam::111122223333:instance-profile/hopsworks"
            ));
            let s = Settings::parse(&props(v), "us-east-2").unwrap();
            assert_eq!(s.cluster.ecr_registry_account_id, "111122223333");
        }
        for bad in [
            "arn:aws-xx:iam::111122223333:instance-profile/hopsworks",
            "arn:aws:iam::1111:instance-profile/hopsworks",
            "arn:aws-cn:iam::111122223333:instance-profile/",
        ] {
            assert_eq!(instance_profile_account(bad), None, "{bad}");
        }
    }

    #[test]
    fn tags_read_from_a_map_or_a_list() {
        let mut v = base();
        v["Tags"] = json!({"team": "ml"});
        let s = Settings::parse(&props(v.clone()), "r").unwrap();
        assert_eq!(
            s.cluster.tags,
            [Tag {
                name: "team".into(),
                value: "ml".into()
            }]
        );
        v["Tags"] = json!(["team=ml", "env=prod"]);
        assert_eq!(
            Settings::parse(&props(v), "r").unwrap().cluster.tags.len(),
            2
        );
    }

    #[test]
    fn only_some_changes_are_in_place() {
        let old = props(base());
        let mut v = base();
        v["PollIntervalSeconds"] = json!("10");
        assert!(replacing_changes(&old, &props(v.clone())).is_empty());
        v["BucketName"] = json!("other-bucket");
        assert_eq!(replacing_changes(&old, &props(v)), ["BucketName"]);
    }

    #[test]
    fn the_fingerprint_follows_the_replacing_properties_only() {
        let old = settings_fingerprint(&props(base()));
        assert_eq!(old.len(), 16);
        let mut v = base();
        v["PollIntervalSeconds"] = json!("10");
        v["TimeoutMinutes"] = json!("20");
        assert_eq!(settings_fingerprint(&props(v.clone())), old);
        v["WorkerCount"] = json!("2");
        assert_ne!(settings_fingerprint(&props(v.clone())), old);
        // A value moved to another key is another fingerprint.
        let mut w = base();
        w["Tags"] = json!({"a": "bc"});
        let mut x = base();
        x["Tags"] = json!({"ab": "c"});
        assert_ne!(
            settings_fingerprint(&props(w)),
            settings_fingerprint(&props(x))
        );
    }
}
