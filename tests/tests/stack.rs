//! The whole stack: `templates/template.yaml`, expanded by the real SAM translator, deployed by the
//! bench's engine (custom resources as compiled functions; IAM, Logs, EC2 and EKS in moto), updated
//! and deleted.

use serde_json::{Value, json};
use system_tests::kube::KubeAs;
use system_tests::stack::{self, Stack, StackBench};

async fn template() -> Value {
    Stack::expand(&system_tests::workspace().join("templates/template.yaml"))
        .await
        .expect("the translator expands the template")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_does_the_guide_and_its_delete_leaves_the_account_as_before() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let before = bench.state().await;
    let s = aws.seeded.clone();

    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");

    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    assert_eq!(outputs["VpcId"], s.cluster.vpc_id);
    assert_eq!(
        outputs["HopsworksRoleArn"],
        s.hopsworks.role_arn_without_path
    );
    assert!(
        outputs["HopsworksClusterUrl"].starts_with("https://"),
        "{outputs:?}"
    );
    let during = bench.state().await;
    // Seed step 2: the instance-profile role got its policy; step 5: the cross-account role too;
    // step 4: two more ingress rules; step 3: the role reaches the cluster; step 6: ECR repos.
    assert_ne!(
        during["aws"]["role_policies"],
        before["aws"]["role_policies"]
    );
    assert_ne!(
        during["aws"]["cross_account_policies"],
        before["aws"]["cross_account_policies"]
    );
    let rules = |v: &Value| v["aws"]["ingress"].as_array().map_or(0, Vec::len);
    assert_eq!(rules(&during), rules(&before) + 2);
    let hopsworks = KubeAs::new(&s, &s.cluster.name, &s.identities.hopsworks);
    assert!(hopsworks.whoami().await.is_ok());

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
    assert_eq!(hopsworks.whoami().await, Err(401));
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(
        clusters.len(),
        1,
        "one Hopsworks cluster was made: {clusters:?}"
    );
    assert_eq!(clusters[0]["state"], "terminated", "{clusters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_midway_rolls_back_cleanly() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    // The Hopsworks cluster, the last resource, ends in an error state.
    control
        .hopsworks_behaviour(json!({"fail_next_with": "no capacity for m5.2xlarge"}))
        .await;
    let before = bench.state().await;
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&aws.seeded))
        .expect("parameters");
    let reason = deployed.create().await.expect_err("the create fails");
    assert!(reason.contains("no capacity for m5.2xlarge"), "{reason}");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before, "the rollback left changes");
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(
        clusters.len(),
        1,
        "one Hopsworks cluster was made: {clusters:?}"
    );
    assert_eq!(clusters[0]["state"], "terminated", "{clusters:?}");
}

fn changes(pairs: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

/// Another source for ports 80/443 than the VPC (the default), outside the VPC's CIDR.
const OFFICE_CIDR: &str = "192.0.2.0/24";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_moves_the_ingress_keeps_the_hopsworks_cluster_and_delete_still_cleans_up() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    let before = bench.state().await;
    let rules_before = stack::ingress_rules(aws).await;
    let s = aws.seeded.clone();
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    let cluster_id = deployed.physical_id("HopsworksCluster").map(str::to_owned);
    let from_vpc = stack::ingress_rules(aws).await;
    assert!(
        from_vpc.contains(&format!("443 {}", s.cluster.vpc_cidr)),
        "{from_vpc:?}"
    );

    deployed
        .update(changes(&[
            ("IngressSource", OFFICE_CIDR),
            ("HopsworksPollIntervalSeconds", "2"),
            ("LogRetentionDays", "90"),
        ]))
        .await
        .expect("the stack is updated");

    // The two rules moved from the VPC to the new source; every other rule is as it was.
    let moved = stack::ingress_rules(aws).await;
    let mut expected = rules_before.clone();
    expected.extend(["80", "443"].map(|p| format!("{p} {OFFICE_CIDR}")));
    expected.sort();
    assert_eq!(moved, expected);
    // The Hopsworks cluster changed in place: same id, still the only one, still running.
    assert_eq!(
        deployed.physical_id("HopsworksCluster").map(str::to_owned),
        cluster_id
    );
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0]["state"], "running", "{clusters:?}");
    let retention = stack::log_retention(aws).await;
    assert_eq!(retention.len(), 4, "{retention:?}");
    assert!(retention.values().all(|d| *d == 90), "{retention:?}");
    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    assert_eq!(outputs["VpcId"], s.cluster.vpc_id);

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
    assert_eq!(stack::ingress_rules(aws).await, rules_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_fails_midway_rolls_back_to_the_stack_as_it_was() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    let before = bench.state().await;
    let s = aws.seeded.clone();
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    let rules = stack::ingress_rules(aws).await;
    let retention = stack::log_retention(aws).await;
    // The rules' ids change when they move back; everything else reads as before.
    let outputs_but_rule_ids = |stack: &Stack| {
        let mut outputs = stack.outputs().expect("outputs");
        outputs.retain(|(k, _)| k != "IngressRuleIds");
        outputs
    };
    let outputs = outputs_but_rule_ids(&deployed);

    // The ingress and the log groups change first; then the Hopsworks cluster refuses a new
    // head disk (that would be another cluster, and AllowReplacement is false), and
    // CloudFormation rolls everything back.
    let reason = deployed
        .update(changes(&[
            ("IngressSource", OFFICE_CIDR),
            ("LogRetentionDays", "90"),
            ("HopsworksHeadDiskSize", "1024"),
        ]))
        .await
        .expect_err("the update fails");
    assert!(
        reason.starts_with("HeadDiskSize cannot change"),
        "the update failed for another reason, or its rollback failed: {reason}"
    );
    assert_eq!(stack::ingress_rules(aws).await, rules);
    assert_eq!(stack::log_retention(aws).await, retention);
    assert_eq!(outputs_but_rule_ids(&deployed), outputs);
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0]["state"], "running", "{clusters:?}");

    // The stack is whole again: its Delete leaves the account as it was.
    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
}

const NEW_CLUSTER: &str = "hopsworks-new-eks";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_cluster_the_stack_creates_one_uses_it_and_deletes_it_last() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    let before = bench.state().await;
    let account_before = stack::networks_and_clusters(aws).await;
    let s = aws.seeded.clone();
    let mut parameters = stack::demo_parameters(&s);
    parameters.extend(changes(&[
        ("EksClusterName", NEW_CLUSTER),
        ("CreateEksCluster", "true"),
        // A new cluster has access entries: no role is needed for aws-auth.
        ("KubernetesRoleArn", ""),
    ]));
    let mut deployed = bench
        .stack(template().await, parameters)
        .expect("parameters");
    deployed.create().await.expect("the stack is created");

    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    assert_ne!(outputs["VpcId"], s.cluster.vpc_id, "{outputs:?}");
    assert_eq!(outputs["AuthenticationMode"], "API_AND_CONFIG_MAP");
    assert_eq!(outputs["AccessMethod"], "access-entry");
    assert_eq!(
        outputs["PublicSubnetIds"].split(',').count(),
        2,
        "{outputs:?}"
    );
    assert_eq!(outputs["SubnetIds"].split(',').count(), 4, "{outputs:?}");
    // The ingress rules went onto the new cluster's security group, from the new VPC.
    let group = &outputs["ClusterSecurityGroupId"];
    assert_eq!(
        stack::ingress_rules_of(aws, group).await,
        [
            format!("-1 {group}"),
            "443 10.0.0.0/16".to_owned(),
            "80 10.0.0.0/16".to_owned()
        ]
    );
    let hopsworks = KubeAs::described(aws, NEW_CLUSTER, &s.identities.hopsworks).await;
    assert!(hopsworks.whoami().await.is_ok());
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    assert_eq!(clusters[0]["aws"]["eksClusterName"], NEW_CLUSTER);
    // The seeded cluster was not touched.
    assert_eq!(bench.state().await["aws_auth"], before["aws_auth"]);

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
    assert_eq!(stack::networks_and_clusters(aws).await, account_before);
}

/// Nothing the stack's functions called was denied, and no update's cleanup left anything behind.
fn assert_no_call_denied(stack: &Stack) {
    let denied = stack.denied();
    assert!(
        denied.is_empty(),
        "the functions' roles denied these calls: {denied:#?}"
    );
    assert!(
        stack.leaked().is_empty(),
        "the cleanup left these behind: {:?}",
        stack.leaked()
    );
}

/// A second EKS cluster of the account (access entries) and its cluster security group as they
/// are before the stack: to check the stack leaves them so.
async fn other_cluster(bench: &StackBench) -> (String, Vec<String>, Vec<String>) {
    let other = &bench.aws.seeded.access_cluster;
    (
        other.name.clone(),
        stack::access_entries(&bench.aws, &other.name).await,
        stack::ingress_rules_of(&bench.aws, &other.cluster_security_group_id).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_to_another_cluster_removes_access_and_ports_from_the_first_with_no_call_denied() {
    let bench = StackBench::start().await;
    let aws = &bench.aws;
    let s = aws.seeded.clone();
    let group = &s.access_cluster.cluster_security_group_id;
    let before = bench.state().await;
    let (other, entries_before, rules_before) = other_cluster(&bench).await;
    // A Hopsworks cluster cannot move to another EKS cluster (its Update refuses): none here.
    let mut parameters = stack::demo_parameters(&s);
    parameters.extend(changes(&[("CreateHopsworksCluster", "false")]));
    let mut deployed = bench
        .stack(template().await, parameters)
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    assert_ne!(bench.state().await["aws_auth"], before["aws_auth"]);

    // The roles are updated to the new cluster first; then the cleanup deletes the old mapping
    // and the old rules, under the updated roles.
    deployed
        .update(changes(&[("EksClusterName", &other)]))
        .await
        .expect("the stack is updated");
    assert_no_call_denied(&deployed);
    let now = bench.state().await;
    assert_eq!(
        now["aws_auth"], before["aws_auth"],
        "the first cluster's aws-auth"
    );
    assert_eq!(
        now["aws"]["ingress"], before["aws"]["ingress"],
        "the first cluster's security group"
    );
    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    assert_eq!(outputs["EksCluster"], other);
    assert_eq!(outputs["AccessMethod"], "access-entry");
    let hopsworks = KubeAs::new(&s, &other, &s.identities.hopsworks);
    assert!(hopsworks.whoami().await.is_ok());
    let mut expected = rules_before.clone();
    expected.extend(["80", "443"].map(|p| format!("{p} {}", s.cluster.vpc_cidr)));
    expected.sort();
    assert_eq!(stack::ingress_rules_of(aws, group).await, expected);

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
    assert_eq!(stack::access_entries(aws, &other).await, entries_before);
    assert_eq!(stack::ingress_rules_of(aws, group).await, rules_before);
    assert_eq!(hopsworks.whoami().await, Err(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_move_to_another_cluster_rolls_back_with_no_call_denied() {
    let bench = StackBench::start().await;
    let aws = &bench.aws;
    let s = aws.seeded.clone();
    let group = &s.access_cluster.cluster_security_group_id;
    let before = bench.state().await;
    let (other, entries_before, rules_before) = other_cluster(&bench).await;
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    let created = bench.state().await;

    // Discovery, access and ingress move to the other cluster; then the Hopsworks cluster refuses
    // to move, and the rollback deletes the new mapping and rules under the restored roles.
    let reason = deployed
        .update(changes(&[("EksClusterName", &other)]))
        .await
        .expect_err("the Hopsworks cluster refuses the move");
    assert!(
        reason.contains("cannot change on an existing Hopsworks cluster"),
        "the update failed for another reason, or its rollback failed: {reason}"
    );
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, created);
    assert_eq!(stack::access_entries(aws, &other).await, entries_before);
    assert_eq!(stack::ingress_rules_of(aws, group).await, rules_before);
    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    assert_eq!(outputs["EksCluster"], s.cluster.name);

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_its_role_does_not_allow_fails_as_in_aws_and_is_recorded() {
    let bench = StackBench::start().await;
    let before = bench.state().await;
    let s = bench.aws.seeded.clone();
    // ClusterDiscovery's role without its eks:DescribeCluster statement.
    let mut template = template().await;
    let policies = template["Resources"]["ClusterDiscoveryRole"]["Properties"]["Policies"]
        .as_array_mut()
        .expect("the role's policies");
    for policy in policies {
        if let Some(statements) = policy["PolicyDocument"]["Statement"].as_array_mut() {
            statements.retain(|st| st["Action"] != "eks:DescribeCluster");
        }
    }
    let mut deployed = bench
        .stack(template, stack::demo_parameters(&s))
        .expect("parameters");
    let reason = deployed.create().await.expect_err("discovery is denied");
    assert!(
        reason.contains("AccessDeniedException")
            && reason.contains("is not authorized to perform: eks:DescribeCluster"),
        "the function reports the denial as AWS words it: {reason}"
    );
    let denied = deployed.denied();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0].action, "eks:DescribeCluster");
    assert_eq!(denied[0].resource, s.cluster.arn);
    assert!(
        denied[0].role_arn.contains("ClusterDiscoveryRole"),
        "{denied:#?}"
    );
    assert_eq!(bench.state().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_template_refuses_fail_before_anything_is_made() {
    let bench = StackBench::start().await;
    let before = bench.state().await;
    let s = bench.aws.seeded.clone();
    let with = |name: &str, value: &str| {
        let mut p = stack::demo_parameters(&s);
        p.insert(name.to_owned(), json!(value));
        p
    };
    for (name, value, expected) in [
        (
            "IngressSource",
            "0.0.0.0/0",
            "'IngressSource' failed to satisfy constraint",
        ),
        ("NewClusterNodeCount", "0", "'NewClusterNodeCount'"),
        (
            "AccessMethod",
            "kubectl",
            "'AccessMethod' failed to satisfy constraint",
        ),
        (
            "HopsworksApiKeySecretArn",
            "",
            "HopsworksApiKeySecretArn is required when CreateHopsworksCluster is true",
        ),
    ] {
        let refused = bench
            .stack(template().await, with(name, value))
            .err()
            .unwrap_or_else(|| panic!("{name}={value:?} was accepted"));
        assert!(refused.contains(expected), "{name}: {refused}");
    }
    // An update to a refused value fails before it changes anything, and the stack stays.
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    let during = bench.state().await;
    let refused = deployed
        .update(changes(&[("HopsworksPollIntervalSeconds", "0")]))
        .await
        .expect_err("a poll interval of 0 s is refused");
    assert!(
        refused.contains("HopsworksPollIntervalSeconds"),
        "{refused}"
    );
    assert_eq!(bench.state().await, during);
    deployed.delete().await.expect("the stack is deleted");
    assert_eq!(bench.state().await, before);
}

/// The guide's two policies (seed steps 2 and 5), as it gives them.
const SEED_INSTANCE_PROFILE_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
   "Resource": ["arn:aws:ecr:*:*:repository/filebeat", "arn:aws:ecr:*:*:repository/base"]},
  {"Effect": "Allow", "Action": ["ecr:CreateRepository", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage",
     "ecr:CompleteLayerUpload", "ecr:UploadLayerPart", "ecr:InitiateLayerUpload", "ecr:DeleteRepository",
     "ecr:BatchCheckLayerAvailability", "ecr:PutImage", "ecr:ListImages", "ecr:BatchDeleteImage",
     "ecr:GetLifecyclePolicy", "ecr:PutLifecyclePolicy"],
   "Resource": ["arn:aws:ecr:*:*:repository/*/filebeat", "arn:aws:ecr:*:*:repository/*/base"]},
  {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
  {"Effect": "Allow", "Action": "eks:DescribeCluster", "Resource": "arn:aws:eks:*:*:cluster/*"}]}"#;
const SEED_CROSS_ACCOUNT_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["ecr:DeleteRepository"],
   "Resource": ["arn:aws:ecr:*:*:repository/*/filebeat", "arn:aws:ecr:*:*:repository/*/base"]}]}"#;

/// Each (action, resource) a seed policy grants, with its wildcards filled in for this stack: the
/// stack's region and account, Hopsworks' own ECR account for its images, the Hopsworks
/// cluster's id for its repositories, the stack's EKS cluster.
fn seed_grants(
    seed: &str,
    region: &str,
    account: &str,
    cluster_id: &str,
    eks: &str,
) -> Vec<(String, String)> {
    let seed: Value = serde_json::from_str(seed).expect("the seed policy is JSON");
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut grants = Vec::new();
    for statement in seed["Statement"].as_array().expect("statements") {
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                let concrete = if resource == "*" {
                    resource.clone()
                } else if let Some(name) = resource.strip_prefix("arn:aws:ecr:*:*:repository/*/") {
                    format!("arn:aws:ecr:{region}:{account}:repository/{cluster_id}/{name}")
                } else if let Some(name) = resource.strip_prefix("arn:aws:ecr:*:*:repository/") {
                    format!("arn:aws:ecr:{region}:822623301872:repository/{name}")
                } else if resource == "arn:aws:eks:*:*:cluster/*" {
                    format!("arn:aws:eks:{region}:{account}:cluster/{eks}")
                } else {
                    panic!("a seed resource this test does not know: {resource}")
                };
                grants.push((action.clone(), concrete));
            }
        }
    }
    grants
}

fn decide(policies: &[Value], action: &str, resource: &str) -> system_tests::iam::Decision {
    let check = system_tests::iam::Check {
        action: action.to_owned(),
        resource: resource.to_owned(),
        context: Default::default(),
    };
    system_tests::iam::evaluate(policies, &check).expect("the evaluator reads the policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policies_grant_what_the_seed_grants_for_this_stack_and_less_elsewhere() {
    use system_tests::iam::Decision::{Allow, ImplicitDeny};
    let bench = StackBench::start().await;
    let s = bench.aws.seeded.clone();
    let mut deployed = bench
        .stack(template().await, stack::demo_parameters(&s))
        .expect("parameters");
    deployed.create().await.expect("the stack is created");
    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    let cluster_id = outputs["HopsworksClusterId"].clone();
    // The inline policies as IAM holds them on the two principals the guide edits.
    let documents = bench
        .aws
        .query(&format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["BENCH_ENDPOINT"])
def docs(role):
    return [iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]
print(json.dumps({{"instance_profile": docs("{role}"), "cross_account": docs("{cross}")}}))
"#,
            role = s.hopsworks.role_name,
            cross = stack::CROSS_ACCOUNT_ROLE
        ))
        .await;
    let instance_profile = documents["instance_profile"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cross_account = documents["cross_account"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(instance_profile.len(), 1, "{documents}");
    assert_eq!(cross_account.len(), 1, "{documents}");

    for (seed, policies) in [
        (SEED_INSTANCE_PROFILE_POLICY, &instance_profile),
        (SEED_CROSS_ACCOUNT_POLICY, &cross_account),
    ] {
        let grants = seed_grants(seed, &s.region, &s.account_id, &cluster_id, &s.cluster.name);
        assert!(grants.len() >= 2, "{grants:?}");
        for (action, resource) in grants {
            assert_eq!(
                decide(policies, &action, &resource),
                Allow,
                "the guide grants {action} on {resource}; the stack does not"
            );
        }
    }
    // Tighter than the guide where it can be: another account's images and clusters, another
    // region's repositories, and no more than the guide's actions on Hopsworks' own images.
    for (action, resource) in [
        (
            "eks:DescribeCluster",
            format!("arn:aws:eks:{}:210987654321:cluster/other", s.region),
        ),
        (
            "ecr:DeleteRepository",
            format!(
                "arn:aws:ecr:{}:210987654321:repository/x/filebeat",
                s.region
            ),
        ),
        (
            "ecr:PutImage",
            format!("arn:aws:ecr:{}:822623301872:repository/filebeat", s.region),
        ),
        (
            "ecr:DeleteRepository",
            format!(
                "arn:aws:ecr:{}:{}:repository/team-app",
                s.region, s.account_id
            ),
        ),
    ] {
        assert_eq!(
            decide(&instance_profile, action, &resource),
            ImplicitDeny,
            "{action} on {resource}"
        );
    }
    assert_eq!(
        decide(
            &cross_account,
            "ecr:DeleteRepository",
            &format!(
                "arn:aws:ecr:{}:{}:repository/team-app",
                s.region, s.account_id
            )
        ),
        ImplicitDeny
    );
    deployed.delete().await.expect("the stack is deleted");
}

/// The README's first-deploy path for a CONFIG_MAP cluster: a role the stack's EksAccess function
/// may assume (its trust policy names the function's role by the name CloudFormation gives it),
/// mapped as cluster admin in aws-auth before the stack exists.
async fn kubernetes_role(bench: &StackBench, trusted_pattern: &str) -> String {
    let script = format!(
        r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["BENCH_ENDPOINT"])
trust = {{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "sts:AssumeRole",
  "Principal": {{"AWS": "arn:aws:iam::{account}:root"}},
  "Condition": {{"ArnLike": {{"aws:PrincipalArn": "{trusted_pattern}"}}}}}}]}}
try:
    arn = iam.create_role(RoleName="hopsworks-eks-kubernetes", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
except iam.exceptions.EntityAlreadyExistsException:
    iam.update_assume_role_policy(RoleName="hopsworks-eks-kubernetes", PolicyDocument=json.dumps(trust))
    arn = iam.get_role(RoleName="hopsworks-eks-kubernetes")["Role"]["Arn"]
print(json.dumps(arn))
"#,
        account = bench.aws.seeded.account_id
    );
    bench
        .aws
        .query(&script)
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_cluster_works_on_the_first_deploy_with_the_documented_kubernetes_role() {
    let bench = StackBench::start().await;
    let s = bench.aws.seeded.clone();
    let account = &s.account_id;
    // Step 1: the role, trusting the stack's EksAccess function role and nothing else.
    let role = kubernetes_role(
        &bench,
        &format!(
            "arn:aws:iam::{account}:role/{}-EksAccessRole-*",
            stack::STACK_NAME
        ),
    )
    .await;
    // Step 2: mapped as cluster admin in aws-auth (what `eksctl create iamidentitymapping` does).
    let map_roles = bench.control.aws_auth(&s.cluster.name).await["data"]["mapRoles"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let entry = format!(
        "- rolearn: {role}\n  username: hopsworks-eks-stack\n  groups:\n  - system:masters\n"
    );
    bench
        .control
        .set_map_roles(&s.cluster.name, &format!("{map_roles}{entry}"))
        .await;
    let before = bench.state().await;
    // Step 3: deploy with KubernetesRoleArn; the function role it trusts exists only now.
    let mut parameters = stack::demo_parameters(&s);
    parameters.insert("KubernetesRoleArn".to_owned(), json!(role));
    parameters.insert("CreateHopsworksCluster".to_owned(), json!("false"));
    let mut deployed = bench
        .stack(template().await, parameters.clone())
        .expect("parameters");
    deployed.create().await.expect("the first deploy succeeds");
    let hopsworks = KubeAs::new(&s, &s.cluster.name, &s.identities.hopsworks);
    assert!(hopsworks.whoami().await.is_ok(), "the role was not mapped");
    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);

    // A trust policy naming another stack's function role: the Create fails saying what to
    // fix, and rolls back to the account as it was.
    kubernetes_role(
        &bench,
        &format!("arn:aws:iam::{account}:role/other-stack-EksAccessRole-*"),
    )
    .await;
    let mut refused = bench
        .stack(template().await, parameters)
        .expect("parameters");
    let reason = refused
        .create()
        .await
        .expect_err("the role does not trust this stack");
    assert!(
        reason.contains("must trust this function's role"),
        "{reason}"
    );
    assert_eq!(bench.state().await, before, "the rollback left changes");
}

/// A customer-managed key of the bench's account (the ARN is all the template needs).
const KMS_KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// The role policy named `name` of `role`, as the stack would put it now (None: not there).
fn resolved_role_policy(stack: &Stack, role: &str, name: &str) -> Option<Value> {
    let policies = &stack.template()["Resources"][role]["Properties"]["Policies"];
    policies
        .as_array()
        .into_iter()
        .flatten()
        // write-logs names its log group, which is not made yet: only the others resolve.
        .filter_map(|entry| stack.resolved(&json!([entry])).ok())
        .filter_map(|resolved| resolved.get(0).cloned())
        .find(|policy| policy["PolicyName"] == name)
}

/// Without the new parameters the EksAccess function is in no VPC and no role holds network or
/// key rights; with them, exactly those, and the key only through Secrets Manager in the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_interfaces_and_the_customer_key_are_granted_only_when_given() {
    use system_tests::iam::{Check, Decision, evaluate};
    let bench = StackBench::start().await;
    let s = bench.aws.seeded.clone();
    let expanded = template().await;
    let vpc_config = |stack: &Stack| {
        let function = &stack.template()["Resources"]["EksAccessFunction"]["Properties"];
        stack
            .resolved(&json!({"VpcConfig": function["VpcConfig"]}))
            .expect("VpcConfig resolves")
    };
    let plain = bench
        .stack(expanded.clone(), stack::demo_parameters(&s))
        .expect("parameters");
    assert_eq!(vpc_config(&plain), json!({}));
    assert_eq!(
        resolved_role_policy(&plain, "EksAccessRole", "vpc-network-interfaces"),
        None
    );
    assert_eq!(
        resolved_role_policy(&plain, "HopsworksClusterRole", "decrypt-api-key"),
        None
    );

    let mut parameters = stack::demo_parameters(&s);
    let subnets = s.cluster.private_subnet_ids.join(",");
    parameters.extend(changes(&[
        ("EksAccessSubnetIds", &subnets),
        (
            "EksAccessSecurityGroupId",
            &s.cluster.node_security_group_id,
        ),
        ("ApiKeySecretKmsKeyArn", KMS_KEY),
    ]));
    let given = bench.stack(expanded, parameters).expect("parameters");
    assert_eq!(
        vpc_config(&given),
        json!({"VpcConfig": {"SubnetIds": s.cluster.private_subnet_ids,
                             "SecurityGroupIds": [s.cluster.node_security_group_id]}})
    );
    let network = resolved_role_policy(&given, "EksAccessRole", "vpc-network-interfaces")
        .expect("the network-interface policy");
    let ec2 =
        |kind: &str, id: &str| format!("arn:aws:ec2:{}:{}:{kind}/{id}", s.region, s.account_id);
    let decide = |policy: &Value, action: &str, resource: String, context: &[(&str, &str)]| {
        let check = Check {
            action: action.to_owned(),
            resource,
            context: context
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
        };
        evaluate(&[policy["PolicyDocument"].clone()], &check).expect("evaluable")
    };
    let create = "ec2:CreateNetworkInterface";
    assert_eq!(
        decide(
            &network,
            create,
            ec2("subnet", &s.cluster.private_subnet_ids[0]),
            &[]
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &network,
            create,
            ec2("security-group", &s.cluster.node_security_group_id),
            &[]
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(&network, create, ec2("network-interface", "*"), &[]),
        Decision::Allow
    );
    // Another security group (so another VPC's interfaces) stays out of reach.
    assert_eq!(
        decide(
            &network,
            create,
            ec2("security-group", &s.cluster.cluster_security_group_id),
            &[]
        ),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(
            &network,
            "ec2:DeleteNetworkInterface",
            ec2("network-interface", "eni-0123456789abcdef0"),
            &[]
        ),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &network,
            "ec2:DeleteSubnet",
            ec2("subnet", &s.cluster.private_subnet_ids[0]),
            &[]
        ),
        Decision::ImplicitDeny
    );

    let key = resolved_role_policy(&given, "HopsworksClusterRole", "decrypt-api-key")
        .expect("the key policy");
    let via = format!("secretsmanager.{}.amazonaws.com", s.region);
    let decrypt = |resource: &str, context: &[(&str, &str)]| {
        decide(&key, "kms:Decrypt", resource.to_owned(), context)
    };
    assert_eq!(
        decrypt(KMS_KEY, &[("kms:ViaService", &via)]),
        Decision::Allow
    );
    // Called directly, through another service or region, or on another key: denied.
    assert_eq!(decrypt(KMS_KEY, &[]), Decision::ImplicitDeny);
    assert_eq!(
        decrypt(KMS_KEY, &[("kms:ViaService", "s3.eu-west-1.amazonaws.com")]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decrypt(
            KMS_KEY,
            &[("kms:ViaService", "secretsmanager.us-east-1.amazonaws.com")]
        ),
        Decision::ImplicitDeny
    );
    let other_key = KMS_KEY.replace("1234abcd-", "9999abcd-");
    assert_eq!(
        decrypt(&other_key, &[("kms:ViaService", &via)]),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(
            &key,
            "kms:Encrypt",
            KMS_KEY.to_owned(),
            &[("kms:ViaService", &via)]
        ),
        Decision::ImplicitDeny
    );

    // Subnets without a security group (or the reverse) are refused before anything is made.
    let mut half = stack::demo_parameters(&s);
    half.extend(changes(&[("EksAccessSubnetIds", &subnets)]));
    let refused = bench
        .stack(template().await, half)
        .err()
        .expect("subnets without a security group are refused");
    assert!(refused.contains("EksAccessSecurityGroupId"), "{refused}");
}

/// The EksAccess function in the cluster's private subnets (Lambda's checks of VpcConfig
/// played by the bench: subnets and group exist, in one VPC, and the role may manage the
/// interfaces), the API key's secret under a customer key, and Tags: the Hopsworks cluster and
/// the ingress rules carry them; Delete leaves the account as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_a_customer_key_and_tags_deploy_and_delete_cleanly() {
    let bench = StackBench::start().await;
    let (aws, control) = (&bench.aws, &bench.control);
    let before = bench.state().await;
    let s = aws.seeded.clone();
    let mut parameters = stack::demo_parameters(&s);
    let subnets = s.cluster.private_subnet_ids.join(",");
    parameters.extend(changes(&[
        ("EksAccessSubnetIds", &subnets),
        (
            "EksAccessSecurityGroupId",
            &s.cluster.node_security_group_id,
        ),
        ("ApiKeySecretKmsKeyArn", KMS_KEY),
        ("Tags", "team=data,cost-center=4711"),
    ]));
    let mut deployed = bench
        .stack(template().await, parameters)
        .expect("parameters");
    deployed.create().await.expect("the stack is created");

    let function = deployed
        .properties("EksAccessFunction")
        .expect("EksAccessFunction");
    assert_eq!(
        function["VpcConfig"],
        json!({"SubnetIds": s.cluster.private_subnet_ids,
               "SecurityGroupIds": [s.cluster.node_security_group_id]})
    );
    let clusters = control.hopsworks_clusters().await;
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    let cluster = clusters[0].to_string();
    for tag in [
        r#"{"name":"team","value":"data"}"#,
        r#"{"name":"cost-center","value":"4711"}"#,
    ] {
        assert!(
            cluster.contains(tag),
            "the Hopsworks cluster lacks {tag}: {cluster}"
        );
    }
    let tagged = aws
        .query(&format!(
            r#"
import boto3, json, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["BENCH_ENDPOINT"])
rules = ec2.describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{group}"]}}])["SecurityGroupRules"]
print(json.dumps(sorted(str(r.get("FromPort")) for r in rules
                        if {{"Key": "team", "Value": "data"}} in r.get("Tags", [])
                        and {{"Key": "cost-center", "Value": "4711"}} in r.get("Tags", []))))
"#,
            group = s.cluster.cluster_security_group_id
        ))
        .await;
    assert_eq!(tagged, json!(["443", "80"]), "the ingress rules' tags");

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
}

/// The log groups, flow logs and the new cluster's public endpoint, as the account shows them.
async fn new_cluster_extras(bench: &StackBench, cluster: &str) -> Value {
    bench
        .aws
        .query(&format!(
            r#"
import boto3, json, os
def client(name):
    return boto3.client(name, endpoint_url=os.environ["BENCH_ENDPOINT"])
groups = client("logs").describe_log_groups()["logGroups"]
flows = client("ec2").describe_flow_logs()["FlowLogs"]
try:
    cidrs = client("eks").describe_cluster(name="{cluster}")["cluster"]["resourcesVpcConfig"].get("publicAccessCidrs")
except Exception:
    cidrs = None
print(json.dumps({{
  "eks_groups": {{g["logGroupName"]: g.get("retentionInDays") for g in groups if g["logGroupName"].startswith("/aws/eks/")}},
  "flow_logs": [{{"vpc": f["ResourceId"], "group": f.get("LogGroupName"), "role": f.get("DeliverLogsPermissionArn"), "traffic": f.get("TrafficType")}} for f in flows],
  "group_retention": {{g["logGroupName"]: g.get("retentionInDays") for g in groups}},
  "public_access_cidrs": cidrs,
}}))
"#
        ))
        .await
}

/// On the new-cluster path: the control-plane log group is the stack's (made before the cluster
/// with a retention, gone with the stack), the public endpoint takes only the given CIDRs, flow
/// logs go to a group of the stack's through a role that writes there only, the access entry
/// carries the Tags; Delete leaves the account's networks, clusters and log groups as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_owns_its_log_groups_restricts_its_endpoint_and_logs_its_flows() {
    let bench = StackBench::start().await;
    let aws = &bench.aws;
    let before = bench.state().await;
    let account_before = stack::networks_and_clusters(aws).await;
    let extras_before = new_cluster_extras(&bench, NEW_CLUSTER).await;
    let s = aws.seeded.clone();
    let mut parameters = stack::demo_parameters(&s);
    parameters.extend(changes(&[
        ("EksClusterName", NEW_CLUSTER),
        ("CreateEksCluster", "true"),
        ("KubernetesRoleArn", ""),
        ("CreateHopsworksCluster", "false"),
        (
            "NewClusterPublicAccessCidrs",
            "203.0.113.0/24,198.51.100.7/32",
        ),
        ("NewClusterFlowLogs", "true"),
        ("LogRetentionDays", "14"),
        ("Tags", "team=data"),
    ]));
    let mut deployed = bench
        .stack(template().await, parameters)
        .expect("parameters");
    deployed.create().await.expect("the stack is created");

    let extras = new_cluster_extras(&bench, NEW_CLUSTER).await;
    assert_eq!(
        extras["eks_groups"],
        json!({format!("/aws/eks/{NEW_CLUSTER}/cluster"): 14}),
        "{extras}"
    );
    assert_eq!(
        extras["public_access_cidrs"],
        json!(["203.0.113.0/24", "198.51.100.7/32"])
    );
    let outputs: std::collections::BTreeMap<String, String> =
        deployed.outputs().expect("outputs").into_iter().collect();
    let flows = extras["flow_logs"].as_array().cloned().unwrap_or_default();
    let ours: Vec<&Value> = flows
        .iter()
        .filter(|f| f["vpc"] == outputs["VpcId"].as_str())
        .collect();
    assert_eq!(ours.len(), 1, "{flows:?}");
    assert_eq!(ours[0]["traffic"], "ALL");
    let group = ours[0]["group"].as_str().expect("a log group").to_owned();
    assert_eq!(extras["group_retention"][&group], 14, "{extras}");
    // The role writes to that group only.
    let role = ours[0]["role"]
        .as_str()
        .expect("a role")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let policy = aws
        .query(&format!(
            r#"
import boto3, json, os
iam = boto3.client("iam", endpoint_url=os.environ["BENCH_ENDPOINT"])
print(json.dumps(iam.get_role_policy(RoleName="{role}", PolicyName="write-flow-logs")["PolicyDocument"]))
"#
        ))
        .await;
    let put = |group: &str| {
        let check = system_tests::iam::Check {
            action: "logs:PutLogEvents".to_owned(),
            resource: format!(
                "arn:aws:logs:{}:{}:log-group:{group}:log-stream:eni-0123-all",
                s.region, s.account_id
            ),
            context: Default::default(),
        };
        system_tests::iam::evaluate(std::slice::from_ref(&policy), &check).expect("evaluable")
    };
    assert_eq!(put(&group), system_tests::iam::Decision::Allow);
    assert_eq!(
        put(&format!("/aws/eks/{NEW_CLUSTER}/cluster")),
        system_tests::iam::Decision::ImplicitDeny
    );
    // The access entry the stack made carries the stack's Tags.
    let entry = aws
        .query(&format!(
            r#"
import boto3, json, os
eks = boto3.client("eks", endpoint_url=os.environ["BENCH_ENDPOINT"])
print(json.dumps(eks.describe_access_entry(clusterName="{NEW_CLUSTER}", principalArn="{role}")["accessEntry"].get("tags", {{}})))
"#,
            role = s.hopsworks.role_arn_without_path
        ))
        .await;
    assert_eq!(entry["team"], "data", "{entry}");

    deployed.delete().await.expect("the stack is deleted");
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before);
    assert_eq!(stack::networks_and_clusters(aws).await, account_before);
    let after = new_cluster_extras(&bench, NEW_CLUSTER).await;
    assert_eq!(after["eks_groups"], extras_before["eks_groups"]);
    assert_eq!(after["flow_logs"], extras_before["flow_logs"]);
    assert_eq!(after["group_retention"], extras_before["group_retention"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_of_another_region_fails_the_stack_before_anything_else_is_made() {
    let bench = StackBench::start().await;
    let aws = &bench.aws;
    let before = bench.state().await;
    let account_before = stack::networks_and_clusters(aws).await;
    let storage = &aws.seeded.storage;
    // The new-cluster path: its VPC and EKS cluster are what takes a quarter of an hour.
    let mut parameters = stack::demo_parameters(&aws.seeded);
    parameters.extend(changes(&[
        ("EksClusterName", NEW_CLUSTER),
        ("CreateEksCluster", "true"),
        ("KubernetesRoleArn", ""),
        ("HopsworksBucketName", &storage.bucket_elsewhere),
    ]));
    let template = template().await;
    let mut deployed = bench
        .stack(template.clone(), parameters)
        .expect("parameters");
    let reason = deployed.create().await.expect_err("the create fails");
    assert!(
        reason.starts_with(&format!(
            "S3 bucket {} (HopsworksBucketName) is in region {}, but this stack and the Hopsworks \
             cluster are in {}",
            storage.bucket_elsewhere, storage.bucket_elsewhere_region, aws.seeded.region
        )),
        "{reason}"
    );

    let attempted = deployed.attempted().to_vec();
    assert!(attempted.iter().any(|r| r == "Preflight"), "{attempted:?}");
    // Nothing of the guide's steps, and nothing of the new cluster's, was begun: only the
    // functions' own roles, policies and log groups (quick to make and to roll back).
    for step in [
        "NewVpc",
        "NewInternetGateway",
        "NewClusterRole",
        "NewNodeRole",
        "NewCluster",
        "NewNodegroup",
        "ClusterDiscovery",
        "InstanceProfileRolePolicy",
        "EksAccess",
        "SecurityGroupIngress",
        "HopsworksAiEcrDeletePolicy",
        "HopsworksCluster",
    ] {
        assert!(
            !attempted.iter().any(|r| r == step),
            "{step} was begun before the pre-flight checks passed: {attempted:?}"
        );
    }
    for name in &attempted {
        let kind = template["Resources"][name]["Type"]
            .as_str()
            .unwrap_or_default();
        assert!(
            name == "Preflight"
                || [
                    "AWS::IAM::Role",
                    "AWS::IAM::RolePolicy",
                    "AWS::Logs::LogGroup",
                    "AWS::Lambda::Function"
                ]
                .contains(&kind),
            "{name} ({kind}) was made before the pre-flight checks passed: {attempted:?}"
        );
    }
    // The one AWS call a function made: the bucket's location.
    assert_eq!(bench.proxy.actions(), ["s3:GetBucketLocation"]);
    assert_no_call_denied(&deployed);
    assert_eq!(bench.state().await, before, "the rollback left changes");
    assert_eq!(stack::networks_and_clusters(aws).await, account_before);
    assert!(bench.control.hopsworks_clusters().await.is_empty());
}
