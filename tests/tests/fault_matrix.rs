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

/// Short, so that the timeout cells are quick: the framework answers about 2 s before.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any invocation: a call held this long is a hung call.
const HUNG: Duration = Duration::from_secs(90);
/// How long the first delivery is held at its step while the second runs.
const HELD: Duration = Duration::from_secs(3);

/// What CloudFormation was told, the ids it holds, then the Delete of each, checked.
async fn conclude(
    cfn: &Player<'_>,
    logical_id: &str,
    properties: &Value,
    answers: Vec<(String, String)>,
) -> String {
    let statuses: BTreeSet<&str> = answers.iter().map(|(s, _)| s.as_str()).collect();
    let ids: BTreeSet<&str> = answers.iter().map(|(_, id)| id.as_str()).collect();
    for id in &ids {
        let deleted = cfn.delete(logical_id, id, properties.clone()).await;
        assert!(
            deleted.is_success(),
            "the Delete of {id} failed: {}",
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
    answer
}

fn left(before: &impl std::fmt::Debug, after: &impl std::fmt::Debug) -> Option<String> {
    let (b, a) = (format!("{before:?}"), format!("{after:?}"));
    (a != b).then(|| format!("{a} (was {b})"))
}

fn assert_all_clean(resource: &str, cells: &[Cell]) {
    let dirty: Vec<String> = cells
        .iter()
        .filter(|c| matches!(&c.outcome, Outcome::Played { left: Some(_), .. }))
        .map(|c| format!("{:?} × {:?}: {}", c.step, c.fault, c.outcome))
        .collect();
    assert!(dirty.is_empty(), "{resource} left things behind: {dirty:#?}");
}

// ---- SecurityGroupIngress ----------------------------------------------------------------

const INGRESS: &str = "SecurityGroupIngress";

struct IngressBench {
    aws: AwsBench,
    proxy: FaultProxy,
    function: Arc<LambdaFunction>,
    /// A second execution environment of the same function, for duplicate deliveries.
    twin: LambdaFunction,
}

impl IngressBench {
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

    fn props(&self) -> Value {
        json!({
            "GroupId": self.aws.seeded.cluster.cluster_security_group_id,
            "SourceCidr": self.aws.seeded.cluster.vpc_cidr,
        })
    }

    /// The group's ingress rules: (port, source, tags).
    async fn rules(&self) -> Value {
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

    /// The call each step's fault strikes: (needle, matching calls let through first).
    fn call(step: Step) -> (&'static str, usize) {
        match step {
            Step::Before => ("Action=DescribeSecurityGroupRules", 0),
            Step::During => ("Action=AuthorizeSecurityGroupIngress", 0),
            Step::After => ("Action=DescribeSecurityGroupRules", 1),
        }
    }

    async fn play(&self, step: Step, fault: FaultKind) -> Outcome {
        let (needle, skip) = Self::call(step);
        let injected = match fault {
            FaultKind::Timeout => Fault::AnswerAfter(HUNG),
            FaultKind::Crash => Fault::Crash,
            FaultKind::LostAnswer => Fault::DropAnswer,
            FaultKind::Duplicate => Fault::AnswerAfter(HELD),
            FaultKind::HandOver => return Outcome::NotApplicable, // one invocation always
        };
        let before = self.rules().await;
        self.proxy.clear();
        self.proxy.inject_after(needle, skip, injected, 1);
        let mut cfn = Player::new(&self.function, "Custom::SecurityGroupIngress").await;
        cfn.answer_timeout = Duration::from_secs(30);
        let props = self.props();
        let answers = if fault == FaultKind::Duplicate {
            cfn.create_twice(&self.twin, "HopsworksIngress", props.clone(), HELD / 3)
                .await
                .into_iter()
                .map(|(status, id, _)| (status, id))
                .collect()
        } else {
            let a = cfn.create("HopsworksIngress", props.clone()).await;
            if fault == FaultKind::Timeout {
                assert!(a.reason.contains("timed out"), "{step:?}: {}", a.reason);
            }
            vec![(a.status, a.physical_id)]
        };
        assert_eq!(self.proxy.unfired(), 0, "{step:?} × {fault:?} never struck");
        self.proxy.clear();
        let answer = conclude(&cfn, "HopsworksIngress", &props, answers).await;
        Outcome::Played {
            answer,
            left: left(&before, &self.rules().await),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_ingress_leaves_nothing_behind_whatever_fails_when() {
    let bench = IngressBench::start().await;
    let mut cells = Vec::new();
    for step in Step::ALL {
        for fault in FaultKind::ALL {
            let outcome = bench.play(step, fault).await;
            cells.push(Cell {
                step,
                fault,
                outcome,
            });
        }
    }
    let table = matrix::table(
        INGRESS,
        &[
            (Step::Before, "reading the group's rules"),
            (Step::During, "authorizing a port"),
            (Step::After, "reading the new rules' ids"),
        ],
        &cells,
    );
    assert_all_clean(INGRESS, &cells);
    matrix::readme_check(INGRESS, &table).unwrap_or_else(|e| panic!("{e}"));
}
