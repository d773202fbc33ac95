//! The `Preflight` resource: the ClusterDiscovery function, compiled, behind the Runtime API,
//! answering a `Custom::Preflight` against moto (the seeded bucket, key pair and subnets) through
//! the fault proxy, with CloudFormation played over HTTP.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::discovery_function;
use system_tests::faults::FaultProxy;
use system_tests::lambda::LambdaFunction;

const TYPE: &str = "Custom::Preflight";

struct Bench {
    aws: AwsBench,
    proxy: FaultProxy,
    function: LambdaFunction,
}

async fn bench() -> Bench {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = discovery_function(proxy.endpoint(), Duration::from_secs(30));
    Bench {
        aws,
        proxy,
        function,
    }
}

impl Bench {
    /// What the template sends for a stack on the seeded cluster with every value right: the
    /// seeded bucket and key pair, a public subnet of the cluster.
    fn good(&self) -> Value {
        let s = &self.aws.seeded;
        json!({
            "BucketName": s.storage.bucket,
            "SshKeyName": s.storage.key_pair,
            "SubnetId": s.cluster.public_subnet_ids[0],
            "ClusterName": s.cluster.name,
            "NewCluster": "false",
        })
    }

    fn with(&self, changes: Value) -> Value {
        let mut props = self.good();
        for (k, v) in changes.as_object().into_iter().flatten() {
            props[k] = v.clone();
        }
        props
    }

    async fn create(&self, props: Value) -> Answer {
        let cfn = Player::new(&self.function, TYPE).await;
        cfn.create("Preflight", props).await
    }

    /// A Create that fails, with its Reason.
    async fn refused(&self, props: Value) -> String {
        let answer = self.create(props).await;
        assert_eq!(answer.status, "FAILED", "{answer:?}");
        system_tests::faults::assert_calls_within(&self.proxy, cluster_discovery::IAM_ACTIONS);
        answer.reason
    }

    /// A VPC with one subnet that is not the cluster's: its subnet id.
    async fn subnet_of_another_vpc(&self) -> String {
        let out = self
            .aws
            .query(
                r#"
import boto3, json, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["BENCH_ENDPOINT"])
vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.0.0/20")["Subnet"]["SubnetId"]
print(json.dumps({"vpc": vpc, "subnet": subnet}))
"#,
            )
            .await;
        out["subnet"].as_str().unwrap_or_default().to_owned()
    }
}

fn public_hint(b: &Bench) -> String {
    let mut public = b.aws.seeded.cluster.public_subnet_ids.clone();
    public.sort();
    public.join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_bucket_key_pair_and_public_subnet_pass_with_five_read_only_calls() {
    let b = bench().await;
    let answer = b.create(b.good()).await;
    assert!(answer.is_success(), "{}", answer.reason);
    assert_eq!(answer.physical_id, "Preflight");
    let mut actions = b.proxy.actions();
    actions.sort();
    assert_eq!(
        actions,
        [
            "ec2:DescribeKeyPairs",
            "ec2:DescribeRouteTables",
            "ec2:DescribeSubnets",
            "eks:DescribeCluster",
            "s3:GetBucketLocation",
        ]
    );
    system_tests::faults::assert_calls_within(&b.proxy, cluster_discovery::IAM_ACTIONS);

    // Nothing given (CreateHopsworksCluster false): nothing to check, no call.
    b.proxy.clear();
    let answer = b
        .create(
            json!({"BucketName": "", "SshKeyName": "", "SubnetId": "", "ClusterName": "demo-eks"}),
        )
        .await;
    assert!(answer.is_success(), "{}", answer.reason);
    assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_in_seconds_saying_how_to_create_it() {
    let b = bench().await;
    let started = Instant::now();
    let reason = b
        .refused(b.with(json!({"BucketName": "no-such-bucket"})))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        reason,
        "S3 bucket no-such-bucket (HopsworksBucketName) does not exist: create it in us-east-2 \
         (aws s3 mb s3://no-such-bucket --region us-east-2), or give an existing bucket of \
         us-east-2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_in_another_region_fails_naming_both_regions() {
    let b = bench().await;
    let st = &b.aws.seeded.storage;
    let reason = b
        .refused(b.with(json!({"BucketName": st.bucket_elsewhere})))
        .await;
    assert_eq!(
        reason,
        format!(
            "S3 bucket {} (HopsworksBucketName) is in region {}, but this stack and the Hopsworks \
             cluster are in us-east-2, and Hopsworks needs its bucket in its own region: give a \
             bucket of us-east-2 (aws s3 mb s3://NAME --region us-east-2)",
            st.bucket_elsewhere, st.bucket_elsewhere_region
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_pair_fails_and_says_it_may_be_left_empty() {
    let b = bench().await;
    let reason = b
        .refused(b.with(json!({"SshKeyName": "no-such-key"})))
        .await;
    assert_eq!(
        reason,
        "EC2 key pair \"no-such-key\" (HopsworksSshKeyName) was not found in region us-east-2: \
         create or import it there (EC2 console, Key pairs), or leave HopsworksSshKeyName empty \
         for no SSH access"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_of_another_vpc_fails_naming_the_clusters_vpc_and_its_public_subnets() {
    let b = bench().await;
    let subnet = b.subnet_of_another_vpc().await;
    let reason = b.refused(b.with(json!({"SubnetId": subnet}))).await;
    let c = &b.aws.seeded.cluster;
    assert!(
        reason.starts_with(&format!(
            "subnet {subnet} (HopsworksSubnetId) is in VPC vpc-"
        )),
        "{reason}"
    );
    assert!(
        reason.ends_with(&format!(
            "not in VPC {vpc} of EKS cluster {name}: give a public subnet of {vpc} (the \
             cluster's public subnets: {public}), or leave HopsworksSubnetId empty",
            vpc = c.vpc_id,
            name = c.name,
            public = public_hint(&b)
        )),
        "{reason}"
    );

    let reason = b
        .refused(b.with(json!({"SubnetId": "subnet-0000000000abcdef0"})))
        .await;
    assert!(
        reason.starts_with(
            "subnet subnet-0000000000abcdef0 (HopsworksSubnetId) was not found in region us-east-2"
        ),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_subnet_fails_saying_why_hopsworks_needs_a_public_one() {
    let b = bench().await;
    let c = &b.aws.seeded.cluster;
    let private = &c.private_subnet_ids[0];
    let reason = b.refused(b.with(json!({"SubnetId": private}))).await;
    assert_eq!(
        reason,
        format!(
            "subnet {private} (HopsworksSubnetId) is private: its route table sends no 0.0.0.0/0 \
             or ::/0 traffic to an internet gateway, and the Hopsworks VMs get public IP \
             addresses and a Let's Encrypt certificate, which need one; give a public subnet of \
             VPC {} (the cluster's public subnets: {}), add such a route to its route table, or \
             leave HopsworksSubnetId empty",
            c.vpc_id,
            public_hint(&b)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subnet_cannot_be_named_for_a_cluster_the_stack_creates() {
    let b = bench().await;
    let reason = b
        .refused(b.with(json!({"ClusterName": "new-eks", "NewCluster": "true"})))
        .await;
    assert!(
        reason.starts_with(&format!(
            "HopsworksSubnetId {} is set, but CreateEksCluster is true and EKS cluster new-eks \
             does not exist yet",
            b.aws.seeded.cluster.public_subnet_ids[0]
        )),
        "{reason}"
    );
    // An existing cluster that is not there is DescribeCluster's own Reason.
    let reason = b.refused(b.with(json!({"ClusterName": "new-eks"}))).await;
    assert!(
        reason.starts_with("EKS cluster new-eks was not found in region us-east-2"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_in_one_reason_and_bad_input_calls_nothing() {
    let b = bench().await;
    let reason = b
        .refused(b.with(json!({"BucketName": "no-such-bucket", "SshKeyName": "no-such-key"})))
        .await;
    assert!(
        reason.starts_with("S3 bucket no-such-bucket (HopsworksBucketName) does not exist"),
        "{reason}"
    );
    assert!(
        reason.contains(". Also: EC2 key pair \"no-such-key\" (HopsworksSshKeyName) was not found"),
        "{reason}"
    );

    b.proxy.clear();
    for (props, expected) in [
        (
            b.with(json!({"BucketName": "s3://hops"})),
            "HopsworksBucketName \"s3://hops\" is not an S3 bucket name",
        ),
        (
            b.with(json!({"SubnetId": "sg-0123abcd"})),
            "HopsworksSubnetId \"sg-0123abcd\" is not a subnet id",
        ),
    ] {
        let reason = b.refused(props).await;
        assert!(reason.starts_with(expected), "{reason}");
    }
    assert!(b.proxy.requests().is_empty(), "bad input reached AWS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_checks_only_what_changed_and_delete_calls_nothing() {
    let b = bench().await;
    let cfn = Player::new(&b.function, TYPE).await;
    let created = cfn.create("Preflight", b.good()).await;
    assert!(created.is_success(), "{}", created.reason);

    // The bucket went away outside the stack; an update of the key pair alone still passes
    // (and so does a rollback to values that were checked when they were set).
    let old = b.with(json!({"BucketName": "gone-bucket"}));
    let new = b.with(json!({"BucketName": "gone-bucket", "SshKeyName": ""}));
    b.proxy.clear();
    let updated = cfn
        .update("Preflight", &created.physical_id, new.clone(), old.clone())
        .await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(updated.physical_id, created.physical_id);
    assert!(b.proxy.requests().is_empty(), "{:?}", b.proxy.requests());

    // A new bucket is checked.
    let moved = b.with(json!({"BucketName": "no-such-bucket"}));
    let failed = cfn
        .update("Preflight", &created.physical_id, moved, b.good())
        .await;
    assert_eq!(failed.status, "FAILED");
    assert!(
        failed.reason.contains("no-such-bucket"),
        "{}",
        failed.reason
    );
    assert_eq!(b.proxy.actions(), ["s3:GetBucketLocation"]);

    b.proxy.clear();
    let deleted = cfn
        .delete("Preflight", &created.physical_id, b.good())
        .await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    assert!(b.proxy.requests().is_empty(), "Delete called AWS");
}

// ---- The Hopsworks version: HopsworksCluster reads Hopsworks.ai's catalogue before its POST ----

/// A HopsworksCluster Create of `version` against the Hopsworks.ai double, whose catalogue is
/// `versions` (none: the double's own); its answer and the requests the double received.
async fn create_hopsworks_of_version(
    version: &str,
    versions: Option<Value>,
) -> (Answer, Vec<String>) {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = system_tests::control::Control::new(&aws.seeded.control_endpoint);
    if let Some(versions) = versions {
        control
            .hopsworks_behaviour(json!({ "versions": versions }))
            .await;
    }
    let function =
        system_tests::hopsworks_cluster_function(&aws.seeded, &proxy, Duration::from_secs(30));
    let mut props = system_tests::hopsworks_cluster_properties(&aws.seeded);
    props["HopsworksVersion"] = json!(version);
    let mut cfn = Player::new(&function, "Custom::HopsworksCluster").await;
    cfn.answer_timeout = Duration::from_secs(120);
    let answer = cfn.create("HopsworksCluster", props).await;
    let requests = control
        .hopsworks_requests()
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap_or_default(),
                r["path"].as_str().unwrap_or_default()
            )
        })
        .collect();
    (answer, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hopsworks_version_the_catalogue_does_not_offer_fails_before_the_cluster_is_posted() {
    let (answer, requests) = create_hopsworks_of_version("3.7.0", None).await;
    assert_eq!(answer.status, "FAILED", "{answer:?}");
    assert_eq!(
        answer.reason,
        "HopsworksVersion 3.7.0 is not a version Hopsworks.ai offers (3.8.0, 3.9.0, 4.0.0, \
         4.1.0); set one of them"
    );
    assert!(
        requests.contains(&"GET /api/clusters/hopsworks/versions/AWS".to_owned()),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.starts_with("POST")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hopsworks_version_offered_in_other_regions_only_fails_before_the_cluster_is_posted() {
    let catalogue = json!([
        {"version": "3.9.0", "regions": {"ubuntu": ["eu-west-1", "eu-north-1"], "centos": []}},
        {"version": "4.0.0", "upgradableFromVersion": "3.9.0"},
    ]);
    let (answer, requests) = create_hopsworks_of_version("3.9.0", Some(catalogue)).await;
    assert_eq!(answer.status, "FAILED", "{answer:?}");
    assert_eq!(
        answer.reason,
        "Hopsworks.ai offers HopsworksVersion 3.9.0 in eu-west-1, eu-north-1 only, not in \
         us-east-2 where this stack is: set a version it offers in us-east-2 (4.0.0), or deploy \
         the stack in one of those regions"
    );
    assert!(
        !requests.iter().any(|r| r.starts_with("POST")),
        "{requests:?}"
    );
}
