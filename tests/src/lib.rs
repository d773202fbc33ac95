//! The local bench: every part a custom resource talks to in AWS, played on loopback.
//!
//! - [`aws`]: moto's server (a real AWS emulator), seeded with a realistic account;
//! - [`faults`]: a proxy in front of it that injects throttling, 5xx and delays;
//! - [`iam`]: IAM, which moto does not enforce: a stack's function calls checked against its role;
//! - [`lambda`]: a Lambda Runtime API that runs the compiled function binary, with Lambda's
//!   environment, deadline header and kill at timeout;
//! - [`cloudformation`]: CloudFormation's side of the protocol, with a ResponseURL receiver that
//!   checks every PUT as S3 and CloudFormation would.

pub mod aws;
pub mod cloudformation;
pub mod control;
pub mod faults;
pub mod iam;
pub mod kube;
pub mod lambda;
pub mod matrix;
pub mod parameters;
mod server;
pub mod stack;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The path of a function binary (debug), built if it is missing or stale.
///
/// The build asks for the same targets as `cargo test --workspace` (so the same feature
/// resolution): after that, it is a no-op instead of a second build of every AWS SDK crate.
/// `FUNCTION_BIN_DIR` points at prebuilt binaries instead (the benchmarks use release builds).
pub fn function_binary(bin: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("FUNCTION_BIN_DIR") {
        return PathBuf::from(dir).join(bin);
    }
    static BUILT: OnceLock<Mutex<bool>> = OnceLock::new();
    let built = BUILT.get_or_init(Mutex::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the function binaries failed");
        *built = true;
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join("target"));
    target.join("debug").join(bin)
}

/// A random lowercase hex string, for request ids and signatures.
pub fn random_hex(len: usize) -> String {
    std::iter::repeat_with(|| fastrand::u8(..))
        .take(len.div_ceil(2))
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// A UUID-shaped random id, as CloudFormation's RequestId.
pub fn random_uuid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A function as the stack deploys it: `bin` under `name`, with `timeout` and `env` on top of
/// Lambda's environment.
fn function(
    name: &str,
    bin: &str,
    timeout: std::time::Duration,
    env: &[(&str, &str)],
) -> lambda::LambdaFunction {
    let mut config = lambda::FunctionConfig::new(name, function_binary(bin));
    config.timeout = timeout;
    config
        .env
        .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    lambda::LambdaFunction::new(config)
}

/// The `ClusterDiscovery` function, its AWS calls sent to `endpoint`.
pub fn discovery_function(endpoint: &str, timeout: std::time::Duration) -> lambda::LambdaFunction {
    let env = [("AWS_ENDPOINT_URL", endpoint)];
    function(
        "hopsworks-eks-ClusterDiscovery",
        "cluster-discovery",
        timeout,
        &env,
    )
}

/// The `EksAccess` function, with the bench's function-role session as its execution role.
pub fn eks_access_function(
    seeded: &aws::Seeded,
    endpoint: &str,
    timeout: std::time::Duration,
) -> lambda::LambdaFunction {
    let id = &seeded.identities.function;
    let env = [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", id.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", id.secret_access_key.as_str()),
        ("AWS_SESSION_TOKEN", id.session_token.as_str()),
    ];
    function("hopsworks-eks-EksAccess", "eks-access", timeout, &env)
}

/// The `HopsworksCluster` function, talking to the bench's Hopsworks.ai double; registered with
/// `proxy` so that its self-invocations (long waits) run through the bench's Runtime API.
pub fn hopsworks_cluster_function(
    seeded: &aws::Seeded,
    proxy: &faults::FaultProxy,
    timeout: std::time::Duration,
) -> std::sync::Arc<lambda::LambdaFunction> {
    let f = std::sync::Arc::new(hopsworks_cluster_lambda(seeded, proxy, timeout));
    proxy.register_function(f.clone());
    f
}

/// The same function, not registered (a second execution environment of it, say).
pub fn hopsworks_cluster_lambda(
    seeded: &aws::Seeded,
    proxy: &faults::FaultProxy,
    timeout: std::time::Duration,
) -> lambda::LambdaFunction {
    let env = [
        ("AWS_ENDPOINT_URL", proxy.endpoint()),
        ("HOPSWORKS_API_URL", seeded.hopsworks_ai.api_url.as_str()),
    ];
    function(
        "hopsworks-eks-HopsworksCluster",
        "hopsworks-cluster",
        timeout,
        &env,
    )
}

/// The `HopsworksCluster` resource's properties on the bench's account: the cluster `fs-demo` on
/// the seeded EKS cluster, its first public subnet and cluster security group, a 1 s poll.
pub fn hopsworks_cluster_properties(s: &aws::Seeded) -> serde_json::Value {
    serde_json::json!({
        "ApiKeySecretArn": s.hopsworks_ai.secret_arn,
        "ClusterName": "fs-demo",
        "InstanceProfileArn": s.hopsworks.instance_profile_arn,
        "EksClusterName": s.cluster.name,
        "BucketName": "hops-demo-bucket",
        "VpcId": s.cluster.vpc_id,
        "SubnetId": s.cluster.public_subnet_ids[0],
        "SecurityGroupId": s.cluster.cluster_security_group_id,
        "PollIntervalSeconds": "1",
    })
}

/// The `SecurityGroupIngress` function, its AWS calls sent to `endpoint`.
pub fn ingress_function(endpoint: &str, timeout: std::time::Duration) -> lambda::LambdaFunction {
    let env = [("AWS_ENDPOINT_URL", endpoint)];
    function(
        "hopsworks-eks-SecurityGroupIngress",
        "security-group-ingress",
        timeout,
        &env,
    )
}
