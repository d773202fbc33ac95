//! The API's JSON, with the field names the contract gives (camelCase, flat AWS fields on create).

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// `POST /api/clusters` body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest<'a> {
    pub cloud_provider: &'static str,
    pub cluster: &'a NewCluster,
}

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewCluster {
    pub name: String,
    pub version: String,
    pub ssh_key_name: String,
    pub cluster_configuration: ClusterConfiguration,
    pub issue_lets_encrypt: bool,
    #[serde(rename = "attachPublicIP")]
    pub attach_public_ip: bool,
    pub backup_retention_period: u32,
    pub managed_users: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(rename = "ronDB")]
    pub ron_db: RonDb,
    /// Exclusive with `clusterConfiguration.workers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<Autoscale>,
    pub init_script: String,
    pub run_init_script_first: bool,
    pub os: String,
    pub deactivate_log_report: bool,
    pub collect_logs: bool,
    pub region: String,
    pub bucket_name: String,
    pub instance_profile_arn: String,
    pub head_instance_profile_arn: String,
    pub vpc_id: String,
    pub subnet_id: String,
    pub security_group_id: String,
    pub eks_cluster_name: String,
    pub ecr_registry_account_id: String,
    pub bucket_configuration: BucketConfiguration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterConfiguration {
    #[serde(deserialize_with = "nullable")]
    pub head: Node,
    #[serde(deserialize_with = "nullable")]
    pub workers: Vec<Workers>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    pub instance_type: String,
    pub disk_size: u32,
    pub ha_enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Workers {
    pub instance_type: String,
    pub disk_size: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// The provider's defaults (the contract's vector 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RonDb {
    pub all_in_one: bool,
    pub configuration: serde_json::Value,
    pub mgmd: RonDbNode,
    pub ndbd: RonDbNode,
    pub mysqld: RonDbMysqld,
    pub api: RonDbNode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RonDbNode {
    pub instance_type: String,
    pub disk_size: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RonDbMysqld {
    pub instance_type: String,
    pub disk_size: u32,
    pub count: u32,
    pub arrow_flight: bool,
}

impl Default for RonDb {
    fn default() -> Self {
        let node = |t: &str, disk, count| RonDbNode {
            instance_type: t.to_owned(),
            disk_size: disk,
            count,
        };
        Self {
            all_in_one: false,
            configuration: serde_json::json!({
                "ndbdDefault": {"replicationFactor": 2},
                "general": {"benchmark": {"grantUserPrivileges": false}}
            }),
            mgmd: node("t3a.medium", 30, 1),
            ndbd: node("r5.large", 512, 2),
            mysqld: RonDbMysqld {
                instance_type: "c5.large".to_owned(),
                disk_size: 128,
                count: 1,
                arrow_flight: false,
            },
            api: node("", 30, 0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketConfiguration {
    pub encryption: Encryption,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    pub mode: String,
    pub kms_type: String,
    pub user_key_arn: String,
    pub bucket_key: bool,
}

impl Default for BucketConfiguration {
    fn default() -> Self {
        Self {
            encryption: Encryption {
                mode: "None".to_owned(),
                kms_type: "Managed".to_owned(),
                user_key_arn: String::new(),
                bucket_key: false,
            },
        }
    }
}

/// `GET /api/clusters/{id}` → `payload.cluster`. Absent fields (and `null` ones) read as empty.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub state: String,
    pub activation_state: String,
    pub initialization_stage: String,
    #[serde(deserialize_with = "nullable")]
    pub error_message: String,
    /// When the cluster first ran (Unix seconds); 0: it never started.
    #[serde(deserialize_with = "nullable")]
    pub started_on: i64,
    pub url: String,
    pub version: String,
    pub tags: Vec<Tag>,
    pub aws: AwsSettings,
    #[serde(deserialize_with = "nullable")]
    pub cluster_configuration: ClusterConfiguration,
    pub autoscale: Option<Autoscale>,
    #[serde(deserialize_with = "nullable")]
    pub ports: Ports,
    /// Shown from the upgrade's start until it is over (`running` included, while upgrading).
    pub upgrade_in_progress: Option<UpgradeInProgress>,
    #[serde(deserialize_with = "nullable")]
    pub backup_pipeline_in_progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AwsSettings {
    pub region: String,
    pub eks_cluster_name: String,
    pub ecr_registry_account_id: String,
}

impl Cluster {
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.value.as_str())
    }
}

/// `null` as the type's default (an API may send `null` for "none").
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `autoscale` on a cluster (GET) and in `POST /api/clusters/{id}/autoscale`. A cluster without
/// autoscale has none, or one without `nonGpu`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Autoscale {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub non_gpu: Option<AutoscaleGroup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<AutoscaleGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AutoscaleGroup {
    pub instance_type: String,
    pub disk_size: u32,
    pub min_workers: u32,
    pub max_workers: u32,
    /// A fraction of the workers kept idle (0.5 in the provider's default).
    pub standby_workers: f64,
    /// Seconds.
    pub downscale_wait_time: u32,
}

/// The ports a cluster opens to the internet (`ports` on GET, `POST .../ports` `{ports}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Ports {
    pub feature_store: bool,
    pub online_feature_store: bool,
    pub kafka: bool,
    pub ssh: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct UpgradeInProgress {
    pub from: String,
    pub to: String,
}

/// One entry of `GET /api/clusters/hopsworks/versions/AWS`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Version {
    pub version: String,
    /// The version a cluster must run to be upgraded to this one ("" when the API says none).
    #[serde(deserialize_with = "nullable")]
    pub upgradable_from_version: String,
    pub default: bool,
    pub experimental: bool,
    /// Where the version is offered, by OS.
    #[serde(deserialize_with = "nullable")]
    pub regions: Regions,
    #[serde(deserialize_with = "nullable")]
    pub release_notes_url: String,
}

/// A catalogue entry's regions, by the OS its VMs run (an empty list says nothing).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(default)]
pub struct Regions {
    #[serde(deserialize_with = "nullable")]
    pub ubuntu: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub centos: Vec<String>,
}

impl Regions {
    /// The regions listed for `os` (`ubuntu`, `centos`).
    pub fn for_os(&self, os: &str) -> &[String] {
        match os {
            "centos" => &self.centos,
            _ => &self.ubuntu,
        }
    }
}

/// The node kinds `PUT .../nodes/modify-instance-type` changes (workers change through
/// `/workers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    Head,
    RondbData,
    RondbMysql,
    RondbApi,
    RondbAio,
}

/// `POST .../workers` and `DELETE .../workers` body.
#[derive(Debug, Serialize)]
pub(crate) struct WorkersRequest<'a> {
    pub workers: &'a [Workers],
}

/// `POST .../autoscale` body.
#[derive(Debug, Serialize)]
pub(crate) struct AutoscaleRequest<'a> {
    pub autoscale: &'a Autoscale,
}

/// `POST .../ports` body.
#[derive(Debug, Serialize)]
pub(crate) struct PortsRequest<'a> {
    pub ports: &'a Ports,
}

/// `POST .../upgrade` body: the registry account only for a target above 3.0.0 (the contract).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpgradeRequest<'a> {
    pub version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_registry_account: Option<&'a str>,
}

impl<'a> UpgradeRequest<'a> {
    pub fn new(version: &'a str, docker_registry_account: &'a str) -> Self {
        let needs_account = compare_versions(version, "3.0.0") == Ordering::Greater;
        Self {
            version,
            docker_registry_account: (needs_account && !docker_registry_account.is_empty())
                .then_some(docker_registry_account),
        }
    }
}

/// `PUT .../nodes/modify-instance-type` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ModifyInstanceTypeRequest<'a> {
    pub node_info: NodeInfo<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NodeInfo<'a> {
    pub node_type: NodeType,
    pub instance_type: &'a str,
}

/// Order Hopsworks versions ("3.9.0", "4.0.0-rc1", "3.4.1_2"): the text up to the first `_` (as
/// the provider cuts it), compared part by part, numbers as numbers ("3.10" after "3.9"); a
/// label ranks below a release ("4.0.0-rc1" before "4.0.0").
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn parts(v: &str) -> Vec<Result<u64, &str>> {
        v.trim()
            .split('_')
            .next()
            .unwrap_or_default()
            .split(['.', '-'])
            .map(|p| p.parse::<u64>().map_err(|_| p))
            .collect()
    }
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x, y) {
            (Ok(x), Ok(y)) => x.cmp(y),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(x), Err(y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    // One is the other with more parts: a label after it ranks below, a number above.
    let longer_by = |longer: &[Result<u64, &str>], at: usize| match longer.get(at) {
        Some(Err(_)) => Ordering::Less,
        _ => Ordering::Greater,
    };
    match a.len().cmp(&b.len()) {
        Ordering::Equal => Ordering::Equal,
        Ordering::Greater => longer_by(&a, b.len()),
        Ordering::Less => longer_by(&b, a.len()).reverse(),
    }
}

/// Waiting for `running` again after a day-2 change: what a create waits through, plus the
/// stop and start an upgrade or an instance-type change goes through.
pub fn waiting_for_update(state: &str) -> Wait {
    match state {
        "stopping" | "stopped" => Wait::Pending,
        other => waiting_for_running(other),
    }
}

/// What waiting for a state means for a cluster's `state` (the Terraform provider's tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not there yet: poll again.
    Pending,
    /// Reached.
    Reached,
    /// Failed, or a state the wait does not expect.
    Failed,
}

/// Waiting for `running` after create.
pub fn waiting_for_running(state: &str) -> Wait {
    match state {
        "running" => Wait::Reached,
        "starting"
        | "pending"
        | "initializing"
        | "updating"
        | "decommissioning"
        | "worker-starting"
        | "worker-pending"
        | "worker-initializing"
        | "worker-shutting-down"
        | "worker-decommissioning"
        | "rondb-initializing"
        | "starting-hopsworks"
        | "secondary-initializing" => Wait::Pending,
        _ => Wait::Failed,
    }
}

/// Waiting for the cluster to be gone after DELETE (gone itself is a 404, not a state).
///
/// Unlike the Terraform provider, `error` is not a failure here: a rollback starts from a
/// cluster that failed to start, and until Hopsworks.ai acts on the DELETE the cluster still
/// reads `error`. It is deleted and waited for like any other.
pub fn waiting_for_gone(state: &str) -> Wait {
    match state {
        "running" | "shutting-down" | "error" => Wait::Pending,
        _ => Wait::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_has_the_contracts_field_names() {
        let cluster = NewCluster {
            name: "fs-demo".into(),
            version: "3.9.0".into(),
            ssh_key_name: String::new(),
            cluster_configuration: ClusterConfiguration {
                head: Node {
                    instance_type: "m5.2xlarge".into(),
                    disk_size: 512,
                    ha_enabled: false,
                },
                workers: vec![Workers {
                    instance_type: "m5.2xlarge".into(),
                    disk_size: 512,
                    count: 1,
                }],
            },
            issue_lets_encrypt: true,
            attach_public_ip: true,
            backup_retention_period: 0,
            managed_users: true,
            tags: Vec::new(),
            ron_db: RonDb::default(),
            autoscale: None,
            init_script: String::new(),
            run_init_script_first: false,
            os: "ubuntu".into(),
            deactivate_log_report: false,
            collect_logs: false,
            region: "us-east-2".into(),
            bucket_name: "hops-demo-bucket".into(),
            instance_profile_arn: "arn:aws:iam::111122223333:instance-profile/hopsworks".into(),
            head_instance_profile_arn: String::new(),
            vpc_id: "vpc-0a1b".into(),
            subnet_id: "subnet-0c2d".into(),
            security_group_id: "sg-0e3f".into(),
            eks_cluster_name: "demo-eks".into(),
            ecr_registry_account_id: "111122223333".into(),
            bucket_configuration: BucketConfiguration::default(),
        };
        let body = serde_json::to_value(CreateRequest {
            cloud_provider: "AWS",
            cluster: &cluster,
        })
        .unwrap();
        // The contract's vector 1, as a value.
        let expected: serde_json::Value = serde_json::from_str(r#"{"cloudProvider":"AWS","cluster":{"name":"fs-demo","version":"3.9.0","sshKeyName":"",
 "clusterConfiguration":{"head":{"instanceType":"m5.2xlarge","diskSize":512,"haEnabled":false},
  "workers":[{"instanceType":"m5.2xlarge","diskSize":512,"count":1}]},
 "issueLetsEncrypt":true,"attachPublicIP":true,"backupRetentionPeriod":0,"managedUsers":true,
 "ronDB":{"allInOne":false,"configuration":{"ndbdDefault":{"replicationFactor":2},"general":{"benchmark":{"grantUserPrivileges":false}}},
  "mgmd":{"instanceType":"t3a.medium","diskSize":30,"count":1},"ndbd":{"instanceType":"r5.large","diskSize":512,"count":2},
  "mysqld":{"instanceType":"c5.large","diskSize":128,"count":1,"arrowFlight":false},"api":{"instanceType":"","diskSize":30,"count":0}},
 "initScript":"","runInitScriptFirst":false,"os":"ubuntu","deactivateLogReport":false,"collectLogs":false,
 "region":"us-east-2","bucketName":"hops-demo-bucket","instanceProfileArn":"arn:aws:iam::111122223333:instance-profile/hopsworks",
 "headInstanceProfileArn":"","vpcId":"vpc-0a1b","subnetId":"subnet-0c2d","securityGroupId":"sg-0e3f",
 "eksClusterName":"demo-eks","ecrRegistryAccountId":"111122223333",
 "bucketConfiguration":{"encryption":{"mode":"None","kmsType":"Managed","userKeyArn":"","bucketKey":false}}}}"#).unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn a_sparse_cluster_reads_with_empty_fields() {
        let c: Cluster = serde_json::from_str(r#"{"id":"x","state":"initializing"}"#).unwrap();
        assert_eq!(c.state, "initializing");
        assert!(c.aws.eks_cluster_name.is_empty());
    }

    #[test]
    fn wait_tables_follow_the_provider() {
        assert_eq!(waiting_for_running("starting-hopsworks"), Wait::Pending);
        assert_eq!(waiting_for_running("running"), Wait::Reached);
        assert_eq!(waiting_for_running("error"), Wait::Failed);
        assert_eq!(waiting_for_running("stopped"), Wait::Failed);
        assert_eq!(waiting_for_gone("shutting-down"), Wait::Pending);
        assert_eq!(waiting_for_gone("error"), Wait::Pending);
        assert_eq!(waiting_for_gone("stopped"), Wait::Failed);
        assert_eq!(waiting_for_gone("termination-warning"), Wait::Failed);
    }

    #[test]
    fn a_running_cluster_reads_its_day2_fields() {
        let c: Cluster = serde_json::from_str(
            r#"{"id":"x","state":"running","version":"4.0.0","startedOn":1718001200,
            "errorMessage":null,"backupPipelineInProgress":true,
            "clusterConfiguration":{"head":{"instanceType":"m5.2xlarge","diskSize":512,"haEnabled":false,"nodeId":"i-0abc"},
              "workers":[{"instanceType":"m5.xlarge","diskSize":256,"count":2,"privateIps":["10.0.1.11"]}]},
            "autoscale":{"nonGpu":{"instanceType":"m5.2xlarge","diskSize":512,"minWorkers":1,"maxWorkers":4,
              "standbyWorkers":0.5,"downscaleWaitTime":300}},
            "ports":{"featureStore":true,"onlineFeatureStore":false,"kafka":true,"ssh":false},
            "upgradeInProgress":{"from":"3.9.0","to":"4.0.0"}}"#,
        )
        .unwrap();
        assert_eq!(c.started_on, 1718001200);
        assert!(c.error_message.is_empty());
        assert!(c.backup_pipeline_in_progress);
        assert_eq!(c.cluster_configuration.head.instance_type, "m5.2xlarge");
        assert_eq!(c.cluster_configuration.workers[0].count, 2);
        let group = c.autoscale.and_then(|a| a.non_gpu).unwrap();
        assert_eq!((group.max_workers, group.standby_workers), (4, 0.5));
        assert!(c.ports.feature_store && c.ports.kafka && !c.ports.ssh);
        assert_eq!(c.upgrade_in_progress.unwrap().from, "3.9.0");
        // Nulls read as none.
        let c: Cluster = serde_json::from_str(
            r#"{"id":"x","clusterConfiguration":{"head":null,"workers":null},"ports":null,
            "autoscale":null,"upgradeInProgress":null,"startedOn":null}"#,
        )
        .unwrap();
        assert!(c.cluster_configuration.workers.is_empty());
        assert_eq!(
            (c.autoscale, c.upgrade_in_progress, c.started_on),
            (None, None, 0)
        );
    }

    #[test]
    fn an_upgrade_names_the_registry_account_above_3_0_0_only() {
        let body = |v, account| serde_json::to_value(UpgradeRequest::new(v, account)).unwrap();
        assert_eq!(
            body("4.0.0", "111122223333"),
            serde_json::json!({"version": "4.0.0", "dockerRegistryAccount": "111122223333"})
        );
        assert_eq!(
            body("3.0.0", "111122223333"),
            serde_json::json!({"version": "3.0.0"})
        );
        assert_eq!(body("4.0.0", ""), serde_json::json!({"version": "4.0.0"}));
    }

    #[test]
    fn versions_order_by_their_numbers() {
        use Ordering::*;
        for (a, b, order) in [
            ("3.9.0", "3.9.0", Equal),
            ("3.10.0", "3.9.0", Greater),
            ("4.0.0", "3.9.1", Greater),
            ("3.9", "3.9.1", Less),
            ("4.0.0-rc1", "4.0.0", Less),
            ("4.0.0", "4.0.0-rc1", Greater),
            ("3.4.1_2", "3.4.1", Equal),
            ("3.0.0", "3.0.0-SNAPSHOT", Greater),
        ] {
            assert_eq!(compare_versions(a, b), order, "{a} vs {b}");
        }
    }

    #[test]
    fn an_update_waits_through_the_stop_and_start_of_an_upgrade() {
        for state in ["stopping", "stopped", "starting", "updating", "pending"] {
            assert_eq!(waiting_for_update(state), Wait::Pending, "{state}");
        }
        assert_eq!(waiting_for_update("running"), Wait::Reached);
        assert_eq!(waiting_for_update("error"), Wait::Failed);
        assert_eq!(waiting_for_update("worker-error"), Wait::Failed);
    }
}
