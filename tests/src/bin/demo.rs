//! `make demo`: the stack's custom resources against the local bench, no AWS account needed.
//!
//! Deploys what exists of the stack today (ClusterDiscovery, then EksAccess fed by its outputs),
//! prints the outputs as a user reads them after `sam deploy`, shows that the Hopsworks role now
//! reaches the cluster, then deletes the stack in reverse order and shows aws-auth as it was.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::control::Control;
use system_tests::kube::KubeAs;
use system_tests::{discovery_function, eks_access_function};

const STACK: &str = "hopsworks-eks";

fn event(status: &str, logical_id: &str, kind: &str, detail: &str) {
    println!("{status:<20} {logical_id:<18} {kind:<26} {detail}");
}

fn report(answer: &Answer, action: &str, started: Instant, kind: &str) {
    let took = format!("{:.2} s", started.elapsed().as_secs_f64());
    if answer.is_success() {
        event(
            &format!("{action}_COMPLETE"),
            &answer.logical_id,
            kind,
            &took,
        );
    } else {
        event(
            &format!("{action}_FAILED"),
            &answer.logical_id,
            kind,
            &answer.reason,
        );
        std::process::exit(1);
    }
}

async fn step(cfn: &Player<'_>, action: &str, logical: &str, id: &str, props: Value) -> Answer {
    let kind = cfn.resource_type.clone();
    event(&format!("{action}_IN_PROGRESS"), logical, &kind, "");
    let started = Instant::now();
    let answer = match action {
        "CREATE" => cfn.create(logical, props).await,
        _ => cfn.delete(logical, id, props).await,
    };
    report(&answer, action, started, &kind);
    answer
}

fn outputs(title: &str, answer: &Answer, keys: &[&str]) {
    println!("\n{title}");
    println!("{:-<100}", "");
    for key in keys {
        println!("{key:<24} {}", answer.attr(key));
    }
}

#[tokio::main]
async fn main() {
    println!(
        "Starting the local bench (moto plays AWS, a double plays the Kubernetes API; nothing leaves this machine)…"
    );
    let aws = AwsBench::start().await;
    let s = aws.seeded.clone();
    let control = Control::new(&s.control_endpoint);
    println!(
        "Account {} in {}: EKS cluster {} (authentication mode CONFIG_MAP), instance profile {}\n",
        s.account_id, s.region, s.cluster.name, s.hopsworks.instance_profile_name
    );
    let aws_auth_before = control.aws_auth(&s.cluster.name).await;
    let discovery = discovery_function(aws.endpoint(), Duration::from_secs(30));
    let access = eks_access_function(&s, aws.endpoint(), Duration::from_secs(60));
    let discovery_cfn = Player::new(&discovery, "Custom::ClusterDiscovery").await;
    let access_cfn = Player::new(&access, "Custom::EksAccess").await;

    println!("Deploying stack {STACK}\n");
    event(
        "ResourceStatus",
        "LogicalResourceId",
        "ResourceType",
        "Detail",
    );
    let discovery_props = json!({
        "ClusterName": s.cluster.name,
        "InstanceProfile": s.hopsworks.instance_profile_name,
    });
    let found = step(
        &discovery_cfn,
        "CREATE",
        "ClusterDiscovery",
        "",
        discovery_props.clone(),
    )
    .await;
    // As the template wires it: !GetAtt ClusterDiscovery.RoleArn, the Lambda's Kubernetes access
    // through a role mapped as cluster admin (here: the cluster's creator).
    let access_props = json!({
        "ClusterName": found.attr("ClusterName"),
        "RoleArn": found.attr("RoleArn"),
        "KubernetesRoleArn": s.identities.creator.role_arn,
    });
    let mapped = step(&access_cfn, "CREATE", "EksAccess", "", access_props.clone()).await;

    outputs(
        "Outputs",
        &found,
        &[
            "VpcId",
            "VpcCidr",
            "SubnetIds",
            "PublicSubnetIds",
            "ClusterSecurityGroupId",
            "AuthenticationMode",
            "RoleArn",
            "RoleArnWithoutPath",
        ],
    );
    println!("{:<24} {}", "AccessMethod", mapped.attr("AccessMethod"));
    println!("{:<24} {}", "AccessChange", mapped.attr("Change"));
    println!("{:-<100}", "");

    let hopsworks = KubeAs::new(&s, &s.cluster.name, &s.identities.hopsworks);
    match hopsworks.whoami().await {
        Ok((user, groups)) => println!(
            "\nThe Hopsworks role reaches the cluster: Kubernetes sees it as {user:?} in {groups:?}"
        ),
        Err(status) => {
            println!("\nThe Hopsworks role does not reach the cluster (HTTP {status})");
            std::process::exit(1);
        }
    }

    println!("\nDeleting stack {STACK}\n");
    step(
        &access_cfn,
        "DELETE",
        "EksAccess",
        &mapped.physical_id,
        access_props,
    )
    .await;
    step(
        &discovery_cfn,
        "DELETE",
        "ClusterDiscovery",
        &found.physical_id,
        discovery_props,
    )
    .await;
    let aws_auth_after = control.aws_auth(&s.cluster.name).await;
    let same = aws_auth_after["data"] == aws_auth_before["data"];
    println!(
        "\naws-auth after delete: {}",
        if same {
            "byte for byte as before the stack"
        } else {
            "CHANGED"
        }
    );
    println!(
        "The Hopsworks role after delete: {}",
        match hopsworks.whoami().await {
            Err(401) => "no longer reaches the cluster (401)".to_owned(),
            other => format!("{other:?}"),
        }
    );
    if !same {
        std::process::exit(1);
    }
}
