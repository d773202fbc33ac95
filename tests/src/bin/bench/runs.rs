//! One measured invocation, and what the emulators saw of it.

use crate::functions::Functions;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::control::Control;
use system_tests::faults::FaultProxy;
use system_tests::lambda::LambdaFunction;

pub const DISCOVERY: (&str, &str) = ("Custom::ClusterDiscovery", "ClusterDiscovery");
pub const EKS_ACCESS: (&str, &str) = ("Custom::EksAccess", "EksAccess");
pub const HOPSWORKS: (&str, &str) = ("Custom::HopsworksCluster", "HopsworksCluster");

/// The bench (moto, its doubles, the fault proxy counting AWS calls) and every function.
pub struct Bench {
    pub aws: AwsBench,
    pub proxy: FaultProxy,
    pub control: Control,
    pub functions: Functions,
}

pub enum Op<'a> {
    Create(Value),
    Delete(&'a str, Value),
}

/// What one invocation cost and which calls it made.
pub struct Invocation {
    pub answer: Answer,
    /// Exec to the first `/next` poll (cold runs only).
    pub start_up: Option<Duration>,
    /// Exec (cold) or the invocation (warm) to the ResponseURL PUT.
    pub end_to_end: Duration,
    /// The process's peak RSS so far (`VmHWM`), read while it is parked at `/next`.
    pub vm_hwm_kib: u64,
    /// Time moto took to answer, summed over requests (through the proxy).
    pub moto: Duration,
    /// Time the Kubernetes API double took, summed over requests.
    pub kube: Duration,
    pub aws_calls: Vec<String>,
    pub kube_calls: Vec<String>,
    pub hopsworks_calls: Vec<String>,
}

/// The peak resident set of process `pid`, from its own `/proc/<pid>/status`.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Bench {
    pub async fn start() -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let control = Control::new(&aws.seeded.control_endpoint);
        let functions = Functions::new(&aws.seeded, &proxy);
        Self {
            aws,
            proxy,
            control,
            functions,
        }
    }

    pub fn cluster(&self) -> &str {
        &self.aws.seeded.cluster.name
    }

    pub fn discovery_props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({"ClusterName": s.cluster.name, "InstanceProfile": s.hopsworks.instance_profile_arn})
    }

    /// demo-eks (CONFIG_MAP); Kubernetes calls as the cluster's creator, as the tests do.
    pub fn eks_access_props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({
            "ClusterName": s.cluster.name,
            "RoleArn": s.hopsworks.role_arn,
            "KubernetesRoleArn": s.identities.creator.role_arn,
        })
    }

    pub fn hopsworks_props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({
            "ApiKeySecretArn": s.hopsworks_ai.secret_arn,
            "ClusterName": "fs-bench",
            "InstanceProfileArn": s.hopsworks.instance_profile_arn,
            "EksClusterName": s.cluster.name,
            "BucketName": "hops-bench-bucket",
            "VpcId": s.cluster.vpc_id,
            "SubnetId": s.cluster.public_subnet_ids[0],
            "SecurityGroupId": s.cluster.cluster_security_group_id,
            "PollIntervalSeconds": "1",
        })
    }

    pub async fn map_roles(&self) -> String {
        self.control.aws_auth(self.cluster()).await["data"]["mapRoles"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A process started cold and parked at its first `/next`: (start-up, VmHWM then).
    pub async fn start_up(&self, f: &LambdaFunction) -> (Duration, u64) {
        let info = f.start_cold().await.expect("the function started");
        let start_up = info.start_up().expect("the function polled /next");
        let rss = info.pid.and_then(vm_hwm_kib).unwrap_or_default();
        f.stop().await;
        (start_up, rss)
    }

    /// One invocation of `f` as CloudFormation makes it; `cold` starts a fresh process first.
    pub async fn invoke(
        &self,
        f: &LambdaFunction,
        (resource_type, logical): (&str, &str),
        op: Op<'_>,
        cold: bool,
    ) -> Invocation {
        if cold {
            f.stop().await;
        }
        let cluster = self.cluster().to_owned();
        self.proxy.clear();
        self.control.clear_kube_requests(&cluster).await;
        let hopsworks_before = self.control.hopsworks_requests().await.len();
        let mut cfn = Player::new(f, resource_type).await;
        cfn.grace = Duration::ZERO;
        cfn.answer_timeout = Duration::from_secs(120);
        let sent = Instant::now();
        let answer = match op {
            Op::Create(props) => cfn.create(logical, props).await,
            Op::Delete(id, props) => cfn.delete(logical, id, props).await,
        };
        let info = f.process().await;
        let vm_hwm_kib = info
            .and_then(|i| i.pid)
            .and_then(vm_hwm_kib)
            .unwrap_or_default();
        let (start, start_up) = match info {
            Some(i) if cold => (i.spawned, i.start_up()),
            _ => (sent, None),
        };
        let kube = self.control.kube_requests(&cluster).await;
        let hopsworks = self.control.hopsworks_requests().await;
        Invocation {
            end_to_end: answer.answered.saturating_duration_since(start),
            answer,
            start_up,
            vm_hwm_kib,
            moto: self.proxy.upstream_time(),
            kube: Duration::from_secs_f64(kube.iter().filter_map(|r| r["seconds"].as_f64()).sum()),
            aws_calls: self.proxy.actions(),
            kube_calls: kube.iter().map(kube_call).collect(),
            hopsworks_calls: hopsworks
                .iter()
                .skip(hopsworks_before)
                .map(hopsworks_call)
                .collect(),
        }
    }
}

/// `GET configmaps/aws-auth` for a request the Kubernetes double logged.
fn kube_call(r: &Value) -> String {
    let path = r["path"].as_str().unwrap_or_default();
    let short = path
        .rsplit_once("/namespaces/kube-system/")
        .map_or(path, |(_, p)| p);
    format!("{} {short}", r["method"].as_str().unwrap_or_default())
}

/// `GET /api/clusters/{id}` for a request the Hopsworks.ai double logged.
fn hopsworks_call(r: &Value) -> String {
    let path = r["path"].as_str().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    let generic: Vec<&str> = path
        .split('/')
        .enumerate()
        .map(|(i, s)| if i == 3 && !s.is_empty() { "{id}" } else { s })
        .collect();
    format!(
        "{} {}",
        r["method"].as_str().unwrap_or_default(),
        generic.join("/")
    )
}

/// `a, b ×3, c` in first-seen order.
pub fn summarize(calls: &[String]) -> String {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for c in calls {
        match seen.iter_mut().find(|(name, _)| name == c) {
            Some((_, n)) => *n += 1,
            None => seen.push((c, 1)),
        }
    }
    let parts: Vec<String> = seen
        .iter()
        .map(|(c, n)| {
            if *n == 1 {
                (*c).to_owned()
            } else {
                format!("{c} ×{n}")
            }
        })
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}
