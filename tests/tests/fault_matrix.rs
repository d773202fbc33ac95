//! The fault matrix (`system_tests::matrix`): every resource's Create, faulted before, during and
//! after its side effect, then CloudFormation's Delete (the rollback's, with the id the FAILED
//! answer carried, or the stack's after a SUCCESS). Every cell must leave the account as it was;
//! the table each test measures must be the README's.

use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::Player;
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

    fn function(&self) -> &LambdaFunction;
    /// A second execution environment of the same function, for duplicate deliveries.
    fn twin(&self) -> &LambdaFunction;
    fn props(&self) -> Value;
    /// What a Create may change and a Delete must give back.
    async fn state(&self) -> Value;
    /// Arm `fault` at `step`; false when it cannot happen there (no such call).
    async fn arm(&self, step: Step, fault: FaultKind) -> bool;
    /// Whether every armed fault struck (a cell whose fault never fired proves nothing).
    async fn struck(&self) -> bool;
    /// Remove what is still armed.
    async fn disarm(&self);
}

/// One cell: arm, Create (twice at once for a duplicate), then CloudFormation's Delete of every
/// id it was answered, and compare the account with how it was.
async fn play<S: Subject>(s: &S, step: Step, fault: FaultKind) -> Outcome {
    let before = s.state().await;
    if !s.arm(step, fault).await {
        return Outcome::NotApplicable;
    }
    let mut cfn = Player::new(s.function(), S::TYPE).await;
    cfn.answer_timeout = Duration::from_secs(60);
    let props = s.props();
    let answers: Vec<(String, String)> = if fault == FaultKind::Duplicate {
        cfn.create_twice(s.twin(), S::LOGICAL, props.clone(), HELD / 3)
            .await
            .into_iter()
            .map(|(status, id, _)| (status, id))
            .collect()
    } else {
        let a = cfn.create(S::LOGICAL, props.clone()).await;
        if fault == FaultKind::Timeout {
            assert!(a.reason.contains("timed out"), "{step:?}: {}", a.reason);
        }
        vec![(a.status, a.physical_id)]
    };
    assert!(s.struck().await, "{step:?} × {fault:?} never struck");
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

// ---- SecurityGroupIngress ----------------------------------------------------------------

struct Ingress {
    aws: AwsBench,
    proxy: FaultProxy,
    function: Arc<LambdaFunction>,
    twin: LambdaFunction,
}

impl Ingress {
    async fn start() -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let function = Arc::new(system_tests::ingress_function(
            proxy.endpoint(),
            FUNCTION_TIMEOUT,
        ));
        proxy.register_function(function.clone());
        let twin = system_tests::ingress_function(proxy.endpoint(), FUNCTION_TIMEOUT);
        Self {
            aws,
            proxy,
            function,
            twin,
        }
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

    fn function(&self) -> &LambdaFunction {
        &self.function
    }

    fn twin(&self) -> &LambdaFunction {
        &self.twin
    }

    fn props(&self) -> Value {
        json!({
            "GroupId": self.aws.seeded.cluster.cluster_security_group_id,
            "SourceCidr": self.aws.seeded.cluster.vpc_cidr,
        })
    }

    /// The group's ingress rules: (port, source, tags).
    async fn state(&self) -> Value {
        let group = &self.aws.seeded.cluster.cluster_security_group_id;
        self.aws
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

    async fn arm(&self, step: Step, fault: FaultKind) -> bool {
        let (needle, skip) = match step {
            Step::Before => ("Action=DescribeSecurityGroupRules", 0),
            Step::During => ("Action=AuthorizeSecurityGroupIngress", 0),
            Step::After => ("Action=DescribeSecurityGroupRules", 1),
        };
        // One invocation always: there is no hand-over to fail.
        let Some(fault) = proxy_fault(fault) else {
            return false;
        };
        self.proxy.clear();
        self.proxy.inject_after(needle, skip, fault, 1);
        true
    }

    async fn struck(&self) -> bool {
        self.proxy.unfired() == 0
    }

    async fn disarm(&self) {
        self.proxy.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_ingress_leaves_nothing_behind_whatever_fails_when() {
    run(&Ingress::start().await).await;
}

// ---- EksAccess through access entries ------------------------------------------------------

struct AccessEntries {
    aws: AwsBench,
    proxy: FaultProxy,
    function: Arc<LambdaFunction>,
    twin: LambdaFunction,
}

impl AccessEntries {
    async fn start() -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let function = Arc::new(system_tests::eks_access_function(
            &aws.seeded,
            proxy.endpoint(),
            FUNCTION_TIMEOUT,
        ));
        proxy.register_function(function.clone());
        let twin =
            system_tests::eks_access_function(&aws.seeded, proxy.endpoint(), FUNCTION_TIMEOUT);
        Self {
            aws,
            proxy,
            function,
            twin,
        }
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

    fn function(&self) -> &LambdaFunction {
        &self.function
    }

    fn twin(&self) -> &LambdaFunction {
        &self.twin
    }

    fn props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({"ClusterName": s.access_cluster.name, "RoleArn": s.hopsworks.role_arn})
    }

    /// Every access entry of the cluster, with its tags and associated policies.
    async fn state(&self) -> Value {
        let cluster = &self.aws.seeded.access_cluster.name;
        self.aws
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

    async fn arm(&self, step: Step, fault: FaultKind) -> bool {
        let cluster = &self.aws.seeded.access_cluster.name;
        let needle = match step {
            Step::Before => format!("GET /clusters/{cluster}/access-entries/"),
            Step::During => format!("POST /clusters/{cluster}/access-entries - "),
            Step::After => "/access-policies".to_owned(),
        };
        let Some(fault) = proxy_fault(fault) else {
            return false;
        };
        self.proxy.clear();
        self.proxy.inject(&needle, fault, 1);
        true
    }

    async fn struck(&self) -> bool {
        self.proxy.unfired() == 0
    }

    async fn disarm(&self) {
        self.proxy.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_access_entries_leave_nothing_behind_whatever_fails_when() {
    run(&AccessEntries::start().await).await;
}
