//! The HopsworksCluster function, compiled, behind the Runtime API (continuing long waits in new
//! invocations through the bench's Lambda Invoke), against the Hopsworks.ai double, Secrets
//! Manager and ECR in moto, with CloudFormation played over HTTP.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player, STACK_ID};
use system_tests::control::Control;
use system_tests::faults::{Fault, FaultProxy};
use system_tests::lambda::LambdaFunction;

const TYPE: &str = "Custom::HopsworksCluster";
const LOGICAL: &str = "HopsworksCluster";

struct Bench {
    aws: AwsBench,
    proxy: FaultProxy,
    control: Control,
    function: Arc<LambdaFunction>,
}

/// A bench whose function has `timeout` per invocation: short enough that waits continue.
async fn bench(timeout: Duration) -> Bench {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = Control::new(&aws.seeded.control_endpoint);
    let function = system_tests::hopsworks_cluster_function(&aws.seeded, &proxy, timeout);
    Bench {
        aws,
        proxy,
        control,
        function,
    }
}

impl Bench {
    fn props(&self) -> Value {
        system_tests::hopsworks_cluster_properties(&self.aws.seeded)
    }

    async fn player(&self) -> Player<'_> {
        let mut cfn = Player::new(&self.function, TYPE).await;
        cfn.answer_timeout = Duration::from_secs(120);
        cfn
    }

    /// ECR repository names in moto.
    async fn repositories(&self) -> Vec<String> {
        let v = self
            .aws
            .query(
                r#"
import boto3, json, os
ecr = boto3.client("ecr", endpoint_url=os.environ["BENCH_ENDPOINT"])
names = [r["repositoryName"] for p in ecr.get_paginator("describe_repositories").paginate() for r in p["repositories"]]
print(json.dumps(names))
"#,
            )
            .await;
        serde_json::from_value(v).unwrap_or_default()
    }

    async fn make_repository(&self, name: &str) {
        self.aws
            .query(&format!(
                r#"
import boto3, json, os
ecr = boto3.client("ecr", endpoint_url=os.environ["BENCH_ENDPOINT"])
ecr.create_repository(repositoryName="{name}")
print(json.dumps(True))
"#
            ))
            .await;
    }

    /// A Secrets Manager secret holding `value`; its ARN.
    async fn make_secret(&self, name: &str, value: &str) -> String {
        let v = self
            .aws
            .query(&format!(
                r#"
import boto3, json, os
sm = boto3.client("secretsmanager", endpoint_url=os.environ["BENCH_ENDPOINT"])
print(json.dumps(sm.create_secret(Name="{name}", SecretString=json.loads({value:?}))["ARN"]))
"#,
                value = serde_json::to_string(value).unwrap_or_default()
            ))
            .await;
        v.as_str().unwrap_or_default().to_owned()
    }

    /// Every cluster the double ever had, by id.
    async fn clusters(&self) -> BTreeMap<String, Value> {
        self.control
            .hopsworks_clusters()
            .await
            .into_iter()
            .map(|c| (c["id"].as_str().unwrap_or_default().to_owned(), c))
            .collect()
    }

    /// The clusters made through the API (the function's), by id.
    async fn made_by_the_function(&self) -> BTreeMap<String, Value> {
        let mut clusters = self.clusters().await;
        clusters.retain(|_, c| c["bench"]["origin"] == "api");
        clusters
    }

    /// `(method, path)` of the requests the double received.
    async fn requests(&self) -> Vec<(String, String)> {
        self.control
            .hopsworks_requests()
            .await
            .iter()
            .map(|r| {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                (text("method"), text("path"))
            })
            .collect()
    }

    /// What CloudFormation does after a Create's `answer`: a Delete with the id it carried (the
    /// rollback's after a FAILED, the failed-create marker included; the stack's after a
    /// SUCCESS). Then nothing the function made is left (every cluster it made is terminated
    /// and its ECR repositories are gone), and everything else is as it was: the other
    /// clusters in their states, the other repositories in place. Clusters that never ran get
    /// two repositories first, as a boot that got that far would have pushed, so that their
    /// clean-up is checked too.
    async fn conclude(&self, cfn: &Player<'_>, answer: &Answer, props: Value) -> Answer {
        for (id, c) in self.made_by_the_function().await {
            if c["state"] != "terminated" && c["bench"]["ecr"].is_null() {
                self.make_repository(&format!("{id}/base")).await;
                self.make_repository(&format!("{id}/filebeat")).await;
            }
        }
        let others: BTreeMap<String, Value> = self
            .clusters()
            .await
            .into_iter()
            .filter(|(_, c)| c["bench"]["origin"] != "api")
            .map(|(id, c)| (id, c["state"].clone()))
            .collect();
        let repositories_before = self.repositories().await;

        let deleted = cfn.delete(LOGICAL, &answer.physical_id, props).await;
        assert!(
            deleted.is_success(),
            "the Delete of {} failed: {}",
            answer.physical_id,
            deleted.reason
        );

        let ours = self.made_by_the_function().await;
        for (id, c) in &ours {
            assert_eq!(c["state"], "terminated", "cluster {id} was left: {c}");
        }
        let clusters = self.clusters().await;
        for (id, state) in &others {
            assert_eq!(
                &clusters[id]["state"], state,
                "someone else's cluster {id} changed"
            );
        }
        let left = self.repositories().await;
        for name in &left {
            let cluster = name.split('/').next().unwrap_or_default();
            assert!(!ours.contains_key(cluster), "repository {name} was left");
        }
        for name in repositories_before {
            let cluster = name.split('/').next().unwrap_or_default();
            if !ours.contains_key(cluster) {
                assert!(
                    left.contains(&name),
                    "someone else's repository {name} was deleted"
                );
            }
        }
        deleted
    }

    fn assert_key_never_shown(&self, answers: &[&Answer]) {
        let key = &self.aws.seeded.hopsworks_ai.api_key;
        for line in self.function.logs() {
            assert!(
                !line.contains(key.as_str()),
                "the API key was logged: {line}"
            );
        }
        for a in answers {
            assert!(!a.reason.contains(key.as_str()));
            assert!(
                !serde_json::to_string(&a.data)
                    .unwrap()
                    .contains(key.as_str())
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_waits_across_invocations_then_terminates_and_cleans_ecr() {
    // 8 s invocations, 1 s polls, 12 polls to running: the wait must continue at least once.
    let b = bench(Duration::from_secs(8)).await;
    b.control
        .hopsworks_behaviour(json!({"polls_per_state": 3, "leave_ecr_repos": true}))
        .await;
    b.make_repository("other-team/base").await;
    b.make_repository("5e1d2c3b-not-ours/base").await;
    let cfn = b.player().await;

    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("State"), "running");
    assert!(
        created.attr("Url").starts_with("https://"),
        "{:?}",
        created.data
    );
    let id = created.physical_id.clone();
    assert_eq!(created.attr("ClusterId"), id);
    assert!(b.function.cold_starts() >= 1);
    let rounds = b
        .function
        .logs()
        .iter()
        .filter(|l| l.contains("continuing in a new invocation"))
        .count();
    assert!(rounds >= 1, "the wait never continued in a new invocation");
    let ours: Vec<String> = b
        .repositories()
        .await
        .into_iter()
        .filter(|r| r.starts_with(&format!("{id}/")))
        .collect();
    assert_eq!(
        ours.len(),
        7,
        "the double pushes seven repositories: {ours:?}"
    );

    let deleted = cfn.delete(LOGICAL, &id, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    let clusters = b.control.hopsworks_clusters().await;
    let state = clusters
        .iter()
        .find(|c| c["id"] == id.as_str())
        .map(|c| c["state"].clone());
    assert_eq!(state, Some(json!("terminated")));
    let left = b.repositories().await;
    assert!(
        !left.iter().any(|r| r.starts_with(&format!("{id}/"))),
        "{left:?}"
    );
    assert!(left.contains(&"other-team/base".to_owned()));
    assert!(left.contains(&"5e1d2c3b-not-ours/base".to_owned()));
    b.assert_key_never_shown(&[&created, &deleted]);
    system_tests::faults::assert_calls_within(&b.proxy, hopsworks_cluster::IAM_ACTIONS);
    assert!(
        b.proxy
            .actions()
            .contains(&"lambda:InvokeFunction".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_state_fails_with_its_message_and_the_rollback_terminates_it() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(
            json!({"fail_next_with": "not enough capacity for m5.2xlarge in us-east-2a"}),
        )
        .await;
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed
            .reason
            .contains("not enough capacity for m5.2xlarge in us-east-2a"),
        "{}",
        failed.reason
    );
    // The id is the cluster's, so the rollback terminates it.
    let rollback = cfn.delete(LOGICAL, &failed.physical_id, b.props()).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    let clusters = b.control.hopsworks_clusters().await;
    assert!(
        clusters.iter().all(|c| c["state"] == "terminated"),
        "{clusters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_create_makes_one_cluster() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let first = cfn.create(LOGICAL, b.props()).await;
    let again = cfn.create(LOGICAL, b.props()).await; // Lambda delivered the Create twice
    assert!(
        first.is_success() && again.is_success(),
        "{} / {}",
        first.reason,
        again.reason
    );
    assert_eq!(first.physical_id, again.physical_id);
    let posts = b
        .control
        .hopsworks_requests()
        .await
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_problems_fail_naming_the_secret_and_never_the_key() {
    let b = bench(Duration::from_secs(30)).await;
    let s = b.aws.seeded.hopsworks_ai.clone();
    let cfn = b.player().await;
    let mut answers = Vec::new();
    for (arn, expected) in [
        (&s.missing_secret_arn, "it does not exist"),
        (&s.wrong_secret_arn, "HTTP 403"),
    ] {
        let mut props = b.props();
        props["ApiKeySecretArn"] = json!(arn);
        let answer = cfn.create(LOGICAL, props.clone()).await;
        assert_eq!(answer.status, "FAILED");
        assert!(answer.reason.contains(expected), "{}", answer.reason);
        assert!(answer.reason.contains(arn.as_str()), "{}", answer.reason);
        // The rollback's Delete succeeds: nothing could have been made with that key.
        b.conclude(&cfn, &answer, props).await;
        answers.push(answer);
    }
    // The key as JSON works.
    let mut props = b.props();
    props["ApiKeySecretArn"] = json!(s.secret_json_arn);
    let ok = cfn.create(LOGICAL, props).await;
    assert!(ok.is_success(), "{}", ok.reason);
    answers.push(ok);
    b.assert_key_never_shown(&answers.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_5xx_storms_are_retried_then_answered() {
    let b = bench(Duration::from_secs(60)).await;
    b.control
        .hopsworks_fault(json!({"kind": "status", "status": 429, "times": 3}))
        .await;
    b.control
        .hopsworks_fault(json!({"kind": "status", "status": 503, "method": "GET", "path_contains": "/api/clusters/", "times": 2}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);

    b.control
        .hopsworks_fault(json!({"kind": "status", "status": 500, "method": "DELETE", "times": 50}))
        .await;
    let failed = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed.reason.contains("gave up after 6 attempts"),
        "{}",
        failed.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_a_taken_eks_cluster_fail_before_anything_is_made() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let mut props = b.props();
    props["InstanceProfileArn"] = json!(b.aws.seeded.hopsworks.role_arn);
    let answer = cfn.create(LOGICAL, props.clone()).await;
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer.reason.contains("InstanceProfileArn"),
        "{}",
        answer.reason
    );
    assert!(
        b.control.hopsworks_requests().await.is_empty(),
        "bad input reached Hopsworks.ai"
    );
    // The rollback's Delete of the marker, with the same bad input, succeeds: the Create made
    // nothing (a FAILED rollback would leave the stack ROLLBACK_FAILED).
    assert!(is_marker(&answer.physical_id), "{}", answer.physical_id);
    b.conclude(&cfn, &answer, props).await;
    assert!(
        b.control.hopsworks_requests().await.is_empty(),
        "bad input reached Hopsworks.ai"
    );

    b.control
        .create_hopsworks_cluster(
            json!({"name": "someone-else", "eksClusterName": b.aws.seeded.cluster.name}),
        )
        .await;
    let answer = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer
            .reason
            .contains("already used by Hopsworks cluster someone-else"),
        "{}",
        answer.reason
    );
    // Its rollback leaves someone else's cluster alone.
    b.conclude(&cfn, &answer, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_only_what_can_change_in_place() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let mut in_place = b.props();
    in_place["PollIntervalSeconds"] = json!("2");
    let updated = cfn
        .update(LOGICAL, &created.physical_id, in_place.clone(), b.props())
        .await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(updated.physical_id, created.physical_id);
    let mut replacing = in_place.clone();
    replacing["BucketName"] = json!("another-bucket");
    let refused = cfn
        .update(
            LOGICAL,
            &created.physical_id,
            replacing.clone(),
            in_place.clone(),
        )
        .await;
    assert_eq!(refused.status, "FAILED");
    assert!(
        refused.reason.starts_with("BucketName cannot change"),
        "{}",
        refused.reason
    );
    assert_eq!(refused.physical_id, created.physical_id);

    // CloudFormation's rollback of that update: old and new swapped. The cluster already is what
    // it asks for, so it succeeds (a refusal here would leave the stack UPDATE_ROLLBACK_FAILED).
    let rolled_back = cfn
        .update(LOGICAL, &created.physical_id, in_place.clone(), replacing)
        .await;
    assert!(rolled_back.is_success(), "{}", rolled_back.reason);
    assert_eq!(rolled_back.physical_id, created.physical_id);
    // A real change is still refused after it.
    let mut other = in_place.clone();
    other["HeadDiskSize"] = json!("1024");
    let refused = cfn
        .update(LOGICAL, &created.physical_id, other, in_place)
        .await;
    assert!(
        refused.reason.starts_with("HeadDiskSize cannot change"),
        "{}",
        refused.reason
    );
    let clusters = b.control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
}

// ---- Nothing left behind (issue 11) ------------------------------------------------------------

/// The id a Create answered, when it is the failed-create marker.
fn is_marker(id: &str) -> bool {
    id.starts_with(custom_resource::FAILED_CREATE_PREFIX)
}

/// A Create whose GET near the end of an invocation meets `fault` must hand on, not fail.
async fn a_slow_answer_hands_on(fault: Value) {
    // 10 s invocations: the framework answers 2 s before, so a GET that hangs (the client would
    // wait 60 s × 6) or a Retry-After of 30 s would outlive the invocation's answer.
    let b = bench(Duration::from_secs(10)).await;
    b.control
        .hopsworks_behaviour(json!({"polls_per_state": 2, "leave_ecr_repos": true}))
        .await;
    b.make_repository("other-team/base").await;
    b.control.hopsworks_fault(fault).await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let made: Vec<String> = b.made_by_the_function().await.into_keys().collect();
    assert_eq!(made, std::slice::from_ref(&created.physical_id));
    assert!(handed_on(&b.function) >= 1, "the wait never handed on");
    b.conclude(&cfn, &created, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_get_at_the_end_of_an_invocation_hands_on_instead_of_failing() {
    a_slow_answer_hands_on(json!({"kind": "delay", "seconds": 40, "method": "GET", "path_contains": "/api/clusters/", "skip": 1})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_time_left_hands_on_instead_of_sleeping() {
    a_slow_answer_hands_on(json!({"kind": "status", "status": 429, "retry_after": 30, "method": "GET", "path_contains": "/api/clusters/", "skip": 1})).await;
}

fn handed_on(function: &LambdaFunction) -> usize {
    function
        .logs()
        .iter()
        .filter(|l| l.contains("continuing in a new invocation"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_hand_on_after_the_post_answers_the_clusters_id_and_the_rollback_removes_it() {
    // 8 s invocations and 12 polls to running: the wait must hand on, and Lambda's Invoke fails.
    let b = bench(Duration::from_secs(8)).await;
    b.control
        .hopsworks_behaviour(json!({"polls_per_state": 3, "leave_ecr_repos": true}))
        .await;
    b.make_repository("other-team/base").await;
    b.proxy.inject("/invocations", Fault::ServerError, 20);
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed.reason.contains("could not continue"),
        "{}",
        failed.reason
    );
    let made: Vec<String> = b.made_by_the_function().await.into_keys().collect();
    assert_eq!(
        made,
        std::slice::from_ref(&failed.physical_id),
        "the answer must carry the cluster's id"
    );
    b.proxy.clear();
    b.conclude(&cfn, &failed, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_lost_its_clusters_id_is_removed_by_its_owner_tag() {
    // The POST is applied but its answer lost, and Hopsworks.ai then fails every lookup: the
    // Create cannot know its cluster's id and answers with the failed-create marker. The
    // rollback's Delete of the marker finds the cluster by its owner tag.
    let b = bench(Duration::from_secs(60)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    b.make_repository("other-team/base").await;
    let someone_else = b
        .control
        .create_hopsworks_cluster(json!({"name": "someone-else", "eksClusterName": "other-eks"}))
        .await;
    b.control
        .hopsworks_fault(json!({"kind": "drop", "after": true, "method": "POST"}))
        .await;
    b.control
        .hopsworks_fault(json!({"kind": "status", "status": 503, "method": "GET", "path_contains": "?cloud=AWS", "skip": 1, "times": 6}))
        .await;
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(failed.status, "FAILED", "{}", failed.reason);
    assert!(is_marker(&failed.physical_id), "{}", failed.physical_id);
    assert_eq!(
        b.made_by_the_function().await.len(),
        1,
        "the POST was applied"
    );

    b.conclude(&cfn, &failed, b.props()).await;
    let clusters = b.clusters().await;
    let other = &clusters[someone_else["id"].as_str().unwrap_or_default()];
    assert_eq!(other["state"], "running");
}

/// A POST that Hopsworks.ai applies but answers with `fault`: the Create adopts the cluster
/// instead of posting again (which would be refused: the name is taken).
async fn a_post_applied_is_adopted(fault: Value) {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    b.control.hopsworks_fault(fault).await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(posts(&b).await, 1, "the POST was repeated");
    let made: Vec<String> = b.made_by_the_function().await.into_keys().collect();
    assert_eq!(made, std::slice::from_ref(&created.physical_id));
    b.conclude(&cfn, &created, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_applied_but_answered_5xx_is_adopted_not_repeated() {
    a_post_applied_is_adopted(
        json!({"kind": "status", "status": 503, "after": true, "method": "POST"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_applied_whose_connection_dropped_is_adopted_not_repeated() {
    a_post_applied_is_adopted(json!({"kind": "drop", "after": true, "method": "POST"})).await;
}

async fn posts(b: &Bench) -> usize {
    b.requests()
        .await
        .iter()
        .filter(|(method, _)| method == "POST")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deliveries_of_one_create_at_once_make_one_cluster_and_answer_its_id() {
    let b = bench(Duration::from_secs(30)).await;
    // A second execution environment of the same function.
    let twin =
        system_tests::hopsworks_cluster_function(&b.aws.seeded, &b.proxy, Duration::from_secs(30));
    // Both look before either posts (the lists are read at once, answered 3 s later): then both
    // post, and Hopsworks.ai refuses the second one's name.
    b.control
        .hopsworks_fault(json!({"kind": "delay", "seconds": 3, "after": true, "method": "GET", "path_contains": "?cloud=AWS", "times": 2}))
        .await;
    let cfn = b.player().await;
    let answers = cfn
        .create_twice(&twin, LOGICAL, b.props(), Duration::ZERO)
        .await;
    assert_eq!(answers.len(), 2, "{answers:?}");
    for (status, id, reason) in &answers {
        assert_eq!(status, "SUCCESS", "{reason}");
        assert_eq!(id, &answers[0].1);
    }
    let log: Vec<String> = b
        .control
        .hopsworks_requests()
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["time"], r["method"], r["path"], r["status"], r["fault"]
            )
        })
        .collect();
    assert_eq!(posts(&b).await, 2, "both deliveries posted: {log:#?}");
    let made = b.made_by_the_function().await;
    assert_eq!(made.len(), 1, "{made:?}");
    let (_, id, _) = &answers[0];
    let created = cfn.delete(LOGICAL, id, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert!(
        b.made_by_the_function()
            .await
            .values()
            .all(|c| c["state"] == "terminated")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_carry_the_frameworks_owner_tag() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let cluster = b.clusters().await[&created.physical_id].clone();
    let tags: BTreeMap<String, String> = cluster["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let text = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("value"))
        })
        .collect();
    let uuid = STACK_ID.rsplit('/').next().unwrap_or_default();
    assert_eq!(
        tags.get(custom_resource::OWNER_TAG),
        Some(&format!("hopsworks-eks/{uuid}/{LOGICAL}")),
        "{tags:?}"
    );
    assert!(
        !tags.contains_key(hopsworks_cluster::LEGACY_OWNER_TAG),
        "{tags:?}"
    );
    b.conclude(&cfn, &created, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_an_earlier_release_made_is_found_by_its_tag_and_removed() {
    // A cluster an earlier release made for this resource (its tag, its owner form), whose
    // Create's answer was lost: the rollback's Delete of the marker finds and removes it.
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let legacy = b
        .control
        .create_hopsworks_cluster(json!({
            "name": "fs-demo",
            "eksClusterName": b.aws.seeded.cluster.name,
            "tags": [{"name": hopsworks_cluster::LEGACY_OWNER_TAG, "value": format!("{STACK_ID}#{LOGICAL}")}],
        }))
        .await;
    let legacy_id = legacy["id"].as_str().unwrap_or_default().to_owned();
    let another_stack = STACK_ID.replace("6f5c4c80", "0badcafe");
    let theirs = b
        .control
        .create_hopsworks_cluster(json!({
            "name": "theirs",
            "eksClusterName": "other-eks",
            "tags": [{"name": hopsworks_cluster::LEGACY_OWNER_TAG, "value": format!("{another_stack}#{LOGICAL}")}],
        }))
        .await;
    let theirs_id = theirs["id"].as_str().unwrap_or_default().to_owned();
    let marker = format!(
        "{}{LOGICAL}:{}",
        custom_resource::FAILED_CREATE_PREFIX,
        "0d8f2a"
    );
    let deleted = cfn.delete(LOGICAL, &marker, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    let clusters = b.clusters().await;
    assert_eq!(clusters[&legacy_id]["state"], "terminated");
    assert_eq!(clusters[&theirs_id]["state"], "running");
    let left = b.repositories().await;
    assert!(
        !left.iter().any(|r| r.starts_with(&format!("{legacy_id}/"))),
        "{left:?}"
    );
    assert_eq!(
        left.iter()
            .filter(|r| r.starts_with(&format!("{theirs_id}/")))
            .count(),
        7,
        "{left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_names_the_secret_as_a_403_does() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let secret_arn = b.aws.seeded.hopsworks_ai.secret_arn.clone();
    b.control
        .hopsworks_fault(json!({"kind": "status", "status": 401, "method": "GET"}))
        .await;
    let refused = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(refused.status, "FAILED");
    assert!(refused.reason.contains("HTTP 401"), "{}", refused.reason);
    assert!(refused.reason.contains(&secret_arn), "{}", refused.reason);
    b.conclude(&cfn, &refused, b.props()).await;
    b.assert_key_never_shown(&[&refused]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_a_line_break_fails_at_once_naming_the_secret() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let broken = b
        .make_secret(
            "hopsworks/two-lines",
            &format!("{}\nsecond line", b.aws.seeded.hopsworks_ai.api_key),
        )
        .await;
    let mut props = b.props();
    props["ApiKeySecretArn"] = json!(broken);
    let requests_before = b.requests().await.len();
    let failed = cfn.create(LOGICAL, props.clone()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(failed.reason.contains(&broken), "{}", failed.reason);
    assert!(failed.reason.contains("line break"), "{}", failed.reason);
    assert_eq!(
        b.requests().await.len(),
        requests_before,
        "a key that cannot be sent reached Hopsworks.ai"
    );
    // Its rollback: the Create could not have made anything with that key.
    b.conclude(&cfn, &failed, props).await;
    b.assert_key_never_shown(&[&failed]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_of_a_cluster_in_error_deletes_it_and_waits_until_it_is_gone() {
    let b = bench(Duration::from_secs(60)).await;
    b.control
        .hopsworks_behaviour(
            json!({"fail_next_with": "no capacity for m5.2xlarge", "leave_ecr_repos": true}),
        )
        .await;
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    let id = failed.physical_id.clone();
    assert_eq!(b.clusters().await[&id]["state"], "error");
    // Hopsworks.ai acts on the DELETE a while after accepting it: the cluster still reads
    // `error` for the first polls after it.
    b.control
        .hopsworks_behaviour(json!({"delete_lag_polls": 2}))
        .await;
    b.conclude(&cfn, &failed, b.props()).await;
    assert!(
        b.requests()
            .await
            .contains(&("DELETE".to_owned(), format!("/api/clusters/{id}")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_polls_first_a_poll_interval_after_the_delete() {
    let b = bench(Duration::from_secs(60)).await;
    let mut props = b.props();
    props["PollIntervalSeconds"] = json!("2");
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = created.physical_id.clone();
    b.conclude(&cfn, &created, props).await;

    let log = b.control.hopsworks_requests().await;
    let path = format!("/api/clusters/{id}");
    let deleted_at = log
        .iter()
        .find(|r| r["method"] == "DELETE" && r["path"] == path.as_str())
        .and_then(|r| r["time"].as_f64())
        .expect("the cluster was DELETEd");
    let first_look = log
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == path.as_str())
        .filter_map(|r| r["time"].as_f64())
        .find(|t| *t > deleted_at)
        .expect("the Delete polled");
    assert!(
        first_look - deleted_at >= 1.5,
        "the first poll came {:.2} s after the DELETE, not a poll interval (2 s) later",
        first_look - deleted_at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eks_cluster_of_that_name_in_another_region_is_no_conflict() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    b.control
        .create_hopsworks_cluster(json!({
            "name": "eu-team",
            "eksClusterName": b.aws.seeded.cluster.name,
            "region": "eu-west-1",
        }))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    b.conclude(&cfn, &created, b.props()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_profiles_of_the_aws_cn_and_aws_us_gov_partitions_are_accepted() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    for partition in ["aws-us-gov", "aws-cn"] {
        let mut props = b.props();
        props["InstanceProfileArn"] = json!(b.aws.seeded.hopsworks.instance_profile_arn.replacen(
            "arn:aws:",
            &format!("arn:{partition}:"),
            1
        ));
        let created = cfn.create(LOGICAL, props.clone()).await;
        assert!(created.is_success(), "{partition}: {}", created.reason);
        b.conclude(&cfn, &created, props).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marker_delete_that_cannot_read_the_key_for_now_tries_again_instead_of_leaving_the_cluster()
 {
    let b = bench(Duration::from_secs(20)).await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    // The Create's answer was lost: CloudFormation's rollback Delete carries the marker. Secrets
    // Manager throttles the first reads past the SDK's own retries: the cluster must still go.
    b.proxy.inject(
        "secretsmanager.GetSecretValue",
        system_tests::faults::Fault::Throttle,
        4,
    );
    let lost = Answer {
        physical_id: format!("{}{LOGICAL}:lost", custom_resource::FAILED_CREATE_PREFIX),
        ..created
    };
    b.conclude(&cfn, &lost, b.props()).await;
    assert_eq!(b.proxy.unfired(), 0, "the throttling never struck");
}

// ---- Updates in place (issue 12, part 1) -------------------------------------------------------

/// A bench with a running cluster made by the function: the bench, the player and the Create's
/// answer.
async fn updatable(timeout: Duration, behaviour: Value) -> (Bench, Answer) {
    let b = bench(timeout).await;
    b.control.hopsworks_behaviour(behaviour).await;
    let created = {
        let cfn = b.player().await;
        cfn.create(LOGICAL, b.props()).await
    };
    assert!(created.is_success(), "{}", created.reason);
    (b, created)
}

impl Bench {
    /// `(method, path)` of the day-2 calls (anything but a GET) on cluster `id`, in order.
    async fn changes(&self, id: &str) -> Vec<(String, String)> {
        let prefix = format!("/api/clusters/{id}/");
        self.requests()
            .await
            .into_iter()
            .filter(|(method, path)| method != "GET" && path.starts_with(&prefix))
            .map(|(method, path)| (method, path[prefix.len()..].to_owned()))
            .collect()
    }

    /// The cluster as the double's control API shows it.
    async fn cluster(&self, id: &str) -> Value {
        self.clusters().await.remove(id).unwrap_or_default()
    }

    /// `(instanceType, count)` of each worker group of cluster `id`.
    async fn workers(&self, id: &str) -> Vec<(String, u64)> {
        let c = self.cluster(id).await;
        c["clusterConfiguration"]["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| {
                (
                    w["instanceType"].as_str().unwrap_or_default().to_owned(),
                    w["count"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The JSON body of the last `method` request whose path ends with `suffix`.
async fn body_of(b: &Bench, method: &str, suffix: &str) -> Value {
    b.control
        .hopsworks_requests()
        .await
        .into_iter()
        .rfind(|r| {
            r["method"] == method && r["path"].as_str().unwrap_or_default().ends_with(suffix)
        })
        .and_then(|r| serde_json::from_str(r["body"].as_str()?).ok())
        .unwrap_or_default()
}

fn call(method: &str, path: &str) -> (String, String) {
    (method.to_owned(), path.to_owned())
}

fn changed(props: &Value, changes: Value) -> Value {
    let mut props = props.clone();
    for (k, v) in changes.as_object().into_iter().flatten() {
        props[k] = v.clone();
    }
    props
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_count_change_adds_workers_and_its_rollback_update_removes_them() {
    let (b, created) = updatable(Duration::from_secs(30), json!({"polls_per_state": 2})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let more = changed(&b.props(), json!({"WorkerCount": "3"}));
    let updated = cfn.update(LOGICAL, id, more.clone(), b.props()).await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(&updated.physical_id, id);
    assert_eq!(updated.attr("State"), "running");
    assert_eq!(b.workers(id).await, [("m5.2xlarge".to_owned(), 3)]);
    assert_eq!(b.changes(id).await, [call("POST", "workers")]);

    // CloudFormation's rollback of that update: old and new swapped.
    let back = cfn.update(LOGICAL, id, b.props(), more).await;
    assert!(back.is_success(), "{}", back.reason);
    assert_eq!(b.workers(id).await, [("m5.2xlarge".to_owned(), 1)]);
    assert_eq!(
        b.changes(id).await,
        [call("POST", "workers"), call("DELETE", "workers")]
    );
    let removed = body_of(&b, "DELETE", "/workers").await;
    assert_eq!(
        removed["workers"],
        json!([{"instanceType": "m5.2xlarge", "diskSize": 512, "count": 2}]),
        "{removed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_worker_type_removes_the_old_group_then_adds_the_new_one() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let props = changed(
        &b.props(),
        json!({"WorkerInstanceType": "m5.4xlarge", "WorkerCount": "2"}),
    );
    let updated = cfn.update(LOGICAL, id, props, b.props()).await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(b.workers(id).await, [("m5.4xlarge".to_owned(), 2)]);
    assert_eq!(
        b.changes(id).await,
        [call("DELETE", "workers"), call("POST", "workers")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_replaces_the_workers_and_turning_it_off_brings_them_back() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let autoscaled = changed(
        &b.props(),
        json!({"WorkerCount": "0", "AutoscaleMaxWorkers": "4", "AutoscaleMinWorkers": "1",
               "AutoscaleStandbyWorkers": "0.25"}),
    );
    let on = cfn.update(LOGICAL, id, autoscaled.clone(), b.props()).await;
    assert!(on.is_success(), "{}", on.reason);
    let c = b.cluster(id).await;
    assert_eq!(
        c["autoscale"]["nonGpu"],
        json!({"instanceType": "m5.2xlarge", "diskSize": 512, "minWorkers": 1, "maxWorkers": 4,
               "standbyWorkers": 0.25, "downscaleWaitTime": 300}),
        "{c}"
    );
    assert!(b.workers(id).await.is_empty());

    let off = cfn.update(LOGICAL, id, b.props(), autoscaled).await;
    assert!(off.is_success(), "{}", off.reason);
    assert!(b.cluster(id).await["autoscale"].is_null());
    assert_eq!(b.workers(id).await, [("m5.2xlarge".to_owned(), 1)]);
    assert_eq!(
        b.changes(id).await,
        [
            call("DELETE", "workers"),
            call("POST", "autoscale"),
            call("DELETE", "autoscale"),
            call("POST", "workers"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_and_the_head_instance_type_change_in_place() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let props = changed(
        &b.props(),
        json!({"OpenPorts": ["FeatureStore", "Kafka", ""], "HeadInstanceType": "m5.4xlarge"}),
    );
    let updated = cfn.update(LOGICAL, id, props, b.props()).await;
    assert!(updated.is_success(), "{}", updated.reason);
    let c = b.cluster(id).await;
    assert_eq!(
        c["ports"],
        json!({"featureStore": true, "onlineFeatureStore": false, "kafka": true, "ssh": false})
    );
    assert_eq!(
        c["clusterConfiguration"]["head"]["instanceType"],
        "m5.4xlarge"
    );
    assert_eq!(
        b.changes(id).await,
        [
            call("POST", "ports"),
            call("PUT", "nodes/modify-instance-type")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_waits_across_invocations_and_its_rollback_update_rolls_it_back() {
    // 8 s invocations, 1 s polls, 3 polls per state: the upgrade's five states take about 15 s.
    let (b, created) = updatable(Duration::from_secs(8), json!({"polls_per_state": 3})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let before = handed_on(&b.function);
    let upgraded = changed(&b.props(), json!({"HopsworksVersion": "4.0.0"}));
    let updated = cfn.update(LOGICAL, id, upgraded.clone(), b.props()).await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(updated.attr("Version"), "4.0.0");
    assert_eq!(&updated.physical_id, id);
    assert!(
        handed_on(&b.function) > before,
        "the upgrade's wait never handed on"
    );
    let upgrade = body_of(&b, "POST", "/upgrade").await;
    assert_eq!(
        upgrade["dockerRegistryAccount"],
        b.cluster(id).await["aws"]["ecrRegistryAccountId"]
    );

    let back = cfn.update(LOGICAL, id, b.props(), upgraded).await;
    assert!(back.is_success(), "{}", back.reason);
    assert_eq!(back.attr("Version"), "3.9.0");
    assert_eq!(
        b.changes(id).await,
        [call("POST", "upgrade"), call("PUT", "upgrade/rollback")]
    );
    // Each state the cluster went through is logged with its id and URL.
    let logged = b
        .function
        .logs()
        .into_iter()
        .filter(|l| l.contains("Hopsworks cluster state") && l.contains(id.as_str()))
        .count();
    assert!(logged >= 4, "states logged: {logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_is_rolled_back_and_fails_with_the_apis_message() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    b.control
        .hopsworks_behaviour(json!({"fail_upgrade_with": "the database migration failed on ndbd"}))
        .await;
    let cfn = b.player().await;
    let props = changed(&b.props(), json!({"HopsworksVersion": "4.0.0"}));
    let failed = cfn.update(LOGICAL, id, props, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed
            .reason
            .contains("the database migration failed on ndbd")
            && failed.reason.contains("rolled back to Hopsworks 3.9.0"),
        "{}",
        failed.reason
    );
    assert_eq!(&failed.physical_id, id);
    let c = b.cluster(id).await;
    assert_eq!(
        (c["state"].as_str(), c["version"].as_str()),
        (Some("running"), Some("3.9.0"))
    );
    assert_eq!(
        b.changes(id).await,
        [call("POST", "upgrade"), call("PUT", "upgrade/rollback")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_changes_nothing_on_the_cluster_calls_nothing() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    // A rollback Update of a change that never reached the cluster; an empty OpenPorts.
    let old = changed(
        &b.props(),
        json!({"WorkerCount": "5", "HopsworksVersion": "4.0.0"}),
    );
    let new = changed(
        &b.props(),
        json!({"OpenPorts": [""], "PollIntervalSeconds": "2"}),
    );
    let updated = cfn.update(LOGICAL, id, new, old).await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert!(b.changes(id).await.is_empty(), "{:?}", b.changes(id).await);
    let after_create: Vec<(String, String)> = b
        .requests()
        .await
        .into_iter()
        .filter(|(method, _)| method != "GET")
        .collect();
    assert_eq!(after_create, [call("POST", "/api/clusters")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_change_is_refused_naming_the_property_and_allow_replacement() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    let cfn = b.player().await;
    let props = changed(
        &b.props(),
        json!({"BucketName": "another-bucket", "WorkerCount": "2"}),
    );
    let refused = cfn.update(LOGICAL, id, props, b.props()).await;
    assert_eq!(refused.status, "FAILED");
    assert!(
        refused.reason.starts_with("BucketName cannot change")
            && refused.reason.contains("AllowReplacement"),
        "{}",
        refused.reason
    );
    assert_eq!(&refused.physical_id, id);
    // Nothing changed, the in-place part included.
    assert!(b.changes(id).await.is_empty());
    assert_eq!(b.workers(id).await, [("m5.2xlarge".to_owned(), 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_adding_workers_converges_without_adding_them_twice() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    b.control
        .hopsworks_fault(
            json!({"kind": "drop", "after": true, "method": "POST", "path_contains": "/workers"}),
        )
        .await;
    let cfn = b.player().await;
    let props = changed(&b.props(), json!({"WorkerCount": "3"}));
    let updated = cfn.update(LOGICAL, id, props, b.props()).await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(b.workers(id).await, [("m5.2xlarge".to_owned(), 3)]);
    assert_eq!(b.changes(id).await, [call("POST", "workers")]);
    assert!(
        b.control.hopsworks_faults().await.is_empty(),
        "the fault never struck"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_cluster_does_not_show_after_it_ran_again_fails_instead_of_repeating() {
    let (b, created) = updatable(Duration::from_secs(30), json!({})).await;
    let id = &created.physical_id;
    // The POST is answered 404, which the contract reads as success for any call, and is not
    // applied: the cluster runs on with one worker.
    b.control
        .hopsworks_fault(
            json!({"kind": "status", "status": 404, "method": "POST", "path_contains": "/workers"}),
        )
        .await;
    let cfn = b.player().await;
    let props = changed(&b.props(), json!({"WorkerCount": "3"}));
    let failed = cfn.update(LOGICAL, id, props, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed
            .reason
            .contains("accepted adding 2 m5.2xlarge workers (512 GB disks) but Hopsworks cluster")
            && failed
                .reason
                .contains("still shows 1 m5.2xlarge worker (512 GB disk)"),
        "{}",
        failed.reason
    );
    assert_eq!(b.changes(id).await, [call("POST", "workers")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_opens_its_ports_once_the_cluster_runs() {
    // The API takes no ports on create: they are opened as an Update would, before the answer.
    let b = bench(Duration::from_secs(30)).await;
    let cfn = b.player().await;
    let props = changed(&b.props(), json!({"OpenPorts": "Ssh,OnlineFeatureStore"}));
    let created = cfn.create(LOGICAL, props).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = &created.physical_id;
    assert_eq!(created.attr("State"), "running");
    assert_eq!(
        b.cluster(id).await["ports"],
        json!({"featureStore": false, "onlineFeatureStore": true, "kafka": false, "ssh": true})
    );
    assert_eq!(b.changes(id).await, [call("POST", "ports")]);
}

// ---- Delete modes, backups, restore, replacement (issue 12) -------------------------------------

/// `props` with `changes` on top.
fn props_with(mut props: Value, changes: &[(&str, &str)]) -> Value {
    for (key, value) in changes {
        props[*key] = json!(value);
    }
    props
}

impl Bench {
    /// Every backup the double ever had, by id.
    async fn double_backups(&self) -> BTreeMap<String, Value> {
        self.control
            .hopsworks_backups()
            .await
            .into_iter()
            .map(|b| (b["backupId"].as_str().unwrap_or_default().to_owned(), b))
            .collect()
    }

    /// How many requests the double received whose path contains `part`, by `method`.
    async fn requests_to(&self, method: &str, part: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|(m, p)| m == method && p.contains(part))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_then_terminate_leaves_a_succeeded_backup_and_nothing_else() {
    // 10 s invocations and 2 polls a backup state: the backup's wait may hand on too.
    let b = bench(Duration::from_secs(10)).await;
    b.control
        .hopsworks_behaviour(json!({"polls_per_state": 2, "leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = created.physical_id.clone();
    // The default OnDelete.
    let deleted = b.conclude(&cfn, &created, b.props()).await;
    let backups = b.double_backups().await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    let (backup_id, backup) = backups
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap_or_default();
    assert_eq!(backup["clusterId"], id.as_str());
    assert_eq!(backup["state"], "succeed");
    assert_eq!(
        backup["bench"]["deleted"], false,
        "the backup outlives the stack"
    );
    // The backup came before the DELETE of the cluster.
    let log = b.requests().await;
    let backed_up = log
        .iter()
        .position(|(m, p)| m == "POST" && p == "/api/backups");
    let terminated = log
        .iter()
        .position(|(m, p)| m == "DELETE" && *p == format!("/api/clusters/{id}"));
    assert!(backed_up < terminated && backed_up.is_some(), "{log:?}");
    // Its id is in the logs, with the cluster's; each backup state once.
    let logs = b.function.logs();
    assert!(
        logs.iter().any(|l| l.contains("Hopsworks backup requested")
            && l.contains(&backup_id)
            && l.contains(&id)),
        "the backup id was not logged"
    );
    for state in ["pending", "succeed"] {
        let seen = logs
            .iter()
            .filter(|l| l.contains("Hopsworks backup state") && l.contains(&format!("\"{state}\"")))
            .count();
        assert_eq!(seen, 1, "backup state {state} logged {seen} times");
    }
    b.assert_key_never_shown(&[&created, &deleted]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_takes_no_backup() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let props = props_with(b.props(), &[("OnDelete", "terminate")]);
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    b.conclude(&cfn, &created, props).await;
    assert!(b.double_backups().await.is_empty());
    assert_eq!(b.requests_to("POST", "/api/backups").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_leaves_the_cluster_and_its_repositories_and_succeeds_with_the_secret_deleted() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let secret = b
        .make_secret("hopsworks/retained", &b.aws.seeded.hopsworks_ai.api_key)
        .await;
    let props = props_with(
        b.props(),
        &[("OnDelete", "retain"), ("ApiKeySecretArn", secret.as_str())],
    );
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = created.physical_id.clone();
    b.aws
        .query(&format!(
            r#"
import boto3, json, os
sm = boto3.client("secretsmanager", endpoint_url=os.environ["BENCH_ENDPOINT"])
sm.delete_secret(SecretId="{secret}", ForceDeleteWithoutRecovery=True)
print(json.dumps(True))
"#
        ))
        .await;
    let requests_before = b.requests().await.len();
    let deleted = cfn.delete(LOGICAL, &id, props).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(b.clusters().await[&id]["state"], "running");
    let repositories = b.repositories().await;
    assert_eq!(
        repositories
            .iter()
            .filter(|r| r.starts_with(&format!("{id}/")))
            .count(),
        7,
        "{repositories:?}"
    );
    assert_eq!(
        b.requests().await.len(),
        requests_before,
        "retain called Hopsworks.ai"
    );
    assert!(b.double_backups().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_fails_the_delete_with_its_message_and_leaves_the_cluster_running() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = created.physical_id.clone();
    b.control
        .hopsworks_behaviour(
            json!({"fail_next_backup_with": "snapshot of the head's disk failed: quota exceeded"}),
        )
        .await;
    let failed = cfn.delete(LOGICAL, &id, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed
            .reason
            .contains("snapshot of the head's disk failed: quota exceeded"),
        "{}",
        failed.reason
    );
    assert!(failed.reason.contains("left running"), "{}", failed.reason);
    assert_eq!(b.clusters().await[&id]["state"], "running");
    assert_eq!(b.requests_to("DELETE", "/api/clusters/").await, 0);
    // Deleting again (a new request) takes a new backup, which succeeds.
    b.conclude(&cfn, &created, b.props()).await;
    let states: Vec<Value> = b
        .double_backups()
        .await
        .values()
        .map(|b| b["state"].clone())
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.contains(&json!("failed")) && states.contains(&json!("succeed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_post_applied_whose_answer_was_lost_is_adopted_not_repeated() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    b.control
        .hopsworks_fault(json!({"kind": "drop", "after": true, "method": "POST", "path_contains": "/api/backups"}))
        .await;
    b.conclude(&cfn, &created, b.props()).await;
    assert!(
        b.control.hopsworks_faults().await.is_empty(),
        "the fault never struck"
    );
    assert_eq!(
        b.requests_to("POST", "/api/backups").await,
        1,
        "the POST was repeated"
    );
    let backups = b.double_backups().await;
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert!(backups.values().all(|b| b["state"] == "succeed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_restored_from_a_backup_id() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let backup = b
        .control
        .create_hopsworks_backup(json!({
            "name": "fs-before",
            "eksClusterName": b.aws.seeded.cluster.name,
            "bucketName": "hops-demo-bucket",
        }))
        .await;
    let backup_id = backup["backupId"].as_str().unwrap_or_default().to_owned();
    let props = props_with(b.props(), &[("RestoreFromBackupId", backup_id.as_str())]);
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    let cluster = b.clusters().await[&created.physical_id].clone();
    assert_eq!(cluster["bench"]["restored_from"], backup_id.as_str());
    assert_eq!(
        cluster["name"], "fs-demo",
        "the name comes from the properties"
    );
    assert_eq!(b.requests_to("POST", "/api/clusters/restore/").await, 1);
    assert_eq!(
        b.requests()
            .await
            .iter()
            .filter(|(m, p)| m == "POST" && p == "/api/clusters")
            .count(),
        0,
        "a create was posted too"
    );
    b.conclude(&cfn, &created, props.clone()).await;

    // A backup id that does not exist: refused, saying which property, and nothing made.
    let missing = props_with(
        b.props(),
        &[("RestoreFromBackupId", "5e1d2c3b-0000-no-such-backup")],
    );
    let refused = cfn.create(LOGICAL, missing.clone()).await;
    assert_eq!(refused.status, "FAILED");
    assert!(
        refused.reason.starts_with("RestoreFromBackupId"),
        "{}",
        refused.reason
    );
    b.conclude(&cfn, &refused, missing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_is_refused_without_allow_replacement_and_its_clean_up_removes_only_the_old_cluster()
 {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let old_props = b.props();
    let created = cfn.create(LOGICAL, old_props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    let old_id = created.physical_id.clone();
    let new_props = props_with(
        old_props.clone(),
        &[
            ("ClusterName", "fs-demo-2"),
            ("EksClusterName", "replacement-eks"),
        ],
    );
    let refused = cfn
        .update(LOGICAL, &old_id, new_props.clone(), old_props.clone())
        .await;
    assert_eq!(refused.status, "FAILED");
    assert!(
        refused.reason.contains("ClusterName") && refused.reason.contains("AllowReplacement"),
        "{}",
        refused.reason
    );
    assert_eq!(b.made_by_the_function().await.len(), 1);

    // Allowed, but the same EKS cluster: refused before anything is made.
    let same_eks = props_with(
        old_props.clone(),
        &[("ClusterName", "fs-demo-2"), ("AllowReplacement", "true")],
    );
    let refused = cfn
        .update(LOGICAL, &old_id, same_eks, old_props.clone())
        .await;
    assert_eq!(refused.status, "FAILED");
    assert!(
        refused.reason.contains("EksClusterName"),
        "{}",
        refused.reason
    );
    assert_eq!(b.made_by_the_function().await.len(), 1);

    let new_props = props_with(new_props, &[("AllowReplacement", "true")]);
    let replaced = cfn
        .update(LOGICAL, &old_id, new_props.clone(), old_props.clone())
        .await;
    assert!(replaced.is_success(), "{}", replaced.reason);
    let new_id = replaced.physical_id.clone();
    assert_ne!(new_id, old_id);
    assert_eq!(replaced.attr("State"), "running");
    // CloudFormation's clean-up: the old id with the old properties.
    let cleaned = cfn.delete(LOGICAL, &old_id, old_props).await;
    assert!(cleaned.is_success(), "{}", cleaned.reason);
    let clusters = b.clusters().await;
    assert_eq!(clusters[&old_id]["state"], "terminated");
    assert_eq!(clusters[&new_id]["state"], "running");
    // The old cluster was backed up first (OnDelete's default), the new one not.
    let backed_up: Vec<Value> = b
        .double_backups()
        .await
        .values()
        .map(|b| b["clusterId"].clone())
        .collect();
    assert_eq!(backed_up, [json!(old_id)]);
    b.conclude(&cfn, &replaced, new_props).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marker_delete_still_backs_up_and_removes_the_cluster_by_ownership() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let cfn = b.player().await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let id = created.physical_id.clone();
    // The Create's answer was lost: the rollback's Delete carries the marker.
    let lost = Answer {
        physical_id: format!("{}{LOGICAL}:lost", custom_resource::FAILED_CREATE_PREFIX),
        ..created
    };
    b.conclude(&cfn, &lost, b.props()).await;
    let backed_up: Vec<Value> = b
        .double_backups()
        .await
        .values()
        .map(|b| b["clusterId"].clone())
        .collect();
    assert_eq!(backed_up, [json!(id)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollback_of_a_create_whose_cluster_never_started_takes_no_backup() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(
            json!({"fail_next_with": "no capacity for m5.2xlarge", "leave_ecr_repos": true}),
        )
        .await;
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, b.props()).await;
    assert_eq!(failed.status, "FAILED");
    b.conclude(&cfn, &failed, b.props()).await;
    assert_eq!(b.requests_to("POST", "/api/backups").await, 0);
    assert!(b.double_backups().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_still_removes_the_cluster_of_a_failed_create_which_never_ran() {
    let b = bench(Duration::from_secs(30)).await;
    b.control
        .hopsworks_behaviour(
            json!({"fail_next_with": "no capacity for m5.2xlarge", "leave_ecr_repos": true}),
        )
        .await;
    let props = props_with(b.props(), &[("OnDelete", "retain")]);
    let cfn = b.player().await;
    let failed = cfn.create(LOGICAL, props.clone()).await;
    assert_eq!(failed.status, "FAILED");
    assert_ne!(failed.physical_id, "", "{}", failed.reason);
    // The rollback's Delete: the cluster in error never ran, so retain keeps nothing.
    b.conclude(&cfn, &failed, props).await;
    assert!(b.double_backups().await.is_empty());
}
