//! moto's server, started in-process by `tests/bench/aws_bench.py` and seeded with an account:
//! an EKS cluster with its VPC, public and private subnets, security groups, node role, and the
//! Hopsworks instance profile with a role under an IAM path, the Hopsworks bucket and a key pair.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the bench seeded (the state file `aws_bench.py` writes).
#[derive(Debug, Clone, Deserialize)]
pub struct Seeded {
    pub endpoint: String,
    pub region: String,
    pub account_id: String,
    pub cluster: SeededCluster,
    pub creating_cluster_name: String,
    pub hopsworks: SeededHopsworks,
    pub empty_instance_profile_name: String,
    pub empty_instance_profile_arn: String,
    pub node_role_arn: String,
    /// What the Hopsworks cluster is given: a bucket, a key pair.
    pub storage: SeededStorage,
    /// The Kubernetes API double of each ACTIVE cluster.
    pub kube: BTreeMap<String, SeededKube>,
    /// A CA that signed none of the API servers' certificates.
    pub wrong_ca_pem: String,
    /// A second ACTIVE cluster, in API_AND_CONFIG_MAP mode (access entries).
    pub access_cluster: SeededAccessCluster,
    /// Bench control API (faults, raw ConfigMaps, request logs).
    pub control_endpoint: String,
    pub identities: Identities,
    /// The Hopsworks.ai API double and the secrets holding its key.
    pub hopsworks_ai: SeededHopsworksAi,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededHopsworksAi {
    pub api_url: String,
    /// The key itself: tests look for it in logs, Reasons and outputs.
    pub api_key: String,
    /// A secret holding the key as a plain string.
    pub secret_arn: String,
    /// A secret holding `{"apiKey": "…"}`.
    pub secret_json_arn: String,
    /// A secret holding a key Hopsworks.ai refuses.
    pub wrong_secret_arn: String,
    pub missing_secret_arn: String,
}

/// S3 and EC2 things the Hopsworks cluster is given (the pre-flight checks them).
#[derive(Debug, Clone, Deserialize)]
pub struct SeededStorage {
    /// A bucket in the bench's region (the demo's `HopsworksBucketName`).
    pub bucket: String,
    /// A bucket in `bucket_elsewhere_region`, not the bench's.
    pub bucket_elsewhere: String,
    pub bucket_elsewhere_region: String,
    /// An EC2 key pair in the bench's region.
    pub key_pair: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededKube {
    pub endpoint: String,
    pub ca_pem: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededAccessCluster {
    pub name: String,
    pub arn: String,
    pub cluster_security_group_id: String,
}

/// Session credentials of the bench's principals (moto STS AssumeRole).
#[derive(Debug, Clone, Deserialize)]
pub struct Identities {
    /// The EksAccess function's execution role: mapped nowhere.
    pub function: Identity,
    /// The clusters' creator: admin on both.
    pub creator: Identity,
    /// Mapped in demo-eks's aws-auth with a group that has no rights.
    pub viewer: Identity,
    /// The Hopsworks instance profile's role.
    pub hopsworks: Identity,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededCluster {
    pub name: String,
    pub arn: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub cluster_security_group_id: String,
    pub node_security_group_id: String,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
    pub version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeededHopsworks {
    pub role_name: String,
    pub role_arn: String,
    pub role_arn_without_path: String,
    pub role_path: String,
    pub instance_profile_name: String,
    pub instance_profile_arn: String,
}

/// A running moto server; stopped when dropped.
pub struct AwsBench {
    pub seeded: Seeded,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The Python in the repo's venv (`make venv` creates it).
pub fn venv_python() -> PathBuf {
    crate::workspace().join(".venv/bin/python")
}

impl AwsBench {
    pub async fn start() -> Self {
        let python = venv_python();
        assert!(
            python.exists(),
            "{} is missing: run `make venv` (make test does)",
            python.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state.json");
        let mut child = Command::new(python)
            .arg(crate::workspace().join("tests/bench/aws_bench.py"))
            .arg("--state-file")
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the moto bench");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("READY") {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            matches!(ready, Ok(true)),
            "the moto bench did not become ready"
        );
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let text = std::fs::read_to_string(&state).expect("state file");
        let seeded = serde_json::from_str(&text).expect("state file is the bench's JSON");
        Self {
            seeded,
            child,
            _dir: dir,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.seeded.endpoint
    }

    /// An SDK-less check of moto's state: run a Python snippet with boto3 against the bench.
    /// `BENCH_ENDPOINT` and the region are set for it; it prints JSON.
    pub async fn query(&self, script: &str) -> serde_json::Value {
        let output = Command::new(venv_python())
            .arg("-c")
            .arg(script)
            .env("BENCH_ENDPOINT", self.endpoint())
            .env("AWS_DEFAULT_REGION", &self.seeded.region)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .output()
            .await
            .expect("python runs");
        assert!(
            output.status.success(),
            "query failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("query prints JSON")
    }
}

impl Drop for AwsBench {
    fn drop(&mut self) {
        // Closing stdin asks the bench to stop; kill_on_drop makes sure.
        drop(self.child.stdin.take());
        let _ = self.child.start_kill();
    }
}
