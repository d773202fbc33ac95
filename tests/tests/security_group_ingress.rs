//! The SecurityGroupIngress function, compiled, behind the Runtime API, against moto's EC2.

use serde_json::{Value, json};
use std::time::Duration;
use system_tests::aws::AwsBench;
use system_tests::cloudformation::Player;
use system_tests::faults::FaultProxy;

const TYPE: &str = "Custom::SecurityGroupIngress";
const LOGICAL: &str = "HopsworksIngress";

/// `[(port, cidr, tagged-by-us)]` of the group's ingress rules.
async fn ingress(aws: &AwsBench, group: &str) -> Vec<(i64, String, bool)> {
    let v = aws
        .query(&format!(
            r#"
import boto3, json, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["BENCH_ENDPOINT"])
rules = ec2.describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{group}"]}}])["SecurityGroupRules"]
print(json.dumps(sorted([[r.get("FromPort"), r.get("CidrIpv4") or r.get("ReferencedGroupInfo", {{}}).get("GroupId"),
  any(t["Key"] == "hopsworks.ai/eks-stack" for t in r.get("Tags", []))] for r in rules if not r["IsEgress"]])))
"#
        ))
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

async fn open(aws: &AwsBench, group: &str, port: i64, cidr: &str) {
    aws.query(&format!(
        r#"
import boto3, json, os
ec2 = boto3.client("ec2", endpoint_url=os.environ["BENCH_ENDPOINT"])
ec2.authorize_security_group_ingress(GroupId="{group}", IpPermissions=[{{"IpProtocol": "tcp", "FromPort": {port}, "ToPort": {port}, "IpRanges": [{{"CidrIp": "{cidr}"}}]}}])
print("true")
"#
    ))
    .await;
}

fn props(aws: &AwsBench) -> Value {
    json!({
        "GroupId": aws.seeded.cluster.cluster_security_group_id,
        "SourceCidr": aws.seeded.cluster.vpc_cidr,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_80_and_443_adopts_what_exists_and_removes_only_its_own() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = system_tests::ingress_function(proxy.endpoint(), Duration::from_secs(30));
    let group = aws.seeded.cluster.cluster_security_group_id.clone();
    let cidr = aws.seeded.cluster.vpc_cidr.clone();
    // The user opened 443 by hand before, and has an SSH rule of their own.
    open(&aws, &group, 443, &cidr).await;
    open(&aws, &group, 22, "192.168.0.0/24").await;
    let before = ingress(&aws, &group).await;

    let cfn = Player::new(&function, TYPE).await;
    let created = cfn.create(LOGICAL, props(&aws)).await;
    assert!(created.is_success(), "{}", created.reason);
    assert_eq!(created.attr("AdoptedPorts"), "443");
    assert_eq!(created.attr("RuleIds").split(',').count(), 1);
    let after = ingress(&aws, &group).await;
    assert!(after.contains(&(80, cidr.clone(), true)), "{after:?}");
    assert!(after.contains(&(443, cidr.clone(), false)), "{after:?}");
    assert_eq!(after.len(), before.len() + 1, "{after:?}");

    // Running the same Create again changes nothing (a duplicate delivery).
    proxy.clear();
    let again = cfn.create(LOGICAL, props(&aws)).await;
    assert!(again.is_success(), "{}", again.reason);
    assert_eq!(proxy.requests().len(), 1, "{:#?}", proxy.requests());

    let deleted = cfn.delete(LOGICAL, &created.physical_id, props(&aws)).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    system_tests::faults::assert_calls_within(&proxy, security_group_ingress::IAM_ACTIONS);
    assert_eq!(
        ingress(&aws, &group).await,
        before,
        "Delete touched rules it did not make"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_moves_its_rules_in_place() {
    let aws = AwsBench::start().await;
    let function = system_tests::ingress_function(aws.endpoint(), Duration::from_secs(30));
    let group = aws.seeded.cluster.cluster_security_group_id.clone();
    let cfn = Player::new(&function, TYPE).await;
    let created = cfn.create(LOGICAL, props(&aws)).await;
    let mut moved = props(&aws);
    moved["Ports"] = json!(["443", "8443"]);
    let updated = cfn
        .update(LOGICAL, &created.physical_id, moved.clone(), props(&aws))
        .await;
    assert!(updated.is_success(), "{}", updated.reason);
    assert_eq!(updated.physical_id, created.physical_id);
    // EKS's own rule (all traffic from the group itself) stays throughout.
    let ours = |rules: Vec<(i64, String, bool)>| -> Vec<i64> {
        rules.into_iter().filter(|r| r.2).map(|r| r.0).collect()
    };
    assert_eq!(ours(ingress(&aws, &group).await), [443, 8443]);
    let deleted = cfn.delete(LOGICAL, &created.physical_id, moved).await;
    assert!(deleted.is_success());
    let left = ingress(&aws, &group).await;
    assert!(ours(left.clone()).is_empty(), "{left:?}");
    assert_eq!(left.len(), 1, "EKS's own rule must stay: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_opens_to_the_internet_and_names_a_missing_group() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = system_tests::ingress_function(proxy.endpoint(), Duration::from_secs(30));
    let cfn = Player::new(&function, TYPE).await;
    let mut public = props(&aws);
    public["SourceCidr"] = json!("0.0.0.0/0");
    let answer = cfn.create(LOGICAL, public).await;
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer.reason.contains("whole internet"),
        "{}",
        answer.reason
    );
    assert!(proxy.requests().is_empty());
    let mut missing = props(&aws);
    missing["GroupId"] = json!("sg-0123456789abcdef0");
    let answer = cfn.create(LOGICAL, missing).await;
    assert_eq!(answer.status, "FAILED");
    assert!(
        answer
            .reason
            .contains("sg-0123456789abcdef0 does not exist"),
        "{}",
        answer.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_opened_by_someone_else_meanwhile_does_not_leave_the_other_closed() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = system_tests::ingress_function(proxy.endpoint(), Duration::from_secs(30));
    let group = aws.seeded.cluster.cluster_security_group_id.clone();
    let cidr = aws.seeded.cluster.vpc_cidr.clone();
    let before = ingress(&aws, &group).await;
    // The function reads the rules; before it acts on what it read, someone opens port 80.
    proxy.inject(
        "Action=DescribeSecurityGroupRules",
        system_tests::faults::Fault::AnswerAfter(Duration::from_secs(4)),
        1,
    );
    let cfn = Player::new(&function, TYPE).await;
    let (created, ()) = tokio::join!(cfn.create(LOGICAL, props(&aws)), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        open(&aws, &group, 80, &cidr).await;
    });
    assert!(created.is_success(), "{}", created.reason);
    let after = ingress(&aws, &group).await;
    assert!(after.contains(&(80, cidr.clone(), false)), "{after:?}");
    assert!(
        after.contains(&(443, cidr.clone(), true)),
        "443 left closed: {after:?}"
    );
    let deleted = cfn.delete(LOGICAL, &created.physical_id, props(&aws)).await;
    assert!(deleted.is_success(), "{}", deleted.reason);
    let mut expected = before;
    expected.push((80, cidr, false));
    expected.sort();
    assert_eq!(ingress(&aws, &group).await, expected, "only its 443 goes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_after_opening_is_rolled_back_to_the_rules_as_they_were() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let function = system_tests::ingress_function(proxy.endpoint(), Duration::from_secs(30));
    let group = aws.seeded.cluster.cluster_security_group_id.clone();
    let before = ingress(&aws, &group).await;
    // The rules are open; reading them back (for their ids) fails past the SDK's retries.
    proxy.inject_after(
        "Action=DescribeSecurityGroupRules",
        1,
        system_tests::faults::Fault::ServerError,
        20,
    );
    let cfn = Player::new(&function, TYPE).await;
    let failed = cfn.create(LOGICAL, props(&aws)).await;
    assert_eq!(failed.status, "FAILED");
    assert_eq!(ingress(&aws, &group).await.len(), before.len() + 2);
    proxy.clear();
    // CloudFormation's rollback: Delete with the id the FAILED answer carried.
    let rollback = cfn.delete(LOGICAL, &failed.physical_id, props(&aws)).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    assert_eq!(ingress(&aws, &group).await, before, "rules left behind");

    // The same when the answer carried the marker (a Create of an earlier release, or one
    // whose answer was lost): the Delete finds the rules by their owner tag.
    let created = cfn.create(LOGICAL, props(&aws)).await;
    assert!(created.is_success(), "{}", created.reason);
    let marker = format!("{}Probe:lost", custom_resource::FAILED_CREATE_PREFIX);
    let rollback = cfn.delete(LOGICAL, &marker, props(&aws)).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    assert_eq!(ingress(&aws, &group).await, before, "rules left behind");

    // A marker Delete after a Create refused on its input succeeds and touches nothing.
    let mut bad = props(&aws);
    bad["SourceCidr"] = json!("0.0.0.0/0");
    proxy.clear();
    let rollback = cfn.delete(LOGICAL, &marker, bad).await;
    assert!(rollback.is_success(), "{}", rollback.reason);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}
