//! The EksAccess function, compiled, behind the Runtime API, against moto + the EKS access-entry
//! shim + the Kubernetes API server double, with CloudFormation played over HTTP.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::control::Control;
use system_tests::faults::{Fault, FaultProxy};
use system_tests::kube::{KubeAs, spawn_writers};
use system_tests::lambda::LambdaFunction;

const TYPE: &str = "Custom::EksAccess";
const LOGICAL: &str = "EksAccess";
/// The id CloudFormation's rollback Delete carries after a Create answered without one.
const MARKER: &str = "failed-create:EksAccess:1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b";
/// `Owner::key()` of the Player's stack and LOGICAL.
const OWNER_KEY: &str = "hopsworks-eks/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f/EksAccess";

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

    fn id(&self, cluster: &str, method: &str) -> String {
        format!("eks-access:{cluster}:{method}")
    }

    async fn data(&self, cluster: &str) -> Value {
        self.control.aws_auth(cluster).await["data"].clone()
    }

    async fn clear_kube_faults(&self, cluster: &str) {
        let url = format!(
            "{}/kube/{cluster}/faults",
            self.aws.seeded.control_endpoint.trim_end_matches('/')
        );
        let response = reqwest::Client::new().delete(url).send().await;
        assert!(response.is_ok_and(|r| r.status().is_success()));
    }

    fn access_props(&self) -> Value {
        let s = &self.aws.seeded;
        json!({"ClusterName": s.access_cluster.name, "RoleArn": s.hopsworks.role_arn})
    }

    /// `{"tags", "policies"}` of the access entry for the Hopsworks role, or null.
    async fn hopsworks_entry(&self) -> Value {
        let s = &self.aws.seeded;
        self.aws
            .query(&format!(
                r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
try:
    e = eks.describe_access_entry(clusterName="{cluster}", principalArn="{role}")["accessEntry"]
    p = eks.list_associated_access_policies(clusterName="{cluster}", principalArn="{role}")
    print(json.dumps({{"tags": e.get("tags", {{}}), "username": e.get("username"),
                      "policies": [x["policyArn"].split("/")[-1] for x in p["associatedAccessPolicies"]]}}))
except eks.exceptions.ResourceNotFoundException:
    print("null")
"#,
                cluster = s.access_cluster.name,
                role = s.hopsworks.role_arn
            ))
            .await
    }

    /// An access entry for the Hopsworks role made outside the stack, without any policy.
    async fn entry_made_before_the_stack(&self) {
        let s = &self.aws.seeded;
        let made = self
            .aws
            .query(&format!(
                r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
eks.create_access_entry(clusterName="{cluster}", principalArn="{role}", username="hopsworks")
print(json.dumps({{"ok": True}}))
"#,
                cluster = s.access_cluster.name,
                role = s.hopsworks.role_arn
            ))
            .await;
        assert_eq!(made["ok"], true);
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
    b.entry_made_before_the_stack().await;
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

// --- Issue 11: nothing left behind --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_auth_write_whose_answer_is_lost_is_read_back_and_the_create_succeeds() {
    let b = bench().await;
    let before = b.data(b.cluster()).await;
    // The PUT is stored, then the connection closes before the answer.
    b.control
        .fault(
            b.cluster(),
            json!({"kind": "drop", "method": "PUT", "path_contains": "aws-auth"}),
        )
        .await;
    b.control.clear_kube_requests(b.cluster()).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.physical_id, b.id(b.cluster(), "aws-auth"));
    let role = &b.aws.seeded.hopsworks.role_arn_without_path;
    let text = b.map_roles(b.cluster()).await;
    assert_eq!(text.matches(role.as_str()).count(), 1, "{text}");
    assert_eq!(b.writes(b.cluster()).await, 1, "the write was sent again");
    // The same Create again (a duplicate delivery, a retry) converges: ours is there.
    let again = cfn.create(LOGICAL, b.props()).await;
    assert!(again.is_success(), "{}", again.reason);
    assert_eq!(again.physical_id, created.physical_id);
    assert_eq!(b.writes(b.cluster()).await, 1);

    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(b.data(b.cluster()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_auth_write_answered_too_late_is_read_back_within_the_time_left() {
    let b = bench().await;
    let before = b.data(b.cluster()).await;
    // Stored at once, answered after 45 s: past the function's 30 s.
    b.control
        .fault(
            b.cluster(),
            json!({"kind": "late", "seconds": 45, "method": "PUT", "path_contains": "aws-auth"}),
        )
        .await;
    let cfn = Player::new(&b.function, TYPE).await;
    let started = Instant::now();
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.physical_id, b.id(b.cluster(), "aws-auth"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(b.data(b.cluster()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_failing_after_its_aws_auth_write_answers_its_id_and_the_rollback_removes_the_entry()
 {
    let b = bench().await;
    let before = b.control.aws_auth(b.cluster()).await;
    // The PUT is stored but answered late, and the read that would confirm it hangs too.
    b.control
        .fault(
            b.cluster(),
            json!({"kind": "late", "seconds": 45, "method": "PUT", "path_contains": "aws-auth"}),
        )
        .await;
    b.control
        .fault(
            b.cluster(),
            json!({"kind": "delay", "seconds": 60, "method": "GET", "path_contains": "aws-auth", "skip": 1}),
        )
        .await;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert_failed(&created, "did not answer a GET of aws-auth");
    assert_eq!(
        created.physical_id,
        b.id(b.cluster(), "aws-auth"),
        "the FAILED answer must carry the id of what was written"
    );
    assert!(
        b.map_roles(b.cluster())
            .await
            .contains(&b.aws.seeded.hopsworks.role_arn_without_path),
        "the write was stored"
    );

    // CloudFormation's rollback: Delete with the id the FAILED answer carried.
    b.clear_kube_faults(b.cluster()).await;
    let rollback = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    let after = b.control.aws_auth(b.cluster()).await;
    assert_eq!(after["data"], before["data"], "aws-auth is not as before");
    assert_eq!(
        after["metadata"].get("annotations"),
        before["metadata"].get("annotations")
    );
    assert_eq!(b.hopsworks(b.cluster()).whoami().await, Err(401));

    // The next stack on this cluster is not refused as "already used".
    let mut next = Player::new(&b.function, TYPE).await;
    next.stack_id =
        "arn:aws:cloudformation:us-east-2:123456789012:stack/hopsworks-next/0b1c2d3e".to_owned();
    let again = next.create(LOGICAL, b.props()).await;
    assert!(again.is_success(), "{}", again.reason);
    let gone = next.delete(LOGICAL, &again.physical_id, b.props()).await;
    assert!(gone.is_success(), "{}", gone.reason);
    assert_eq!(
        b.control.aws_auth(b.cluster()).await["data"],
        before["data"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_the_failed_create_marker_removes_what_the_stack_owns() {
    let b = bench().await;
    let before = b.data(b.cluster()).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    // As an earlier release left it after a lost answer: its owner key, no restore record.
    let mut object = b.control.aws_auth(b.cluster()).await;
    let legacy = format!("{}#{LOGICAL}", cfn.stack_id);
    let mapping = json!({legacy: {"rolearn": b.aws.seeded.hopsworks.role_arn_without_path,
                                  "username": "hopsworks", "groups": ["system:masters"]}});
    object["metadata"]["annotations"] = json!({eks_access::OWNERS_ANNOTATION: mapping.to_string()});
    b.control.put_aws_auth(b.cluster(), object).await;

    let rollback = cfn.delete(LOGICAL, MARKER, b.props()).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    assert_eq!(rollback.physical_id, MARKER);
    assert_eq!(b.data(b.cluster()).await, before);
    let annotations = b.control.aws_auth(b.cluster()).await["metadata"]["annotations"].clone();
    assert!(
        annotations.get(eks_access::OWNERS_ANNOTATION).is_none(),
        "{annotations}"
    );

    // A marker Delete after a Create that failed on its input, or could not map at all, succeeds.
    let s = &b.aws.seeded;
    let mismatch = json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.role_arn,
                          "AccessMethod": "access-entry"});
    let no_kube_rights = json!({"ClusterName": s.cluster.name, "RoleArn": s.hopsworks.role_arn});
    for props in [json!({"ClusterName": "demo-eks"}), mismatch, no_kube_rights] {
        let answer = cfn.delete(LOGICAL, MARKER, props.clone()).await;
        assert!(answer.is_success(), "{props}: {}", answer.reason);
    }
    assert_eq!(b.data(b.cluster()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_access_entry_loses_the_admin_policy_the_stack_gave_it_on_delete() {
    let b = bench().await;
    b.entry_made_before_the_stack().await;
    assert_eq!(b.hopsworks_entry().await["policies"], json!([]));
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.access_props()).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("Adopted"), "true");
    let entry = b.hopsworks_entry().await;
    assert_eq!(entry["policies"], json!(["AmazonEKSClusterAdminPolicy"]));
    assert_eq!(entry["tags"][eks_access::ADMIN_POLICY_TAG], OWNER_KEY);
    assert!(
        entry["tags"].get(eks_access::OWNER_TAG).is_none(),
        "{entry}"
    );

    let deleted = cfn
        .delete(LOGICAL, &created.physical_id, b.access_props())
        .await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    let entry = b.hopsworks_entry().await;
    assert_eq!(
        entry["username"], "hopsworks",
        "the adopted entry was removed"
    );
    assert_eq!(
        entry["policies"],
        json!([]),
        "the stack's admin policy stayed"
    );
    assert_eq!(entry["tags"], json!({}));
    system_tests::faults::assert_calls_within(&b.proxy, eks_access::IAM_ACTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_entry_whose_association_answer_is_lost_gets_it_taken_back_on_rollback() {
    let b = bench().await;
    b.entry_made_before_the_stack().await;
    // Every AssociateAccessPolicy is applied, and its answer lost.
    b.proxy.inject("\"policyArn\"", Fault::DropAnswer, 10);
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.access_props()).await;
    assert_eq!(created.status, "FAILED", "{created:?}");
    assert_eq!(
        created.physical_id,
        b.id(&b.aws.seeded.access_cluster.name, "access-entry")
    );
    assert_eq!(
        b.hopsworks_entry().await["policies"],
        json!(["AmazonEKSClusterAdminPolicy"])
    );
    b.proxy.clear();
    let rollback = cfn
        .delete(LOGICAL, &created.physical_id, b.access_props())
        .await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    let entry = b.hopsworks_entry().await;
    assert_eq!(entry["username"], "hopsworks");
    assert_eq!(entry["policies"], json!([]));
    assert_eq!(entry["tags"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_spelling_of_the_role_in_aws_auth_is_refused_and_never_escalated() {
    let b = bench().await;
    let original = b.map_roles(b.cluster()).await;
    let arn = b.aws.seeded.hopsworks.role_arn_without_path.clone();
    let (prefix, name) = arn.split_at(arn.rfind('/').map_or(0, |i| i + 1));
    let shouted = format!("{prefix}{}", name.to_uppercase());
    let cfn = Player::new(&b.function, TYPE).await;
    for (key, written) in [("roleARN", arn.as_str()), ("rolearn", shouted.as_str())] {
        let entry =
            format!("- {key}: {written}\n  username: hopsworks-viewer\n  groups:\n  - viewers\n");
        b.control
            .set_map_roles(b.cluster(), &format!("{original}{entry}"))
            .await;
        // The authenticator takes it for the Hopsworks role.
        let seen = b.hopsworks(b.cluster()).whoami().await;
        assert_eq!(
            seen.as_ref().map(|(u, _)| u.as_str()),
            Ok("hopsworks-viewer")
        );
        let before = b.control.aws_auth(b.cluster()).await;
        b.control.clear_kube_requests(b.cluster()).await;

        let answer = cfn.create(LOGICAL, b.props()).await;
        assert_failed(
            &answer,
            "is already mapped in aws-auth as user \"hopsworks-viewer\"",
        );
        assert_eq!(b.writes(b.cluster()).await, 0, "{key}: {written}");
        assert_eq!(b.control.aws_auth(b.cluster()).await, before);
        let (_, groups) = b.hopsworks(b.cluster()).whoami().await.expect("mapped");
        assert!(!groups.contains(&"system:masters".to_owned()), "{groups:?}");
        let rollback = cfn.delete(LOGICAL, &answer.physical_id, b.props()).await;
        assert!(rollback.is_success(), "{}", rollback.reason);
        assert_eq!(b.control.aws_auth(b.cluster()).await, before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_an_identical_entry_someone_added_after_the_stack() {
    let b = bench().await;
    let original = b.map_roles(b.cluster()).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.props()).await;
    assert!(created.is_success(), "{}", created.reason);
    // Someone maps the same role the same way, by hand, after the stack.
    let theirs = format!(
        "- rolearn: {}\n  username: hopsworks\n  groups:\n  - system:masters\n",
        b.aws.seeded.hopsworks.role_arn_without_path
    );
    let mapped = b.map_roles(b.cluster()).await;
    b.control
        .set_map_roles(b.cluster(), &format!("{mapped}{theirs}"))
        .await;

    let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(
        b.map_roles(b.cluster()).await,
        format!("{original}{theirs}")
    );
    let (user, groups) = b
        .hopsworks(b.cluster())
        .whoami()
        .await
        .expect("still mapped");
    assert_eq!(user, "hopsworks");
    assert!(groups.contains(&"system:masters".to_owned()));
}

#[derive(serde::Deserialize)]
struct Sample {
    name: String,
    data: BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_gives_back_the_exact_bytes_of_36_real_world_maps() {
    let b = bench().await;
    let path = system_tests::workspace().join("crates/eks-access/testdata/aws-auth-maps.yaml");
    let text = std::fs::read_to_string(&path).expect("the corpus");
    let samples: Vec<Sample> = serde_saphyr::from_str(&text).expect("the corpus parses");
    assert_eq!(samples.len(), 36);
    let cfn = Player::new(&b.function, TYPE).await;
    let mut wrong = Vec::new();
    for sample in samples {
        let mut object = b.control.aws_auth(b.cluster()).await;
        object["data"] = json!(sample.data);
        b.control.put_aws_auth(b.cluster(), object).await;
        let before = b.data(b.cluster()).await;
        let created = cfn.create(LOGICAL, b.props()).await;
        assert!(created.is_success(), "{}: {}", sample.name, created.reason);
        let (_, groups) = b.hopsworks(b.cluster()).whoami().await.expect("mapped");
        assert!(
            groups.contains(&"system:masters".to_owned()),
            "{}",
            sample.name
        );
        let deleted = cfn.delete(LOGICAL, &created.physical_id, b.props()).await;
        assert!(deleted.is_success(), "{}: {}", sample.name, deleted.reason);
        let after = b.data(b.cluster()).await;
        if after != before {
            wrong.push(format!(
                "{}:\n  before {before}\n  after  {after}",
                sample.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not given back exactly:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_entry_tags_are_values_eks_accepts_naming_the_stack() {
    let b = bench().await;
    let s = &b.aws.seeded;
    // The bench's EKS refuses what EKS refuses: the earlier `<stack ARN>#<logical id>`.
    let refused = b
        .aws
        .query(&format!(
            r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
try:
    eks.create_access_entry(clusterName="{cluster}", principalArn="{role}",
                            tags={{"hopsworks.ai/eks-stack": "{stack}#EksAccess"}})
    print(json.dumps("accepted"))
except eks.exceptions.InvalidParameterException as e:
    print(json.dumps(str(e)))
"#,
            cluster = s.access_cluster.name,
            role = s.identities.viewer.role_arn,
            stack = system_tests::cloudformation::STACK_ID,
        ))
        .await;
    assert!(
        refused
            .as_str()
            .is_some_and(|m| m.contains("regular expression pattern")),
        "{refused}"
    );

    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.access_props()).await;
    assert!(created.is_success(), "{}", created.reason);
    let entry = b.hopsworks_entry().await;
    assert_eq!(entry["tags"], json!({eks_access::OWNER_TAG: OWNER_KEY}));
    let deleted = cfn
        .delete(LOGICAL, &created.physical_id, b.access_props())
        .await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert_eq!(b.hopsworks_entry().await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_use_that_describe_never_finds_is_given_up_after_three_tries() {
    let b = bench().await;
    let cluster = b.aws.seeded.access_cluster.name.clone();
    b.entry_made_before_the_stack().await;
    // EKS keeps answering CreateAccessEntry "in use" while DescribeAccessEntry finds nothing.
    b.control
        .fault(
            &cluster,
            json!({"kind": "eks", "operation": "DescribeAccessEntry", "status": 404, "times": 3}),
        )
        .await;
    b.proxy.clear();
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create(LOGICAL, b.access_props()).await;
    assert_failed(&created, "does not find it (3 times)");
    let creates = b
        .proxy
        .count(&format!("POST /clusters/{cluster}/access-entries -"));
    assert_eq!(creates, 3, "{:#?}", b.proxy.requests());
    let rollback = cfn
        .delete(LOGICAL, &created.physical_id, b.access_props())
        .await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    let entry = b.hopsworks_entry().await;
    assert_eq!(
        entry["username"], "hopsworks",
        "someone's entry was removed"
    );
    assert_eq!(entry["policies"], json!([]));
}
