//! The API's JSON, with the field names the contract gives (camelCase, flat AWS fields on create).

use serde::{Deserialize, Serialize};

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
    pub head: Node,
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

/// `GET /api/clusters/{id}` → `payload.cluster`. Absent fields read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub state: String,
    pub activation_state: String,
    pub initialization_stage: String,
    pub error_message: String,
    /// When the cluster first ran (Unix seconds); 0: it never started.
    pub started_on: i64,
    pub url: String,
    pub version: String,
    pub tags: Vec<Tag>,
    pub aws: AwsSettings,
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
}
