//! The EksAccess function, compiled, behind the Runtime API, against moto + the EKS access-entry
//! shim + the Kubernetes API server double, with CloudFormation played over HTTP.

use serde_json::{Value, json};
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::control::Control;
use system_tests::faults::FaultProxy;
use system_tests::kube::{KubeAs, spawn_writers};
use system_tests::lambda::LambdaFunction;

const TYPE: &str = "Custom::EksAccess";
const LOGICAL: &str = "EksAccess";

struct Bench {
    aws: AwsBench,
    proxy: FaultProxy,
    control: Control,
    function: LambdaFunction,
}

async fn bench() -> Bench {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = Control::new(&aws.seeded.control_endpoint);
    let function =
        system_tests::eks_access_function(&aws.seeded, proxy.endpoint(), Duration::from_secs(30));
    Bench {
        aws,
        proxy,
        control,
        function,
    }
}

impl Bench {
    fn cluster(&self) -> &str {
        &self.aws.seeded.cluster.name
    }

    /// Properties for demo-eks (CONFIG_MAP), Kubernetes calls made as the cluster creator.
    fn props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({
            "ClusterName": s.cluster.name,
            "RoleArn": s.hopsworks.role_arn,
            "KubernetesRoleArn": s.identities.creator.role_arn,
        })
    }

    async fn map_roles(&self, cluster: &str) -> String {
        self.control.aws_auth(cluster).await["data"]["mapRoles"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn hopsworks(&self, cluster: &str) -> KubeAs {
        KubeAs::new(
            &self.aws.seeded,
            cluster,
            &self.aws.seeded.identities.hopsworks,
        )
    }

    async fn writes(&self, cluster: &str) -> usize {
        self.control
            .kube_requests(cluster)
            .await
            .iter()
            .filter(|r| r["method"] != "GET")
            .count()
    }
}

fn assert_failed(answer: &Answer, expected: &str) {
    assert_eq!(answer.status, "FAILED", "{answer:?}");
    assert!(answer.reason.contains(expected), "{}", answer.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_auth_mapping_keeps_every_other_entry_and_delete_restores_it_byte_for_byte() {
    let b = bench().await;
    let before = b.control.aws_auth(b.cluster()).await;
    let original = b.map_roles(b.cluster()).await;
    assert_eq!(b.hopsworks(b.cluster()).whoami().await, Err(401));

    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("AccessMethod"), "aws-auth");
    assert_eq!(created.attr("AuthenticationMode"), "CONFIG_MAP");
    let without_path = &b.aws.seeded.hopsworks.role_arn_without_path;
    assert_eq!(created.attr("RoleArn"), without_path);

    let after = b.map_roles(b.cluster()).await;
    assert!(
        after.starts_with(&original),
        "other entries were rewritten:\n{after}"
    );
    assert!(after.contains(without_path.as_str()));
    assert!(
        !after.contains(&b.aws.seeded.hopsworks.role_path),
        "the IAM path was kept"
    );
    let stored = b.control.aws_auth(b.cluster()).await;
    assert_eq!(stored["data"]["mapUsers"], before["data"]["mapUsers"]);
    // The mapped role now reaches the cluster as the seed guide wants it.
    let (user, groups) = b.hopsworks(b.cluster()).whoami().await.expect("mapped");
    assert_eq!(user, "hopsworks");
    assert!(groups.contains(&"system:masters".to_owned()), "{groups:?}");

    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    let restored = b.control.aws_auth(b.cluster()).await;
    assert_eq!(
        restored["data"], before["data"],
        "aws-auth is not as before"
    );
    let annotations = restored["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(!annotations.contains_key(eks_access::OWNERS_ANNOTATION));
    assert_eq!(b.hopsworks(b.cluster()).whoami().await, Err(401));
    assert!(
        !b.function.logs().iter().any(|l| l.contains("k8s-aws-v1.")),
        "a token was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_mapping_is_a_no_op_of_three_calls_and_survives_delete() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let entry = format!(
        "- rolearn: {}\n  username: hopsworks\n  groups:\n  - system:masters\n",
        s.hopsworks.role_arn_without_path
    );
    let premapped = format!("{}{entry}", b.map_roles(b.cluster()).await);
    b.control.set_map_roles(b.cluster(), &premapped).await;
    b.control.clear_kube_requests(b.cluster()).await;
    b.proxy.clear();

    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    // The whole no-op: DescribeCluster, AssumeRole (for KubernetesRoleArn), GET aws-auth.
    assert_eq!(b.proxy.requests().len(), 2, "{:#?}", b.proxy.requests());
    let kube = b.control.kube_requests(b.cluster()).await;
    assert_eq!(kube.len(), 1, "{kube:#?}");
    assert_eq!(kube[0]["method"], "GET");

    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(deleted.is_success());
    assert_eq!(
        b.map_roles(b.cluster()).await,
        premapped,
        "a mapping made before the stack was removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_aws_auth_fails_and_stays_byte_for_byte_unchanged() {
    let b = bench().await;
    let broken =
        "- groups:\n  - system:bootstrappers\n rolearn: arn:aws:iam::123456789012:role/nodes\n";
    b.control.set_map_roles(b.cluster(), broken).await;
    let before = b.control.aws_auth(b.cluster()).await;
    b.control.clear_kube_requests(b.cluster()).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let answer = cfn.create(LOGICAL, b.props()).await;
    assert_failed(
        &answer,
        "aws-auth in kube-system cannot be read, and nothing was written",
    );
    assert!(
        answer.reason.contains("not valid YAML"),
        "{}",
        answer.reason
    );
    assert_eq!(b.control.aws_auth(b.cluster()).await, before);
    assert_eq!(b.writes(b.cluster()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_without_kubernetes_rights_is_told_which_and_the_ways_out() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let cfn = Player::new(&b.function, TYPE).await;
    // Not mapped at all: 401.
    let unmapped = json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.role_arn});
    let answer = cfn.create(LOGICAL, unmapped).await;
    assert_failed(&answer, "401 Unauthorized");
    assert!(
        answer.reason.contains("hopsworks-eks-access-function"),
        "{}",
        answer.reason
    );
    for way_out in ["API_AND_CONFIG_MAP", "KubernetesRoleArn", "system:masters"] {
        assert!(answer.reason.contains(way_out), "{}", answer.reason);
    }
    // Mapped without rights: 403.
    let viewer = json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.role_arn,
                        "KubernetesRoleArn": s.identities.viewer.role_arn});
    let answer = cfn.create(LOGICAL, viewer).await;
    assert_failed(&answer, "403 Forbidden");
    assert_eq!(b.writes(b.cluster()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cluster_ca_fails_before_anything_is_sent() {
    let b = bench().await;
    let wrong = b.aws.seeded.wrong_ca_pem.clone();
    b.control
        .set_certificate_authority(b.cluster(), &wrong)
        .await;
    b.control.clear_kube_requests(b.cluster()).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let answer = cfn.create(LOGICAL, b.props()).await;
    assert_failed(
        &answer,
        "cannot reach the Kubernetes API of cluster demo-eks",
    );
    assert!(b.control.kube_requests(b.cluster()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_moves_the_entry_and_dry_run_writes_nothing() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let mut moved = b.props();
    moved["RoleArn"] = json!(s.identities.function.role_arn);
    moved["Username"] = json!("hopsworks-2");

    moved["DryRun"] = json!("true");
    let before = b.control.aws_auth(b.cluster()).await;
    let dry = cfn
        .update(LOGICAL, &created.physical_id, moved.clone(), b.props())
        .await;
    assert!(dry.is_success(), "{}", dry.reason);
    assert!(
        dry.attr("Change")
            .contains("remove this stack's earlier entry"),
        "{}",
        dry.attr("Change")
    );
    assert_eq!(
        b.control.aws_auth(b.cluster()).await,
        before,
        "dry run wrote"
    );

    moved["DryRun"] = json!("false");
    let updated = cfn
        .update(LOGICAL, &created.physical_id, moved.clone(), b.props())
        .await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(
        updated.physical_id, created.physical_id,
        "an update replaced the resource"
    );
    let text = b.map_roles(b.cluster()).await;
    assert!(!text.contains(&s.hopsworks.role_arn_without_path), "{text}");
    assert!(text.contains(&s.identities.function.role_arn), "{text}");

    let deleted = cfn.delete(LOGICAL, &created.physical_id, moved).await;
    assert!(deleted.is_success());
    assert!(
        !b.map_roles(b.cluster())
            .await
            .contains(&s.identities.function.role_arn)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_eks_cluster_serves_one_hopsworks_stack() {
    let b = bench().await;
    let first = Player::new(&b.function, TYPE).await;
    let created = first.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let mut second = Player::new(&b.function, TYPE).await;
    second.stack_id =
        "arn:aws:cloudformation:us-east-2:123456789012:stack/other-hopsworks/0b1c".to_owned();
    let answer = second.create(LOGICAL, b.props()).await;
    assert_failed(&answer, "already used by Hopsworks stack hopsworks-eks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_entry() {
    let b = bench().await;
    let s = b.aws.seeded.clone();
    let original = b.map_roles(b.cluster()).await;
    // Three forced conflicts on top of the real races.
    b.control
        .fault(b.cluster(), json!({"kind": "conflict", "times": 3}))
        .await;
    let writers = spawn_writers(&s, 0..24);
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    for w in writers {
        w.await.expect("writer");
    }
    assert!(created.is_success(), "{}", created.reason);
    let text = b.map_roles(b.cluster()).await;
    assert!(text.starts_with(&original));
    for i in 0..24 {
        assert!(
            text.contains(&format!("role/writer-{i}\n")),
            "writer {i} lost:\n{text}"
        );
    }
    assert!(text.contains(&s.hopsworks.role_arn_without_path));

    // Delete while others write: only ours goes.
    let writers = spawn_writers(&s, 24..44);
    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    for w in writers {
        w.await.expect("writer");
    }
    assert!(deleted.is_success(), "{}", deleted.reason);
    let text = b.map_roles(b.cluster()).await;
    assert!(!text.contains(&s.hopsworks.role_arn_without_path));
    for i in 0..44 {
        assert!(
            text.contains(&format!("role/writer-{i}\n")),
            "writer {i} lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_entries_are_used_when_the_cluster_allows_them() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let cluster = &s.access_cluster.name;
    let props = json!({"ClusterName": cluster, "RoleArn": s.hopsworks.role_arn});
    let before_aws_auth = b.control.aws_auth(cluster).await;
    assert_eq!(b.hopsworks(cluster).whoami().await, Err(401));

    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("AccessMethod"), "access-entry");
    assert_eq!(created.attr("Adopted"), "false");
    // Access entries take the role ARN as IAM has it, path included.
    assert_eq!(created.attr("RoleArn"), s.hopsworks.role_arn);
    let (user, _) = b
        .hopsworks(cluster)
        .whoami()
        .await
        .expect("the role reaches the cluster");
    assert_eq!(user, "hopsworks");
    assert_eq!(
        b.control.aws_auth(cluster).await,
        before_aws_auth,
        "aws-auth was touched"
    );

    let deleted = cfn.delete(LOGICAL, &created.physical_id, props).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(b.hopsworks(cluster).whoami().await, Err(401));
    // The creator's own entry is still there.
    let creator = KubeAs::new(s, cluster, &s.identities.creator);
    assert!(creator.whoami().await.is_ok());
    system_tests::faults::assert_calls_within(&b.proxy, eks_access::IAM_ACTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_entry_made_before_the_stack_is_adopted_and_left_in_place() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let cluster = s.access_cluster.name.clone();
    let made = b
        .aws
        .query(&format!(
            r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
eks.create_access_entry(clusterName="{cluster}", principalArn="{role}", username="hopsworks")
print(json.dumps({{"ok": True}}))
"#,
            role = s.hopsworks.role_arn
        ))
        .await;
    assert_eq!(made["ok"], true);
    let props = json!({"ClusterName": cluster, "RoleArn": s.hopsworks.role_arn});
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, props.clone()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("Adopted"), "true");
    assert!(b.hopsworks(&cluster).whoami().await.is_ok());
    let deleted = cfn.delete(LOGICAL, &created.physical_id, props).await;
    assert!(deleted.is_success());
    assert!(
        b.hopsworks(&cluster).whoami().await.is_ok(),
        "an entry made before the stack was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_mode_mismatches_fail_without_calls() {
    let b = bench().await;
    let s = &b.aws.seeded;
    let cfn = Player::new(&b.function, TYPE).await;
    let answer = cfn
        .create(
            LOGICAL,
            json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.instance_profile_arn}),
        )
        .await;
    assert_failed(&answer, "is not an IAM role ARN");
    assert!(b.proxy.requests().is_empty());
    let answer = cfn
        .create(
            LOGICAL,
            json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.role_arn, "AccessMethod": "access-entry"}),
        )
        .await;
    assert_failed(
        &answer,
        "uses authentication mode CONFIG_MAP, which has no access entries",
    );
    // The rollback Delete of the failed Create touches nothing.
    let rollback = cfn.delete(LOGICAL, &answer.physical_id, json!({})).await;
    assert!(rollback.is_success());
}
