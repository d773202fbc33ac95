//! The ClusterDiscovery function, compiled, behind the Runtime API, against moto seeded with an
//! account, with CloudFormation played over HTTP and faults injected in front of moto.

use serde_json::{Value, json};
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::discovery_function;
use system_tests::faults::{Fault, FaultProxy};
use system_tests::lambda::LambdaFunction;

const TYPE: &str = "Custom::ClusterDiscovery";
const DESCRIBE_CLUSTER: &str = "GET /clusters/";

struct Bench {
    aws: AwsBench,
    proxy: FaultProxy,
    function: LambdaFunction,
}

async fn bench(timeout: Duration) -> Bench {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = discovery_function(proxy.endpoint(), timeout);
    Bench {
        aws,
        proxy,
        function,
    }
}

impl Bench {
    fn props(&self) -> Value {
        json!({
            "ClusterName": self.aws.seeded.cluster.name,
            "InstanceProfile": self.aws.seeded.hopsworks.instance_profile_arn,
        })
    }

    async fn create(&self, props: Value) -> Answer {
        let cfn = Player::new(&self.function, TYPE).await;
        cfn.create("ClusterDiscovery", props).await
    }

    async fn create_failing(&self, props: Value) -> Answer {
        let answer = self.create(props).await;
        assert_eq!(answer.status, "FAILED", "{answer:?}");
        answer
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_cluster_network_and_the_instance_profile_role() {
    let b = bench(Duration::from_secs(30)).await;
    let answer = b.create(b.props()).await;
    assert!(answer.is_success(), "{}", answer.reason);
    let seeded = &b.aws.seeded;
    let c = &seeded.cluster;
    assert_eq!(answer.physical_id, c.arn);
    assert_eq!(answer.attr("VpcId"), c.vpc_id);
    assert_eq!(answer.attr("VpcCidr"), c.vpc_cidr);
    assert_eq!(
        answer.attr("ClusterSecurityGroupId"),
        c.cluster_security_group_id
    );
    assert_eq!(answer.attr("KubernetesVersion"), c.version);
    assert_eq!(answer.attr("AuthenticationMode"), "CONFIG_MAP");
    assert_eq!(answer.attr("AccountId"), seeded.account_id);
    assert_eq!(answer.attr("Region"), seeded.region);
    assert_eq!(answer.attr("Partition"), "aws");
    assert!(answer.attr("Endpoint").starts_with("https://"));
    let mut public: Vec<&str> = answer.attr("PublicSubnetIds").split(',').collect();
    let mut private: Vec<&str> = answer.attr("PrivateSubnetIds").split(',').collect();
    public.sort();
    private.sort();
    let (mut want_public, mut want_private) =
        (c.public_subnet_ids.clone(), c.private_subnet_ids.clone());
    want_public.sort();
    want_private.sort();
    assert_eq!(public, want_public);
    assert_eq!(private, want_private);
    assert_eq!(answer.attr("SubnetIds").split(',').count(), 4);
    let h = &seeded.hopsworks;
    assert_eq!(answer.attr("RoleArn"), h.role_arn);
    assert!(
        h.role_arn.contains(&h.role_path),
        "the seeded role has a path"
    );
    assert_eq!(answer.attr("RoleArnWithoutPath"), h.role_arn_without_path);
    assert_eq!(answer.attr("RoleName"), h.role_name);
    assert_eq!(answer.attr("InstanceProfileArn"), h.instance_profile_arn);
    // Four calls: DescribeCluster, GetInstanceProfile, DescribeVpcs, DescribeRouteTables.
    assert_eq!(b.proxy.requests().len(), 4, "{:#?}", b.proxy.requests());
    system_tests::faults::assert_calls_within(&b.proxy, cluster_discovery::IAM_ACTIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_keeps_the_id_delete_calls_nothing_and_a_failed_update_keeps_the_old_id() {
    let b = bench(Duration::from_secs(30)).await;
    let cfn = Player::new(&b.function, TYPE).await;
    let by_name = json!({
        "ClusterName": b.aws.seeded.cluster.name,
        "InstanceProfile": b.aws.seeded.hopsworks.instance_profile_name,
    });
    let created = cfn.create("ClusterDiscovery", b.props()).await;
    let updated = cfn
        .update(
            "ClusterDiscovery",
            &created.physical_id,
            by_name.clone(),
            b.props(),
        )
        .await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(updated.physical_id, created.physical_id);
    assert_eq!(updated.attr("RoleArn"), created.attr("RoleArn"));

    let missing = json!({"ClusterName": "no-such-cluster", "InstanceProfile": "x"});
    let failed = cfn
        .update(
            "ClusterDiscovery",
            &created.physical_id,
            missing,
            by_name.clone(),
        )
        .await;
    assert_eq!(failed.status, "FAILED");
    assert_eq!(failed.physical_id, created.physical_id);

    b.proxy.clear();
    let deleted = cfn
        .delete("ClusterDiscovery", &created.physical_id, by_name)
        .await;
    assert!(deleted.is_success());
    assert_eq!(deleted.physical_id, created.physical_id);
    assert!(b.proxy.requests().is_empty(), "Delete called AWS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_fails_with_how_to_fix_it_and_calls_nothing() {
    let b = bench(Duration::from_secs(30)).await;
    let role_arn = &b.aws.seeded.hopsworks.role_arn;
    let cases = [
        (
            json!({"ClusterName": "my cluster", "InstanceProfile": "p"}),
            "ClusterName \"my cluster\" is not a valid EKS cluster name",
        ),
        (
            json!({"ClusterName": "demo-eks", "InstanceProfile": role_arn}),
            "is a role ARN; pass the instance profile",
        ),
        (
            json!({"ClusterName": "demo-eks", "InstanceProfile": "arn:aws:s3:::bucket"}),
            "is neither an instance profile name nor an instance profile ARN",
        ),
        (
            json!({"InstanceProfile": "p"}),
            "property ClusterName is required",
        ),
    ];
    let cfn = Player::new(&b.function, TYPE).await;
    for (props, expected) in cases {
        let answer = cfn.create("ClusterDiscovery", props).await;
        assert_eq!(answer.status, "FAILED");
        assert!(answer.reason.contains(expected), "{}", answer.reason);
        assert!(
            answer
                .physical_id
                .starts_with(custom_resource::FAILED_CREATE_PREFIX)
        );
    }
    assert!(b.proxy.requests().is_empty(), "bad input reached AWS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_problems_fail_with_a_precise_reason() {
    let b = bench(Duration::from_secs(30)).await;
    let s = &b.aws.seeded;
    let cases = [
        (
            json!({"ClusterName": "no-such-cluster", "InstanceProfile": s.hopsworks.instance_profile_name}),
            format!(
                "EKS cluster no-such-cluster was not found in region {}",
                s.region
            ),
        ),
        (
            json!({"ClusterName": s.creating_cluster_name, "InstanceProfile": s.hopsworks.instance_profile_name}),
            format!(
                "EKS cluster {} is CREATING, not ACTIVE",
                s.creating_cluster_name
            ),
        ),
        (
            json!({"ClusterName": s.cluster.name, "InstanceProfile": s.empty_instance_profile_arn}),
            format!(
                "instance profile {} has no role",
                s.empty_instance_profile_name
            ),
        ),
        (
            json!({"ClusterName": s.cluster.name, "InstanceProfile": "no-such-profile"}),
            format!(
                "instance profile no-such-profile was not found in account {}",
                s.account_id
            ),
        ),
        (
            json!({"ClusterName": s.cluster.name,
                   "InstanceProfile": "arn:aws:iam::210987654321:instance-profile/hops"}),
            "InstanceProfile is in account 210987654321".to_owned(),
        ),
    ];
    for (props, expected) in cases {
        let answer = b.create_failing(props).await;
        assert!(answer.reason.contains(&expected), "{}", answer.reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_a_5xx_storm_fails_with_the_aws_error() {
    let b = bench(Duration::from_secs(30)).await;
    b.proxy.inject(DESCRIBE_CLUSTER, Fault::Throttle, 2);
    b.proxy
        .inject("Action=GetInstanceProfile", Fault::Throttle, 1);
    let answer = b.create(b.props()).await;
    assert!(answer.is_success(), "{}", answer.reason);
    assert_eq!(b.proxy.count(DESCRIBE_CLUSTER), 3);
    assert_eq!(b.proxy.count("Action=GetInstanceProfile"), 2);

    b.proxy
        .inject("Action=DescribeVpcs", Fault::ServerError, 100);
    let answer = b.create_failing(b.props()).await;
    assert!(
        answer
            .reason
            .starts_with("ec2:DescribeVpcs failed: InternalError"),
        "{}",
        answer.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_aws_call_is_answered_failed_before_the_function_times_out() {
    let b = bench(Duration::from_secs(5)).await;
    b.proxy
        .inject(DESCRIBE_CLUSTER, Fault::Delay(Duration::from_secs(60)), 1);
    let answer = b.create_failing(b.props()).await;
    // 5 s function: the framework keeps 1 s back and answers at about 4 s.
    let after = answer.timed_out_after().expect(&answer.reason);
    assert!((3.0..5.0).contains(&after), "{}", answer.reason);
    assert!(
        answer
            .reason
            .contains("while discovering EKS cluster demo-eks"),
        "{}",
        answer.reason
    );
    assert!(answer.invocations[0].is_success(), "Lambda had to kill it");
    assert_eq!(answer.invocations.len(), 1);
}
