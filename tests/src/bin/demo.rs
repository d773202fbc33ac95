//! `make demo`: the stack's custom resources against the local bench, no AWS account needed.
//!
//! Today the stack is one resource, ClusterDiscovery: it is created, its outputs printed as a user
//! reads them after `sam deploy`, and the stack deleted again. Later resources join here.

use serde_json::json;
use std::time::{Duration, Instant};
use system_tests::aws::AwsBench;
use system_tests::cloudformation::{Answer, Player};
use system_tests::discovery_function;

const STACK: &str = "hopsworks-eks";

fn event(status: &str, logical_id: &str, kind: &str, detail: &str) {
    println!("{status:<20} {logical_id:<20} {kind:<28} {detail}");
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
    }
}

#[tokio::main]
async fn main() {
    println!("Starting the local bench (moto plays AWS; nothing leaves this machine)…");
    let aws = AwsBench::start().await;
    let seeded = aws.seeded.clone();
    println!(
        "Account {} in {}: EKS cluster {}, instance profile {}\n",
        seeded.account_id,
        seeded.region,
        seeded.cluster.name,
        seeded.hopsworks.instance_profile_name
    );
    let function = discovery_function(aws.endpoint(), Duration::from_secs(30));
    let kind = "Custom::ClusterDiscovery";
    let cfn = Player::new(&function, kind).await;
    let properties = json!({
        "ClusterName": seeded.cluster.name,
        "InstanceProfile": seeded.hopsworks.instance_profile_name,
    });

    println!("Deploying stack {STACK}\n");
    event(
        "ResourceStatus",
        "LogicalResourceId",
        "ResourceType",
        "Detail",
    );
    event("CREATE_IN_PROGRESS", "ClusterDiscovery", kind, "");
    let started = Instant::now();
    let created = cfn.create("ClusterDiscovery", properties.clone()).await;
    report(&created, "CREATE", started, kind);
    if !created.is_success() {
        std::process::exit(1);
    }

    println!("\nOutputs of ClusterDiscovery (Fn::GetAtt ClusterDiscovery.<Key>)");
    println!("{:-<100}", "");
    for (key, value) in &created.data {
        println!("{key:<24} {}", value.as_str().unwrap_or_default());
    }
    println!("{:-<100}", "");

    println!("\nDeleting stack {STACK}\n");
    event("DELETE_IN_PROGRESS", "ClusterDiscovery", kind, "");
    let started = Instant::now();
    let deleted = cfn
        .delete("ClusterDiscovery", &created.physical_id, properties)
        .await;
    report(&deleted, "DELETE", started, kind);
    println!(
        "\nDone: {} function start(s), every request answered exactly once.",
        function.cold_starts()
    );
    if !deleted.is_success() {
        std::process::exit(1);
    }
}
