//! The HopsworksCluster function, compiled, behind the Runtime API (continuing long waits in new
//! invocations through the bench's Lambda Invoke), against the Hopsworks.ai double, Secrets
//! Manager and ECR in moto, with CloudFormation played over HTTP.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::control::Control;
use system_tests::faults::FaultProxy;
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
        let s = &self.aws.seeded;
        json!({
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
        let answer = cfn.create(LOGICAL, props).await;
        assert_eq!(answer.status, "FAILED");
        assert!(answer.reason.contains(expected), "{}", answer.reason);
        assert!(answer.reason.contains(arn.as_str()), "{}", answer.reason);
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
    let answer = cfn.create(LOGICAL, props).await;
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
    other["WorkerCount"] = json!("3");
    let refused = cfn
        .update(LOGICAL, &created.physical_id, other, in_place)
        .await;
    assert!(
        refused.reason.starts_with("WorkerCount cannot change"),
        "{}",
        refused.reason
    );
    let clusters = b.control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
}
