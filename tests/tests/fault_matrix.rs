//! The fault matrix (`system_tests::matrix`): every resource's Create, faulted before, during and
//! after its side effect, then CloudFormation's Delete (the rollback's, with the id the FAILED
//! answer carried, or the stack's after a SUCCESS); and HopsworksCluster's Update and Delete,
//! faulted the same way on a cluster created cleanly first. Every cell must leave the account as
//! it was; the table each test measures must be the README's.

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

/// The request the cells fault, and what CloudFormation sends after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    /// A Create; then the rollback's Delete (FAILED) or the stack's (SUCCESS).
    Create,
    /// An Update of a resource created cleanly; then CloudFormation's rollback Update (FAILED:
    /// old and new swapped) or a further Update back (SUCCESS), then the stack's Delete.
    Update,
    /// A Delete of a resource created cleanly; a FAILED one is retried (a second Delete).
    Delete,
}

impl Operation {
    /// What follows an answer, for the table.
    fn then(self, success: bool) -> &'static str {
        match (self, success) {
            (Operation::Create, true) => "deleted",
            (Operation::Create, false) => "rolled back",
            (Operation::Update, true) => "updated back, deleted",
            (Operation::Update, false) => "rolled back, deleted",
            (Operation::Delete, true) => "one backup",
            (Operation::Delete, false) => "deleted again, one backup",
        }
    }
}

/// A resource under the matrix: its bench, and how to strike each step.
trait Subject {
    const NAME: &'static str;
    const TYPE: &'static str;
    const LOGICAL: &'static str;
    /// What each step's fault strikes, for the table.
    const STEPS: [(Step, &'static str); 3];
    /// What the function's role grants: every call in every cell must be among them.
    const IAM_ACTIONS: &'static [&'static str];
    /// The request the cells fault.
    const OPERATION: Operation = Operation::Create;

    fn env(&self) -> &Env;
    fn props(&self) -> Value;
    /// What the faulted Update asks for (its old properties are [`Subject::props`]).
    fn updated(&self) -> Value {
        self.props()
    }
    /// What a Create may change and a Delete must give back.
    async fn state(&self) -> Value;
    /// Whether `fault` can strike at `step`, asked before the set-up (for an Update or a Delete,
    /// whose set-up makes a resource; a Create's subject may say so from `arm` instead).
    fn applies(&self, _step: Step, _fault: FaultKind) -> bool {
        true
    }
    /// Before the faulted request: for an Update or a Delete, the resource made cleanly (its
    /// physical id).
    async fn set_up(&self, _cfn: &Player<'_>) -> Option<String> {
        None
    }
    /// What is wrong with the resource `id` as `props` ask for it that the account's state does
    /// not show (a worker added twice, a backup missing or taken twice), if anything.
    async fn wrong(&self, _id: &str, _props: &Value) -> Option<String> {
        None
    }
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

/// One cell: set up, arm, the faulted request (twice at once for a duplicate), then what
/// CloudFormation sends next until the resource is deleted, and compare the account with how it
/// was.
async fn play<S: Subject>(s: &S, step: Step, fault: FaultKind) -> Outcome {
    if !s.applies(step, fault) {
        return Outcome::NotApplicable;
    }
    let before = s.state().await;
    let env = s.env();
    let mut cfn = Player::new(&env.function, S::TYPE).await;
    cfn.answer_timeout = Duration::from_secs(60);
    let made = s.set_up(&cfn).await;
    if !s.arm(step, fault, &cfn).await {
        assert!(
            made.is_none(),
            "{step:?} × {fault:?}: applies, but arms nothing"
        );
        return Outcome::NotApplicable;
    }
    let props = s.props();
    let asked = match S::OPERATION {
        Operation::Update => s.updated(),
        Operation::Create | Operation::Delete => props.clone(),
    };
    let answers = request(
        s,
        &cfn,
        made.as_deref(),
        &asked,
        fault == FaultKind::Duplicate,
    )
    .await;
    assert!(s.struck(&cfn).await, "{step:?} × {fault:?} never struck");
    system_tests::faults::assert_calls_within(&env.proxy, S::IAM_ACTIONS);
    s.disarm().await;
    let statuses: BTreeSet<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    let ids: BTreeSet<&str> = answers.iter().map(|(_, id)| id.as_str()).collect();
    // CloudFormation keeps the first answer.
    let success = answers
        .first()
        .is_some_and(|(status, _)| status == "SUCCESS");
    let mut wrong = Vec::new();
    let cell = format!("{step:?} × {fault:?}");
    match (S::OPERATION, made.as_deref()) {
        (Operation::Create, _) | (_, None) => {
            for id in &ids {
                delete(&cfn, S::LOGICAL, id, &props, &cell).await;
            }
        }
        (Operation::Update, Some(id)) => {
            if ids != BTreeSet::from([id]) {
                wrong.push(format!("answered {ids:?} for {id}"));
            }
            if success {
                wrong.extend(s.wrong(id, &asked).await);
            }
            // The rollback Update (old and new swapped) after a FAILED, else one back to the
            // properties before: either way the resource must end as `props` ask.
            let back = cfn
                .update(S::LOGICAL, id, props.clone(), asked.clone())
                .await;
            assert!(
                back.is_success(),
                "{cell}: the Update back to the old properties failed: {}",
                back.reason
            );
            wrong.extend(s.wrong(id, &props).await);
            delete(&cfn, S::LOGICAL, id, &props, &cell).await;
        }
        (Operation::Delete, Some(id)) => {
            // CloudFormation's user retries a failed Delete, as the README says to.
            if !success {
                delete(&cfn, S::LOGICAL, id, &props, &cell).await;
            }
            wrong.extend(s.wrong(id, &props).await);
        }
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
    if after != before {
        wrong.insert(0, format!("{after} (was {before})"));
    }
    Outcome::Played {
        answer,
        then: S::OPERATION.then(success),
        left: (!wrong.is_empty()).then(|| wrong.join("; ")),
    }
}

/// The faulted request of `s` (on `made`, the resource set up for an Update or a Delete), once or
/// twice at once: `(status, physical id)` of each answer, in the order they arrived.
async fn request<S: Subject>(
    s: &S,
    cfn: &Player<'_>,
    made: Option<&str>,
    props: &Value,
    twice: bool,
) -> Vec<(String, String)> {
    let (kind, old) = match S::OPERATION {
        Operation::Create => ("Create", None),
        Operation::Update => ("Update", Some(s.props())),
        Operation::Delete => ("Delete", None),
    };
    if twice {
        let event = cfn.event(kind, S::LOGICAL, props.clone(), old, made);
        return cfn
            .deliver_twice(&s.env().twin, event, HELD / 3)
            .await
            .into_iter()
            .map(|(status, id, _)| (status, id))
            .collect();
    }
    let a = match (S::OPERATION, made) {
        (Operation::Update, Some(id)) => cfn.update(S::LOGICAL, id, props.clone(), s.props()).await,
        (Operation::Delete, Some(id)) => cfn.delete(S::LOGICAL, id, props.clone()).await,
        _ => cfn.create(S::LOGICAL, props.clone()).await,
    };
    vec![(a.status, a.physical_id)]
}

/// CloudFormation's Delete of `id`, which must succeed.
async fn delete(cfn: &Player<'_>, logical: &str, id: &str, props: &Value, cell: &str) {
    let deleted = cfn.delete(logical, id, props.clone()).await;
    assert!(
        deleted.is_success(),
        "{cell}: the Delete of {id} failed: {}",
        deleted.reason
    );
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

// ---- HopsworksCluster's Update and Delete ----------------------------------------------------

/// The double's fault for `fault` on `method` requests whose path contains `path`: applied first
/// (`after`) or not, once `skip` of them went through.
fn hopsworks_spec(fault: FaultKind, method: &str, path: &str, after: bool, skip: usize) -> Value {
    let mut spec = match fault {
        FaultKind::Timeout => json!({"kind": "delay", "seconds": HUNG.as_secs_f64()}),
        FaultKind::LostAnswer => json!({"kind": "drop"}),
        _ => json!({"kind": "delay", "seconds": HELD.as_secs_f64()}),
    };
    spec["method"] = json!(method);
    spec["path_contains"] = json!(path);
    spec["after"] = json!(after);
    spec["skip"] = json!(skip);
    spec
}

impl Hopsworks {
    /// The bench of an Update or a Delete: one poll a state, as quick as the waits can be (a
    /// cell that needs them longer, to hand over, says so).
    async fn start_day2() -> Self {
        let hopsworks = Self::start().await;
        hopsworks.one_poll_a_state().await;
        hopsworks
    }

    async fn one_poll_a_state(&self) {
        self.0
            .control
            .hopsworks_behaviour(json!({"polls_per_state": 1}))
            .await;
    }

    /// The set-up of an Update or a Delete cell: the cluster, created cleanly.
    async fn made_cleanly(&self, cfn: &Player<'_>, props: Value) -> Option<String> {
        let made = cfn.create(<Self as Subject>::LOGICAL, props).await;
        assert!(
            made.is_success(),
            "the set-up Create failed: {}",
            made.reason
        );
        Some(made.physical_id)
    }

    /// The waits after the change last longer than an invocation, and every hand-over fails.
    async fn fail_the_hand_over(&self) {
        self.0
            .control
            .hopsworks_behaviour(json!({"polls_per_state": 6}))
            .await;
        self.0.arm(Armed::Proxy(20));
        self.0
            .proxy
            .inject("/2015-03-31/functions/", Fault::ServerError, 20);
    }

    /// Arm the proxy's `fault` on reading the API key.
    fn fault_the_key(&self, fault: FaultKind) {
        if let Some(fault) = proxy_fault(fault) {
            self.0.arm_proxy("secretsmanager.GetSecretValue", 0, fault);
        }
    }

    async fn disarm_day2(&self) {
        Subject::disarm(self).await;
        self.one_poll_a_state().await;
    }
}

/// HopsworksCluster's Update in place: WorkerCount 1 -> 2 (POST .../workers), OnDelete
/// terminate.
struct HopsworksUpdate(Hopsworks);

impl HopsworksUpdate {
    async fn start() -> Self {
        Self(Hopsworks::start_day2().await)
    }

    /// Crash the function `after` the cluster shows the change under way (the POST applied).
    fn crash_once_updating(&self, after: Duration) {
        self.0.0.crash_when(after, |control| async move {
            control
                .hopsworks_clusters()
                .await
                .into_iter()
                .any(|c| c["state"] == "updating")
        });
    }
}

impl Subject for HopsworksUpdate {
    const NAME: &'static str = "HopsworksCluster update";
    const TYPE: &'static str = Hopsworks::TYPE;
    const LOGICAL: &'static str = Hopsworks::LOGICAL;
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "reading the API key"),
        (Step::During, "POST /api/clusters/{id}/workers"),
        (Step::After, "waiting for running, across invocations"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = hopsworks_cluster::IAM_ACTIONS;
    const OPERATION: Operation = Operation::Update;

    fn env(&self) -> &Env {
        &self.0.0
    }

    fn props(&self) -> Value {
        let mut props = self.0.props();
        props["OnDelete"] = json!("terminate");
        props
    }

    fn updated(&self) -> Value {
        let mut props = self.props();
        props["WorkerCount"] = json!("2");
        props
    }

    async fn state(&self) -> Value {
        self.0.state().await
    }

    fn applies(&self, step: Step, fault: FaultKind) -> bool {
        fault != FaultKind::HandOver || step == Step::After
    }

    async fn set_up(&self, cfn: &Player<'_>) -> Option<String> {
        self.0.made_cleanly(cfn, self.props()).await
    }

    /// One live cluster, `id`, with exactly the workers `props` ask for (never a POST applied
    /// twice).
    async fn wrong(&self, id: &str, props: &Value) -> Option<String> {
        let asked: u64 = props["WorkerCount"]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let live: Vec<Value> = self
            .0
            .0
            .control
            .hopsworks_clusters()
            .await
            .into_iter()
            .filter(|c| c["state"] != "terminated")
            .collect();
        let ids: Vec<&str> = live.iter().filter_map(|c| c["id"].as_str()).collect();
        if ids != [id] {
            return Some(format!("live clusters {ids:?}, not {id} alone"));
        }
        let workers: u64 = live[0]["clusterConfiguration"]["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w["count"].as_u64())
            .sum();
        (workers != asked || live[0]["state"] != "running").then(|| {
            format!(
                "cluster {id} is {} with {workers} workers (asked {asked})",
                live[0]["state"]
            )
        })
    }

    async fn arm(&self, step: Step, fault: FaultKind, _: &Player<'_>) -> bool {
        self.disarm().await;
        match (step, fault) {
            (Step::Before | Step::During, FaultKind::HandOver) => return false,
            (Step::Before, fault) => self.0.fault_the_key(fault),
            // The POST that adds the worker: applied, then its answer is late or lost.
            (Step::During, FaultKind::Crash) => {
                self.0
                    .0
                    .control
                    .hopsworks_fault(
                        json!({"kind": "delay", "seconds": 5, "after": true, "method": "POST", "path_contains": "/workers"}),
                    )
                    .await;
                self.crash_once_updating(Duration::from_millis(500));
            }
            (Step::During, fault) => {
                self.0
                    .double_fault(hopsworks_spec(fault, "POST", "/workers", true, 0))
                    .await;
            }
            // Waiting: a poll after the POST (the first GET is the Update's reading), the
            // hand-over, or a crash between polls.
            (Step::After, FaultKind::HandOver) => self.0.fail_the_hand_over().await,
            // Between the POST's answer and the first poll, a second later.
            (Step::After, FaultKind::Crash) => {
                self.crash_once_updating(Duration::from_millis(600));
            }
            (Step::After, fault) => {
                self.0
                    .double_fault(hopsworks_spec(fault, "GET", "/api/clusters/", false, 1))
                    .await;
            }
        }
        true
    }

    async fn struck(&self, cfn: &Player<'_>) -> bool {
        self.0.struck(cfn).await
    }

    async fn disarm(&self) {
        self.0.disarm_day2().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopsworks_cluster_update_adds_once_and_leaves_nothing_behind_whatever_fails_when() {
    run(&HopsworksUpdate::start().await).await;
}

/// HopsworksCluster's Delete with the default OnDelete: a backup (POST /api/backups), waited
/// for, then the cluster terminated and its ECR repositories deleted.
struct HopsworksDelete(Hopsworks);

impl HopsworksDelete {
    async fn start() -> Self {
        Self(Hopsworks::start_day2().await)
    }

    /// Crash the function `after` the double holds one more backup than it does now (the POST
    /// was applied).
    async fn crash_once_backed_up(&self, after: Duration) {
        let before = self.0.0.control.hopsworks_backups().await.len();
        self.0.0.crash_when(after, move |control| async move {
            control.hopsworks_backups().await.len() > before
        });
    }
}

impl Subject for HopsworksDelete {
    const NAME: &'static str = "HopsworksCluster delete with backup";
    const TYPE: &'static str = Hopsworks::TYPE;
    const LOGICAL: &'static str = Hopsworks::LOGICAL;
    const STEPS: [(Step, &'static str); 3] = [
        (Step::Before, "reading the API key"),
        (Step::During, "POST /api/backups"),
        (Step::After, "waiting for the backup, across invocations"),
    ];
    const IAM_ACTIONS: &'static [&'static str] = hopsworks_cluster::IAM_ACTIONS;
    const OPERATION: Operation = Operation::Delete;

    fn env(&self) -> &Env {
        &self.0.0
    }

    fn props(&self) -> Value {
        self.0.props()
    }

    async fn state(&self) -> Value {
        self.0.state().await
    }

    fn applies(&self, step: Step, fault: FaultKind) -> bool {
        fault != FaultKind::HandOver || step == Step::After
    }

    async fn set_up(&self, cfn: &Player<'_>) -> Option<String> {
        self.0.made_cleanly(cfn, self.props()).await
    }

    /// Exactly one backup of cluster `id`, succeeded: two are one left behind, none is the
    /// cluster's data lost.
    async fn wrong(&self, id: &str, _: &Value) -> Option<String> {
        let backups: Vec<String> = self
            .0
            .0
            .control
            .hopsworks_backups()
            .await
            .into_iter()
            .filter(|b| b["clusterId"] == id)
            .map(|b| {
                let deleted = if b["bench"]["deleted"] == true {
                    ", deleted"
                } else {
                    ""
                };
                format!("{} {}{deleted}", b["backupId"], b["state"])
            })
            .collect();
        let one = backups.len() == 1 && backups[0].ends_with(" \"succeed\"");
        (!one).then(|| format!("backups of cluster {id}: {backups:?}"))
    }

    async fn arm(&self, step: Step, fault: FaultKind, _: &Player<'_>) -> bool {
        self.disarm().await;
        match (step, fault) {
            (Step::Before | Step::During, FaultKind::HandOver) => return false,
            (Step::Before, fault) => self.0.fault_the_key(fault),
            // The POST that starts the backup: applied, then its answer is late or lost.
            (Step::During, FaultKind::Crash) => {
                self.0
                    .0
                    .control
                    .hopsworks_fault(
                        json!({"kind": "delay", "seconds": 5, "after": true, "method": "POST", "path_contains": "/api/backups"}),
                    )
                    .await;
                self.crash_once_backed_up(Duration::from_millis(500)).await;
            }
            (Step::During, fault) => {
                self.0
                    .double_fault(hopsworks_spec(fault, "POST", "/api/backups", true, 0))
                    .await;
            }
            // Waiting for the backup: a poll, the hand-over, or a crash between polls.
            (Step::After, FaultKind::HandOver) => self.0.fail_the_hand_over().await,
            // Between the backup's first poll and the next, a second later.
            (Step::After, FaultKind::Crash) => {
                self.crash_once_backed_up(Duration::from_millis(600)).await;
            }
            (Step::After, fault) => {
                self.0
                    .double_fault(hopsworks_spec(fault, "GET", "/api/backups/", false, 0))
                    .await;
            }
        }
        true
    }

    async fn struck(&self, cfn: &Player<'_>) -> bool {
        self.0.struck(cfn).await
    }

    async fn disarm(&self) {
        self.0.disarm_day2().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hopsworks_cluster_delete_keeps_one_backup_and_leaves_nothing_else_whatever_fails_when() {
    run(&HopsworksDelete::start().await).await;
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
