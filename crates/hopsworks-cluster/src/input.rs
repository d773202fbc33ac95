//! The resource's properties, checked with the contract's rules before anything is called.

use custom_resource::{Properties, PropertyEnum, PropertyError};
use hopsworks_ai::model::{
    Autoscale, AutoscaleGroup, BucketConfiguration, ClusterConfiguration, NewCluster, Node, Ports,
    RonDb, Tag, Workers,
};
use serde_json::Value;

/// Everything a Create needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub secret_arn: String,
    pub cluster: NewCluster,
    /// `OpenPorts`: opened once the cluster runs (the API takes no ports on create).
    pub ports: Ports,
    pub poll_seconds: u64,
    pub timeout_minutes: u64,
    /// What deleting the resource does to the cluster.
    pub on_delete: OnDelete,
    /// `RestoreFromBackupId`: the cluster is restored from this backup instead of created empty.
    pub restore_from: Option<String>,
    /// `AllowReplacement`: an Update whose changes need a new cluster may make one.
    pub allow_replacement: bool,
}

/// `OnDelete`: what deleting the resource (the stack's deletion, or the clean-up after a
/// replacement) does to its Hopsworks cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// Back the cluster up (`/api/backups`), wait until the backup has succeeded, then terminate
    /// it and delete its ECR repositories. A cluster that never started, or failed, has no data
    /// to keep: it is terminated without a backup.
    BackupThenTerminate,
    /// Terminate it and delete its ECR repositories: its data is lost.
    Terminate,
    /// Leave it running, with its ECR repositories: the stack lets go of it.
    Retain,
}

impl PropertyEnum for OnDelete {
    const VALUES: &'static [(&'static str, Self)] = &[
        ("backup-then-terminate", OnDelete::BackupThenTerminate),
        ("terminate", OnDelete::Terminate),
        ("retain", OnDelete::Retain),
    ];
}

impl OnDelete {
    pub(crate) fn parse(p: &Properties) -> Result<Self, InputError> {
        p.enumerated("OnDelete", OnDelete::BackupThenTerminate)
    }
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
    pub on_delete: OnDelete,
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
            on_delete: OnDelete::parse(p)?,
        })
    }
}

/// Properties an Update may change without replacing the Hopsworks cluster: the Update converges
/// the cluster to them (`update.rs`), or they are the resource's own settings.
pub const IN_PLACE: &[&str] = &[
    "ApiKeySecretArn",
    "PollIntervalSeconds",
    "TimeoutMinutes",
    "WorkerCount",
    "WorkerInstanceType",
    "WorkerDiskSize",
    "HeadInstanceType",
    "HopsworksVersion",
    "AutoscaleMaxWorkers",
    "AutoscaleMinWorkers",
    "AutoscaleInstanceType",
    "AutoscaleDiskSize",
    "AutoscaleStandbyWorkers",
    "AutoscaleDownscaleWaitSeconds",
    "OpenPorts",
    "OnDelete",
    "AllowReplacement",
];

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
            autoscale: autoscale(p, worker_count)?,
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
        let restore_from = p.optional_str("RestoreFromBackupId")?;
        if let Some(id) = restore_from
            && !crate::ownership::is_cluster_id(id)
        {
            return Err(invalid(
                "RestoreFromBackupId",
                id,
                "a Hopsworks.ai backup id (letters, digits, hyphens), or empty for a new cluster",
            ));
        }
        Ok(Self {
            secret_arn,
            cluster,
            ports: open_ports(p)?,
            poll_seconds: p.int("PollIntervalSeconds", 30, 1, 300)?,
            timeout_minutes: p.int("TimeoutMinutes", 50, 1, 59)?,
            on_delete: OnDelete::parse(p)?,
            restore_from: restore_from.map(str::to_owned),
            allow_replacement: p.bool("AllowReplacement", false)?,
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

/// `Autoscale*`: `None` when `AutoscaleMaxWorkers` is 0 (the default). Workers and autoscale are
/// exclusive (the contract): autoscale needs `WorkerCount` 0. Every property is checked even when
/// autoscale is off, so a mistake shows before the day it is turned on.
fn autoscale(p: &Properties, worker_count: u32) -> Result<Option<Autoscale>, InputError> {
    let max_workers: u32 = p.int("AutoscaleMaxWorkers", 0, 0, 100)?;
    let min_workers: u32 = p.int("AutoscaleMinWorkers", 0, 0, 100)?;
    let instance_type = p
        .optional_str("AutoscaleInstanceType")?
        .unwrap_or("m5.2xlarge")
        .to_owned();
    let disk_size = p.int("AutoscaleDiskSize", 512, 64, 16384)?;
    let standby = p.optional_str("AutoscaleStandbyWorkers")?.unwrap_or("0.5");
    let standby_workers = standby
        .parse::<f64>()
        .ok()
        .filter(|f| (0.0..=1.0).contains(f))
        .ok_or_else(|| {
            invalid(
                "AutoscaleStandbyWorkers",
                standby,
                "a decimal from 0 to 1 (the share of workers kept idle, e.g. 0.5)",
            )
        })?;
    let downscale_wait_time = p.int("AutoscaleDownscaleWaitSeconds", 300, 0, 86_400)?;
    if max_workers == 0 {
        return Ok(None);
    }
    if worker_count > 0 {
        return Err(invalid(
            "AutoscaleMaxWorkers",
            &max_workers.to_string(),
            "0 while WorkerCount is above 0: workers and autoscale are exclusive (set WorkerCount \
             to 0 to autoscale, or AutoscaleMaxWorkers to 0 for a fixed number of workers)",
        ));
    }
    if min_workers > max_workers {
        return Err(invalid(
            "AutoscaleMinWorkers",
            &min_workers.to_string(),
            "at most AutoscaleMaxWorkers",
        ));
    }
    Ok(Some(Autoscale {
        non_gpu: Some(AutoscaleGroup {
            instance_type,
            disk_size,
            min_workers,
            max_workers,
            standby_workers,
            downscale_wait_time,
        }),
        gpu: None,
    }))
}

/// `OpenPorts`: a list (or one comma-separated string) of FeatureStore, OnlineFeatureStore, Kafka,
/// Ssh (any case); empty items are ignored (a `CommaDelimitedList` parameter left empty gives
/// `[""]`).
fn open_ports(p: &Properties) -> Result<Ports, InputError> {
    let mut ports = Ports::default();
    for item in p.list("OpenPorts")? {
        let port = match item.to_ascii_lowercase().as_str() {
            "featurestore" => &mut ports.feature_store,
            "onlinefeaturestore" => &mut ports.online_feature_store,
            "kafka" => &mut ports.kafka,
            "ssh" => &mut ports.ssh,
            _ => {
                return Err(invalid(
                    "OpenPorts",
                    &item,
                    "a list of FeatureStore, OnlineFeatureStore, Kafka and Ssh (or empty)",
                ));
            }
        };
        *port = true;
    }
    Ok(ports)
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
    fn on_delete_defaults_to_a_backup_and_refuses_what_it_does_not_know() {
        let s = Settings::parse(&props(base()), "r").unwrap();
        assert_eq!(s.on_delete, OnDelete::BackupThenTerminate);
        assert!(!s.allow_replacement);
        assert_eq!(s.restore_from, None);
        for (given, expected) in [
            ("terminate", OnDelete::Terminate),
            ("Retain", OnDelete::Retain),
            ("backup-then-terminate", OnDelete::BackupThenTerminate),
        ] {
            let mut v = base();
            v["OnDelete"] = json!(given);
            assert_eq!(
                DeleteSettings::parse(&props(v.clone())).unwrap().on_delete,
                expected
            );
            assert_eq!(Settings::parse(&props(v), "r").unwrap().on_delete, expected);
        }
        let mut v = base();
        v["OnDelete"] = json!("keep");
        let err = DeleteSettings::parse(&props(v.clone()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("OnDelete must be one of backup-then-terminate, terminate, retain"),
            "{err}"
        );
        assert!(Settings::parse(&props(v), "r").is_err());
    }

    #[test]
    fn a_restore_names_a_backup_id_and_replacement_is_a_yes_or_no() {
        let mut v = base();
        v["RestoreFromBackupId"] = json!("5e1d2c3b-bbbb-0001");
        v["AllowReplacement"] = json!("true");
        let s = Settings::parse(&props(v.clone()), "r").unwrap();
        assert_eq!(s.restore_from.as_deref(), Some("5e1d2c3b-bbbb-0001"));
        assert!(s.allow_replacement);
        v["RestoreFromBackupId"] = json!("../clusters");
        let err = Settings::parse(&props(v.clone()), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("RestoreFromBackupId"), "{err}");
        v["RestoreFromBackupId"] = json!("b-1");
        v["AllowReplacement"] = json!("yes");
        let err = Settings::parse(&props(v), "r").unwrap_err().to_string();
        assert!(err.contains("AllowReplacement"), "{err}");
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
        v["WorkerCount"] = json!("3");
        v["OpenPorts"] = json!(["Kafka"]);
        assert!(replacing_changes(&old, &props(v.clone())).is_empty());
        v["BucketName"] = json!("other-bucket");
        assert_eq!(replacing_changes(&old, &props(v)), ["BucketName"]);
    }

    #[test]
    fn autoscale_is_off_by_default_and_on_with_its_defaults() {
        let s = Settings::parse(&props(base()), "r").unwrap();
        assert_eq!(s.cluster.autoscale, None);
        let mut v = base();
        v["WorkerCount"] = json!("0");
        v["AutoscaleMaxWorkers"] = json!("4");
        let s = Settings::parse(&props(v), "r").unwrap();
        assert!(s.cluster.cluster_configuration.workers.is_empty());
        let group = s.cluster.autoscale.and_then(|a| a.non_gpu).unwrap();
        assert_eq!(
            group,
            AutoscaleGroup {
                instance_type: "m5.2xlarge".into(),
                disk_size: 512,
                min_workers: 0,
                max_workers: 4,
                standby_workers: 0.5,
                downscale_wait_time: 300,
            }
        );
    }

    #[test]
    fn autoscale_rules_are_enforced_with_the_property_named() {
        let cases = [
            (
                json!({"AutoscaleMaxWorkers": "2"}),
                "workers and autoscale are exclusive",
            ),
            (
                json!({"WorkerCount": "0", "AutoscaleMaxWorkers": "2", "AutoscaleMinWorkers": "3"}),
                "AutoscaleMinWorkers must be at most AutoscaleMaxWorkers",
            ),
            (
                json!({"AutoscaleStandbyWorkers": "half"}),
                "AutoscaleStandbyWorkers",
            ),
            (
                json!({"AutoscaleStandbyWorkers": "1.5"}),
                "a decimal from 0 to 1",
            ),
            (
                json!({"AutoscaleDownscaleWaitSeconds": "-1"}),
                "AutoscaleDownscaleWaitSeconds",
            ),
            (json!({"AutoscaleDiskSize": "10"}), "AutoscaleDiskSize"),
        ];
        for (changes, expected) in cases {
            let mut v = base();
            for (k, value) in changes.as_object().unwrap() {
                v[k] = value.clone();
            }
            let err = Settings::parse(&props(v), "r").unwrap_err().to_string();
            assert!(err.contains(expected), "{changes}: {err}");
        }
    }

    #[test]
    fn open_ports_read_from_a_list_or_a_comma_separated_string() {
        let mut v = base();
        v["OpenPorts"] = json!([""]);
        assert_eq!(
            Settings::parse(&props(v.clone()), "r").unwrap().ports,
            Ports::default()
        );
        v["OpenPorts"] = json!("FeatureStore, kafka,,Ssh");
        let ports = Settings::parse(&props(v.clone()), "r").unwrap().ports;
        assert!(ports.feature_store && ports.kafka && ports.ssh && !ports.online_feature_store);
        v["OpenPorts"] = json!(["OnlineFeatureStore"]);
        assert!(
            Settings::parse(&props(v.clone()), "r")
                .unwrap()
                .ports
                .online_feature_store
        );
        v["OpenPorts"] = json!(["Http"]);
        let err = Settings::parse(&props(v), "r").unwrap_err().to_string();
        assert!(
            err.contains("OpenPorts") && err.contains("\"Http\""),
            "{err}"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_replacing_properties_only() {
        let old = settings_fingerprint(&props(base()));
        assert_eq!(old.len(), 16);
        let mut v = base();
        v["PollIntervalSeconds"] = json!("10");
        v["TimeoutMinutes"] = json!("20");
        assert_eq!(settings_fingerprint(&props(v.clone())), old);
        // The in-place properties, which the Update converges to, are not in it either.
        for (key, value) in [
            ("WorkerCount", "2"),
            ("HopsworksVersion", "4.0.0"),
            ("OpenPorts", "Kafka"),
            ("AutoscaleMaxWorkers", "4"),
            ("HeadInstanceType", "m5.4xlarge"),
        ] {
            v[key] = json!(value);
            assert_eq!(settings_fingerprint(&props(v.clone())), old, "{key}");
        }
        v["HeadDiskSize"] = json!("1024");
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
