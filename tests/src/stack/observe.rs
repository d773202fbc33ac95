//! What tests read of the account to compare before and after a stack: the state the stack may
//! change, security-group rules, access entries, networks and clusters, log retention.

use super::bench::CROSS_ACCOUNT_ROLE;
use super::{STACK_NAME, with_client};
use crate::aws::AwsBench;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What the stack may change in the account, to compare before and after: aws-auth, the cluster
/// security group's rules, the inline policies of the two roles the stack adds policies to, ECR.
pub async fn observable_state(aws: &AwsBench, control: &crate::control::Control) -> Value {
    let s = &aws.seeded;
    let state = aws
        .query(&with_client(&format!(
            r#"
rules = client("ec2").describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{sg}"]}}])["SecurityGroupRules"]
print(json.dumps({{
  "ingress": sorted([r["SecurityGroupRuleId"] for r in rules]),
  "role_policies": sorted(client("iam").list_role_policies(RoleName="{role}")["PolicyNames"]),
  "cross_account_policies": sorted(client("iam").list_role_policies(RoleName="{CROSS_ACCOUNT_ROLE}")["PolicyNames"]),
  "ecr": sorted(r["repositoryName"] for r in client("ecr").describe_repositories()["repositories"]),
}}))
"#,
            sg = s.cluster.cluster_security_group_id,
            role = s.hopsworks.role_name
        )))
        .await;
    json!({"aws": state, "aws_auth": control.aws_auth(&s.cluster.name).await["data"]})
}

/// The seeded cluster security group's ingress rules as `port source`, sorted, to compare what
/// they allow (rule ids change when a rule moves).
pub async fn ingress_rules(aws: &AwsBench) -> Vec<String> {
    ingress_rules_of(aws, &aws.seeded.cluster.cluster_security_group_id).await
}

/// A security group's ingress rules as `port source` (a CIDR or a group id), sorted.
pub async fn ingress_rules_of(aws: &AwsBench, group_id: &str) -> Vec<String> {
    let rules = aws
        .query(&with_client(&format!(
            r#"
rules = client("ec2").describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{group_id}"]}}])["SecurityGroupRules"]
print(json.dumps(sorted(f"{{r.get('FromPort')}} {{r.get('CidrIpv4') or r.get('ReferencedGroupInfo', {{}}).get('GroupId')}}" for r in rules if not r["IsEgress"])))
"#
        )))
        .await;
    serde_json::from_value(rules).unwrap_or_default()
}

/// The IAM principals with an access entry on `cluster`, sorted.
pub async fn access_entries(aws: &AwsBench, cluster: &str) -> Vec<String> {
    let entries = aws
        .query(&with_client(&format!(
            r#"
print(json.dumps(sorted(client("eks").list_access_entries(clusterName="{cluster}")["accessEntries"])))
"#
        )))
        .await;
    serde_json::from_value(entries).unwrap_or_default()
}

/// The account's VPCs, subnets, NAT gateways, addresses, security groups and EKS clusters, to show
/// that a stack which made its own network and cluster leaves none behind.
pub async fn networks_and_clusters(aws: &AwsBench) -> Value {
    aws.query(&with_client(
        r#"
ec2 = client("ec2")
print(json.dumps({
  "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
  "subnets": sorted(n["SubnetId"] for n in ec2.describe_subnets()["Subnets"]),
  "nat_gateways": sorted(n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"),
  "addresses": sorted(a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]),
  "security_groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
  "clusters": sorted(client("eks").list_clusters()["clusters"]),
}))
"#,
    ))
    .await
}

/// Retention in days of each of the stack's log groups.
pub async fn log_retention(aws: &AwsBench) -> BTreeMap<String, u64> {
    let groups = aws
        .query(&with_client(&format!(
            r#"
groups = client("logs").describe_log_groups(logGroupNamePrefix="{STACK_NAME}-")["logGroups"]
print(json.dumps({{g["logGroupName"]: g.get("retentionInDays", 0) for g in groups}}))
"#
        )))
        .await;
    serde_json::from_value(groups).unwrap_or_default()
}
