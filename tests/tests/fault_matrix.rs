//! The fault matrix (`system_tests::matrix`): every resource's Create, faulted before, during and
//! after its side effect, then CloudFormation's Delete (the rollback's, with the id the FAILED
//! answer carried, or the stack's after a SUCCESS). Every cell must leave the account as it was;
//! the table each test measures must be the README's.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::Player;
use system_tests::control::Control;
use system_tests::faults::{Fault, FaultProxy};
use system_tests::lambda::LambdaFunction;
use system_tests::matrix::{self, Cell, FaultKind, Outcome, Step};

// Each test plays one resource's cells one after another against one bench: a cell starts
// from the state the previous one restored (which the previous cell checked).

/// Short, so that the timeout cells are quick: the framework answers about 2 s before.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any invocation: a call held this long is a hung call.
const HUNG: Duration = Duration::from_secs(90);
/// How long the first delivery is held at its step while the second runs.
const HELD: Duration = Duration::from_secs(3);

/// A resource under the matrix: its bench, and how to strike each step.
trait Subject {
    const NAME: &'static str;
    const TYPE: &'static str;
    const LOGICAL: &'static str;
    /// What each step's fault strikes, for the table.
    const STEPS: [(Step, &'static str); 3];
    /// What the function's role grants: every call in every cell must be among them.
    const IAM_ACTIONS: &'static [&'static str];

    fn env(&self) -> &Env;
    fn props(&self) -> Value;
    /// What a Create may change and a Delete must give back.
    async fn state(&self) -> Value;
    /// Arm `fault` at `step` (`cfn` is CloudFormation, whose ResponseURL can be faulted too);
    /// false when it cannot happen there (no such call).
    async fn arm(&self, step: Step, fault: FaultKind, cfn: &Player<'_>) -> bool;
    /// Whether the armed fault struck (a cell whose fault never fired proves nothing).
    async fn struck(&self, cfn: &Player<'_>) -> bool {
        self.env().struck(cfn, async { false }).await
    }

    /// Remove what is still armed.
    async fn disarm(&self) {
        self.env().proxy.clear();
    }
}

/// One cell: arm, Create (twice at once for a duplicate), then CloudFormation's Delete of every
/// id it was answered, and compare the account with how it was.
async fn play<S: Subject>(s: &S, step: Step, fault: FaultKind) -> Outcome {
    let before = s.state().await;
    let env = s.env();
    let mut cfn = Player::new(&env.function, S::TYPE).await;
    cfn.answer_timeout = Duration::from_secs(60);
    if !s.arm(step, fault, &cfn).await {
        return Outcome::NotApplicable;
    }
    let props = s.props();
    let answers: Vec<(String, String)> = if fault == FaultKind::Duplicate {
        cfn.create_twice(&env.twin, S::LOGICAL, props.clone(), HELD / 3)
            .await
            .into_iter()
            .map(|(status, id, _)| (status, id))
            .collect()
    } else {
        let a = cfn.create(S::LOGICAL, props.clone()).await;
        vec![(a.status, a.physical_id)]
    };
    assert!(s.struck(&cfn).await, "{step:?} × {fault:?} never struck");
    system_tests::faults::assert_calls_within(&env.proxy, S::IAM_ACTIONS);
    s.disarm().await;
    let statuses: BTreeSet<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    let ids: BTreeSet<&str> = answers.iter().map(|(_, id)| id.as_str()).collect();
    for id in &ids {
        let deleted = cfn.delete(S::LOGICAL, id, props.clone()).await;
        assert!(
            deleted.is_success(),
            "{step:?} × {fault:?}: the Delete of {id} failed: {}",
            deleted.reason
        );
    }
    system_tests::faults::assert_calls_within(&env.proxy, S::IAM_ACTIONS);
    let mut answer = statuses.into_iter().collect::<Vec<_>>().join("/");
    if answers.len() > 1 {
        answer.push_str(if ids.len() == 1 {
            " twice, one id"
        } else {
            " twice, two ids"
        });
    }
    let after = s.state().await;
    Outcome::Played {
        answer,
        left: (after != before).then(|| format!("{after} (was {before})")),
    }
}

/// Every cell of `s`; each must leave nothing, and the table must be the README's.
async fn run<S: Subject>(s: &S) {
    let mut cells = Vec::new();
    for step in Step::ALL {
        for fault in FaultKind::ALL {
            let outcome = play(s, step, fault).await;
            cells.push(Cell {
                step,
                fault,
                outcome,
            });
        }
    }
    let table = matrix::table(S::NAME, &S::STEPS, &cells);
    let dirty: Vec<String> = cells
        .iter()
        .filter(|c| matches!(&c.outcome, Outcome::Played { left: Some(_), .. }))
        .map(|c| format!("{:?} × {:?}: {}", c.step, c.fault, c.outcome))
        .collect();
    assert!(
        dirty.is_empty(),
        "{} left things behind: {dirty:#?}",
        S::NAME
    );
    matrix::readme_check(S::NAME, &table).unwrap_or_else(|e| panic!("{e}"));
}

/// The fault the proxy injects for `fault` (crash: kills the registered function mid-call).
fn proxy_fault(fault: FaultKind) -> Option<Fault> {
    match fault {
        FaultKind::Timeout => Some(Fault::AnswerAfter(HUNG)),
        FaultKind::Crash => Some(Fault::Crash),
        FaultKind::LostAnswer => Some(Fault::DropAnswer),
        FaultKind::Duplicate => Some(Fault::AnswerAfter(HELD)),
        FaultKind::HandOver => None,
    }
}

/// Where an armed fault lives, to tell whether it struck.
#[derive(Debug, Clone, Copy)]
enum Armed {
    /// This many faults injected into the proxy.
    Proxy(usize),
    /// A fault of a double (the Kubernetes API, Hopsworks.ai).
    Double,
    /// A crash, with the function's cold starts when it was armed.
    Crash(u32),
    /// A failure of CloudFormation's ResponseURL.
    Receiver,
}

/// One resource's bench: moto behind the proxy, the control API of the doubles, the function,
/// a second execution environment of it (duplicate deliveries), and the armed fault.
struct Env {
    aws: AwsBench,
    proxy: FaultProxy,
    control: Control,
    function: Arc<LambdaFunction>,
    twin: Arc<LambdaFunction>,
    armed: std::sync::Mutex<Armed>,
}

impl Env {
    /// `make` builds the function on the bench; Lambda's Invoke (a hand-over) and the proxy's
    /// crashes reach `function`, registered last.
    async fn start(make: impl Fn(&AwsBench, &FaultProxy) -> LambdaFunction) -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let control = Control::new(&aws.seeded.control_endpoint);
        let twin = Arc::new(make(&aws, &proxy));
        let function = Arc::new(make(&aws, &proxy));
        proxy.register_function(function.clone());
        Self {
            aws,
            proxy,
            control,
            function,
            twin,
            armed: std::sync::Mutex::new(Armed::Proxy(0)),
        }
    }

    /// The EksAccess function's bench (both of its subjects).
    async fn eks_access() -> Self {
        Self::start(|aws, proxy| {
            system_tests::eks_access_function(&aws.seeded, proxy.endpoint(), FUNCTION_TIMEOUT)
        })
        .await
    }

    fn arm(&self, armed: Armed) {
        if let Ok(mut a) = self.armed.lock() {
            *a = armed;
        }
    }

    /// Arm a proxy fault at the first call containing `needle` once `skip` went through.
    fn arm_proxy(&self, needle: &str, skip: usize, fault: Fault) {
        self.arm(Armed::Proxy(1));
        self.proxy.inject_after(needle, skip, fault, 1);
    }

    /// Whether the armed fault struck; `double_clear` is whether the double has no fault left.
    async fn struck(&self, cfn: &Player<'_>, double_clear: impl Future<Output = bool>) -> bool {
        match self.armed.lock().map(|a| *a).unwrap_or(Armed::Proxy(0)) {
            Armed::Proxy(times) => self.proxy.unfired() < times,
            Armed::Double => double_clear.await,
            Armed::Crash(before) => self.function.cold_starts() > before,
            Armed::Receiver => cfn.receiver.unfired() == 0,
        }
    }

    /// Crash the function (`after` a pause) once `ready` says the side effect happened: a
    /// watcher beside the Create, since the doubles cannot reach the function's process.
    fn crash_when<F, Fut>(&self, after: Duration, ready: F)
    where
        F: Fn(Control) -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        self.arm(Armed::Crash(self.function.cold_starts()));
        let (control, function) = (self.control.clone(), self.function.clone());
        tokio::spawn(async move {
            for _ in 0..600 {
                if ready(control.clone()).await {
                    tokio::time::sleep(after).await;
                    function.crash();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
}

// ---- SecurityGroupIngress ----------------------------------------------------------------

struct Ingress(Env);

impl Ingress {
    async fn start() -> Self {
        Self(
            Env::start(|_, proxy| {
                system_tests::ingress_function(proxy.endpoint(), FUNCTION_TIMEOUT)
            })
            .await,
        )
    }
}

impl Subject for Ingress {
    const NAME: &'static str = "SecurityGroupIngress";
    const TYPE: &'static str = "Custom::SecurityGroupIngress";
    const LOGICAL: &'static str = "HopsworksIngress";
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "reading the group's rules"),
        (Step::During, "authorizing a port"),
        (Step::After, "reading the new rules' ids"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = security_group_ingress::IAM_ACTIONS;

    fn env(&self) -> &Env {
        &self.0
    }

    fn props(&self) -> Value {
        json!({
            "GroupId": self.0.aws.seeded.cluster.cluster_security_group_id,
            "SourceCidr": self.0.aws.seeded.cluster.vpc_cidr,
        })
    }

    /// The group's ingress rules: (port, source, tags).
    async fn state(&self) -> Value {
        let group = &self.0.aws.seeded.cluster.cluster_security_group_id;
        self.0.aws
            .query(&format!(
                r#"
import boto3, json, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["BENCH_ENDPOINT"])
rules = ec2.describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{group}"]}}])["SecurityGroupRules"]
print(json.dumps(sorted([[r.get("FromPort"), r.get("CidrIpv4") or r.get("ReferencedGroupInfo", {{}}).get("GroupId"),
  sorted(t["Key"] + "=" + t["Value"] for t in r.get("Tags", []))] for r in rules if not r["IsEgress"]])))
"#
            ))
            .await
    }

    async fn arm(&self, step: Step, fault: FaultKind, _: &Player<'_>) -> bool {
        let (needle, skip) = match step {
            Step::Before => ("Action=DescribeSecurityGroupRules", 0),
            Step::During => ("Action=AuthorizeSecurityGroupIngress", 0),
            Step::After => ("Action=DescribeSecurityGroupRules", 1),
        };
        // One invocation always: there is no hand-over to fail.
        let Some(fault) = proxy_fault(fault) else {
            return false;
        };
        self.0.proxy.clear();
        self.0.arm_proxy(needle, skip, fault);
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_ingress_leaves_nothing_behind_whatever_fails_when() {
    run(&Ingress::start().await).await;
}

// ---- EksAccess through access entries ------------------------------------------------------

struct AccessEntries(Env);

impl AccessEntries {
    async fn start() -> Self {
        Self(Env::eks_access().await)
    }
}

impl Subject for AccessEntries {
    const NAME: &'static str = "EksAccess (access entries)";
    const TYPE: &'static str = "Custom::EksAccess";
    const LOGICAL: &'static str = "EksAccess";
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "reading the role's access entry"),
        (Step::During, "creating the access entry"),
        (Step::After, "associating the admin policy"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = eks_access::IAM_ACTIONS;

    fn env(&self) -> &Env {
        &self.0
    }

    fn props(&self) -> Value {
        let s = &self.0.aws.seeded;
        json!({"ClusterName": s.access_cluster.name, "RoleArn": s.hopsworks.role_arn})
    }

    /// Every access entry of the cluster, with its tags and associated policies.
    async fn state(&self) -> Value {
        let cluster = &self.0.aws.seeded.access_cluster.name;
        self.0.aws
            .query(&format!(
                r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
out = []
for arn in sorted(eks.list_access_entries(clusterName="{cluster}")["accessEntries"]):
    entry = eks.describe_access_entry(clusterName="{cluster}", principalArn=arn)["accessEntry"]
    policies = eks.list_associated_access_policies(clusterName="{cluster}", principalArn=arn)["associatedAccessPolicies"]
    out.append([arn, entry.get("username"), sorted((entry.get("tags") or {{}}).items()),
                sorted(p["policyArn"] for p in policies)])
print(json.dumps(out))
"#
            ))
            .await
    }

    async fn arm(&self, step: Step, fault: FaultKind, _: &Player<'_>) -> bool {
        let cluster = &self.0.aws.seeded.access_cluster.name;
        let needle = match step {
            Step::Before => format!("GET /clusters/{cluster}/access-entries/"),
            Step::During => format!("POST /clusters/{cluster}/access-entries - "),
            Step::After => "/access-policies".to_owned(),
        };
        let Some(fault) = proxy_fault(fault) else {
            return false;
        };
        self.0.proxy.clear();
        self.0.arm_proxy(&needle, 0, fault);
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_access_entries_leave_nothing_behind_whatever_fails_when() {
    run(&AccessEntries::start().await).await;
}

// ---- HopsworksCluster ----------------------------------------------------------------------

struct Hopsworks(Env);

impl Hopsworks {
    async fn start() -> Self {
        let env = Env::start(|aws, proxy| {
            system_tests::hopsworks_cluster_lambda(&aws.seeded, proxy, FUNCTION_TIMEOUT)
        })
        .await;
        // Two states a poll each way: a create waits long enough to hand over at least once.
        env.control
            .hopsworks_behaviour(json!({"polls_per_state": 2, "leave_ecr_repos": true}))
            .await;
        Self(env)
    }

    /// Crash the function `after` the double holds a live cluster (the POST was applied).
    fn crash_once_a_cluster_exists(&self, after: Duration) {
        self.0.crash_when(after, |control| async move {
            control
                .hopsworks_clusters()
                .await
                .into_iter()
                .any(|c| c["state"] != "terminated")
        });
    }

    async fn double_fault(&self, fault: Value) {
        self.0.arm(Armed::Double);
        self.0.control.hopsworks_fault(fault).await;
    }
}

impl Subject for Hopsworks {
    const NAME: &'static str = "HopsworksCluster";
    const TYPE: &'static str = "Custom::HopsworksCluster";
    const LOGICAL: &'static str = "HopsworksCluster";
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "reading the API key"),
        (Step::During, "POST /api/clusters"),
        (Step::After, "waiting for running, across invocations"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = hopsworks_cluster::IAM_ACTIONS;

    fn env(&self) -> &Env {
        &self.0
    }

    fn props(&self) -> Value {
        system_tests::hopsworks_cluster_properties(&self.0.aws.seeded)
    }

    /// The live Hopsworks clusters and the account's ECR repositories.
    async fn state(&self) -> Value {
        let live: Vec<Value> = self
            .0
            .control
            .hopsworks_clusters()
            .await
            .into_iter()
            .filter(|c| c["state"] != "terminated")
            .map(|c| json!([c["name"], c["id"], c["state"]]))
            .collect();
        let ecr = self
            .0
            .aws
            .query(
                r#"
import boto3, json, os
ecr = boto3.client("ecr", endpoint_url=os.environ["BENCH_ENDPOINT"])
print(json.dumps(sorted(r["repositoryName"] for p in ecr.get_paginator("describe_repositories").paginate() for r in p["repositories"])))
"#,
            )
            .await;
        json!({"clusters": live, "ecr": ecr})
    }

    async fn arm(&self, step: Step, fault: FaultKind, _: &Player<'_>) -> bool {
        self.disarm().await;
        let seconds = |d: Duration| d.as_secs_f64();
        match (step, fault) {
            // Before anything: the secret, through the proxy.
            (Step::Before, FaultKind::HandOver) => return false,
            (Step::Before, fault) => {
                let Some(fault) = proxy_fault(fault) else {
                    return false;
                };
                self.0.arm_proxy("secretsmanager.GetSecretValue", 0, fault);
            }
            // The POST that makes the cluster: applied, then its answer is late or lost.
            (Step::During, FaultKind::HandOver) => return false,
            (Step::During, FaultKind::Crash) => {
                self.0
                    .control
                    .hopsworks_fault(
                        json!({"kind": "delay", "seconds": 5, "after": true, "method": "POST"}),
                    )
                    .await;
                self.crash_once_a_cluster_exists(Duration::from_millis(500));
            }
            (Step::During, fault) => {
                let spec = match fault {
                    FaultKind::Timeout => json!({"kind": "delay", "seconds": seconds(HUNG)}),
                    FaultKind::LostAnswer => json!({"kind": "drop"}),
                    _ => json!({"kind": "delay", "seconds": seconds(HELD)}),
                };
                let mut spec = spec;
                spec["after"] = json!(true);
                spec["method"] = json!("POST");
                self.double_fault(spec).await;
            }
            // Waiting: the first poll, the hand-over, or a crash between polls.
            (Step::After, FaultKind::HandOver) => {
                // Every try of the SDK's retries fails: the hand-over fails.
                self.0.arm(Armed::Proxy(20));
                self.0
                    .proxy
                    .inject("/2015-03-31/functions/", Fault::ServerError, 20);
            }
            (Step::After, FaultKind::Crash) => {
                self.crash_once_a_cluster_exists(Duration::from_millis(1500));
            }
            (Step::After, fault) => {
                let mut spec = match fault {
                    FaultKind::Timeout => json!({"kind": "delay", "seconds": seconds(HUNG)}),
                    FaultKind::LostAnswer => json!({"kind": "drop"}),
                    _ => json!({"kind": "delay", "seconds": seconds(HELD)}),
                };
                spec["method"] = json!("GET");
                spec["path_contains"] = json!("/api/clusters/");
                spec["skip"] = json!(1); // the version catalogue, read before the POST
                self.double_fault(spec).await;
            }
        }
        true
    }

    async fn struck(&self, cfn: &Player<'_>) -> bool {
        let double = async { self.0.control.hopsworks_faults().await.is_empty() };
        self.0.struck(cfn, double).await
    }

    async fn disarm(&self) {
        self.0.proxy.clear();
        self.0.control.clear_hopsworks_faults().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopsworks_cluster_leaves_nothing_behind_whatever_fails_when() {
    run(&Hopsworks::start().await).await;
}

// ---- EksAccess through aws-auth --------------------------------------------------------------

struct AwsAuth(Env);

impl AwsAuth {
    async fn start() -> Self {
        Self(Env::eks_access().await)
    }

    fn cluster(&self) -> &str {
        &self.0.aws.seeded.cluster.name
    }

    async fn kube_fault(&self, fault: Value) {
        self.0.arm(Armed::Double);
        self.0.control.fault(self.cluster(), fault).await;
    }

    /// Crash the function once aws-auth carries an owner annotation (the write is applied),
    /// while its answer is held.
    fn crash_once_written(&self) {
        let cluster = self.cluster().to_owned();
        self.0.crash_when(Duration::ZERO, move |control| {
            let cluster = cluster.clone();
            async move {
                control.aws_auth(&cluster).await["metadata"]["annotations"]
                    .as_object()
                    .is_some_and(|a| a.keys().any(|k| k.starts_with("hopsworks.ai/")))
            }
        });
    }
}

impl Subject for AwsAuth {
    const NAME: &'static str = "EksAccess (aws-auth)";
    const TYPE: &'static str = "Custom::EksAccess";
    const LOGICAL: &'static str = "EksAccess";
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "describing the cluster, reading aws-auth"),
        (Step::During, "the aws-auth PUT"),
        (Step::After, "the answer to CloudFormation"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = eks_access::IAM_ACTIONS;

    fn env(&self) -> &Env {
        &self.0
    }

    /// demo-eks (CONFIG_MAP), Kubernetes calls made as the cluster's creator.
    fn props(&self) -> Value {
        let s = &self.0.aws.seeded;
        json!({
            "ClusterName": s.cluster.name,
            "RoleArn": s.hopsworks.role_arn,
            "KubernetesRoleArn": s.identities.creator.role_arn,
        })
    }

    /// aws-auth as stored: its data, byte for byte, and its annotations.
    async fn state(&self) -> Value {
        let object = self.0.control.aws_auth(self.cluster()).await;
        json!({"data": object["data"], "annotations": object["metadata"]["annotations"]})
    }

    async fn arm(&self, step: Step, fault: FaultKind, cfn: &Player<'_>) -> bool {
        self.disarm().await;
        let hung = HUNG.as_secs_f64();
        let held = HELD.as_secs_f64();
        let get = |spec: Value| {
            let mut spec = spec;
            spec["method"] = json!("GET");
            spec["path_contains"] = json!("aws-auth");
            spec
        };
        let put = |spec: Value| {
            let mut spec = spec;
            spec["method"] = json!("PUT");
            spec["path_contains"] = json!("aws-auth");
            spec
        };
        match (step, fault) {
            (_, FaultKind::HandOver) => return false, // one invocation always
            // Before: reading aws-auth; a crash strikes the DescribeCluster before it.
            (Step::Before, FaultKind::Crash) => {
                self.0.arm_proxy("GET /clusters/", 0, Fault::Crash);
            }
            (Step::Before, FaultKind::Timeout) => {
                self.kube_fault(get(json!({"kind": "delay", "seconds": hung})))
                    .await;
            }
            (Step::Before, FaultKind::LostAnswer) => {
                self.kube_fault(get(json!({"kind": "drop"}))).await;
            }
            (Step::Before, FaultKind::Duplicate) => {
                self.kube_fault(get(json!({"kind": "delay", "seconds": held})))
                    .await;
            }
            // During: the PUT is applied, its answer late, lost, or never read.
            (Step::During, FaultKind::Timeout) => {
                self.kube_fault(put(json!({"kind": "late", "seconds": hung})))
                    .await;
            }
            (Step::During, FaultKind::LostAnswer) => {
                self.kube_fault(put(json!({"kind": "drop"}))).await;
            }
            (Step::During, FaultKind::Duplicate) => {
                self.kube_fault(put(json!({"kind": "late", "seconds": held})))
                    .await;
            }
            (Step::During, FaultKind::Crash) => {
                self.0
                    .control
                    .fault(self.cluster(), put(json!({"kind": "late", "seconds": 5})))
                    .await;
                self.crash_once_written();
            }
            // After: the mapping is written; the answer to CloudFormation stalls or fails.
            (Step::After, FaultKind::Timeout) => {
                self.0.arm(Armed::Receiver);
                cfn.receiver.stall_next(1);
            }
            (Step::After, FaultKind::LostAnswer) => {
                // Every attempt of the first invocation: Lambda runs it again.
                self.0.arm(Armed::Receiver);
                cfn.receiver.fail_next(&[500; 12]);
            }
            (Step::After, FaultKind::Duplicate) => {
                self.0.arm(Armed::Receiver);
                cfn.receiver.stall_next(1);
            }
            (Step::After, FaultKind::Crash) => return false, // no call left to crash in
        }
        true
    }

    async fn struck(&self, cfn: &Player<'_>) -> bool {
        let double = async { self.0.control.kube_faults(self.cluster()).await.is_empty() };
        self.0.struck(cfn, double).await
    }

    async fn disarm(&self) {
        self.0.proxy.clear();
        self.0.control.clear_kube_faults(self.cluster()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_access_through_aws_auth_leaves_nothing_behind_whatever_fails_when() {
    run(&AwsAuth::start().await).await;
}
