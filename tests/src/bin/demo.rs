//! `make demo`: deploy `templates/template.yaml` against the local bench, no AWS account needed.
//!
//! The template is expanded by the real SAM translator, then created resource by resource in
//! dependency order (custom resources run as the compiled functions through the Lambda Runtime API
//! and answer over the ResponseURL; IAM, Logs, EC2 and EKS resources are applied to moto). The
//! outputs are printed, the Hopsworks role is shown reaching the cluster, the stack is updated
//! (ports 80/443 from another source; on the existing cluster's path also the Hopsworks worker
//! count, changed in place), and the stack is deleted in reverse order: the Hopsworks cluster is
//! backed up first (the default OnDelete), the backup's id is printed from the Hopsworks.ai double,
//! and aws-auth, the ingress rules, the policies, ECR and the account's networks are shown as they
//! were.
//!
//! Two paths, both by default (`demo existing` or `demo new` runs one): the guide's, on the
//! account's existing EKS cluster; and a stack that creates its own EKS cluster (VPC, NAT, node
//! group, access entries) and deletes it last.

use serde_json::{Map, Value, json};
use system_tests::kube::KubeAs;
use system_tests::stack::{self, STACK_NAME, Stack, StackBench};

/// The name the new-cluster path gives its EKS cluster.
const NEW_CLUSTER: &str = "hopsworks-eks-new";

#[tokio::main]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "both".to_owned());
    let (existing, new) = match which.as_str() {
        "both" => (true, true),
        "existing" => (true, false),
        "new" => (false, true),
        other => {
            eprintln!("demo: unknown path {other:?}: give existing, new, or nothing for both");
            std::process::exit(2);
        }
    };
    println!(
        "Starting the local bench: moto plays AWS, doubles play the Kubernetes API and Hopsworks.ai; nothing leaves this machine…"
    );
    let bench = StackBench::start().await;
    let s = bench.aws.seeded.clone();
    bench
        .control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let template_path = system_tests::workspace().join("templates/template.yaml");
    let template = Stack::expand(&template_path)
        .await
        .unwrap_or_else(|e| fail(&e));

    let mut ok = true;
    if existing {
        println!(
            "\n=== Path 1: the existing EKS cluster {} (authentication mode CONFIG_MAP: aws-auth), instance profile {}\n",
            s.cluster.name, s.hopsworks.instance_profile_name
        );
        let parameters = stack::demo_parameters(&s);
        ok &= lifecycle(&bench, &template, parameters, &s.cluster.name, true).await;
    }
    if new {
        println!(
            "\n=== Path {}: no EKS cluster yet: the stack creates {NEW_CLUSTER} (its own VPC, access entries, a node group)\n",
            if existing { 2 } else { 1 }
        );
        let mut parameters = stack::demo_parameters(&s);
        for (k, v) in [
            ("EksClusterName", NEW_CLUSTER),
            ("CreateEksCluster", "true"),
            ("KubernetesRoleArn", ""),
            ("HopsworksClusterName", "fs-demo-new"),
        ] {
            parameters.insert(k.to_owned(), json!(v));
        }
        ok &= lifecycle(&bench, &template, parameters, NEW_CLUSTER, false).await;
    }
    if !ok {
        std::process::exit(1);
    }
}

fn fail(reason: &str) -> ! {
    eprintln!("{reason}");
    std::process::exit(1)
}

/// Create, show, update (with `day2`, the Hopsworks worker count too), delete; true when the
/// account reads as before afterwards and the Hopsworks cluster was backed up and terminated.
async fn lifecycle(
    bench: &StackBench,
    template: &Value,
    parameters: Map<String, Value>,
    cluster: &str,
    day2: bool,
) -> bool {
    let aws = &bench.aws;
    let s = &aws.seeded;
    let before = bench.state().await;
    let networks_before = stack::networks_and_clusters(aws).await;
    let mut stack = bench
        .stack(template.clone(), parameters)
        .unwrap_or_else(|e| fail(&e));

    println!(
        "Deploying stack {STACK_NAME} (templates/template.yaml, expanded by aws-sam-translator)\n"
    );
    if let Err(reason) = stack.create().await {
        fail(&format!(
            "\nstack {STACK_NAME} failed and was rolled back: {reason}"
        ));
    }
    println!("\nOutputs");
    println!("{:-<110}", "");
    for (key, value) in stack.outputs().unwrap_or_default() {
        println!("{key:<28} {value}");
    }
    println!("{:-<110}", "");

    let hopsworks = KubeAs::described(aws, cluster, &s.identities.hopsworks).await;
    match hopsworks.whoami().await {
        Ok((user, groups)) => println!(
            "\nThe Hopsworks role reaches {cluster}: Kubernetes sees it as {user:?} in {groups:?}"
        ),
        Err(status) => println!("\nThe Hopsworks role does not reach {cluster} (HTTP {status})"),
    }

    let office = "192.0.2.0/24";
    println!(
        "\nUpdating stack {STACK_NAME}: IngressSource {office} (ports 80/443 from an office network instead of the VPC)\n"
    );
    let changes = [("IngressSource".to_owned(), json!(office))]
        .into_iter()
        .collect();
    if let Err(reason) = stack.update(changes).await {
        fail(&format!(
            "\nthe update of stack {STACK_NAME} failed and was rolled back: {reason}"
        ));
    }
    let group = output(&stack, "ClusterSecurityGroupId");
    println!(
        "\nIngress rules of {group} now: {}",
        stack::ingress_rules_of(aws, &group).await.join(", ")
    );

    let hopsworks_id = output(&stack, "HopsworksClusterId");
    let mut workers_changed = true;
    if day2 {
        let before = workers(&bench.control.hopsworks_cluster(&hopsworks_id).await);
        let wanted = before + 1;
        println!(
            "\nUpdating stack {STACK_NAME}: HopsworksWorkerCount {wanted} (the Hopsworks cluster has {before}; workers are added in place, no new cluster)\n"
        );
        let changes = [("HopsworksWorkerCount".to_owned(), json!(wanted.to_string()))]
            .into_iter()
            .collect();
        if let Err(reason) = stack.update(changes).await {
            fail(&format!(
                "\nthe update of stack {STACK_NAME} failed and was rolled back: {reason}"
            ));
        }
        let now = bench.control.hopsworks_cluster(&hopsworks_id).await;
        println!(
            "\nHopsworks cluster {hopsworks_id} now: {} workers, {} (the same cluster: HopsworksClusterId {})",
            workers(&now),
            now["state"].as_str().unwrap_or("?"),
            output(&stack, "HopsworksClusterId")
        );
        workers_changed =
            workers(&now) == wanted && output(&stack, "HopsworksClusterId") == hopsworks_id;
    }

    println!(
        "\nDeleting stack {STACK_NAME} (HopsworksOnDelete backup-then-terminate, the default: a backup first)\n"
    );
    if let Err(reason) = stack.delete().await {
        fail(&format!(
            "\nstack {STACK_NAME} could not be deleted: {reason}"
        ));
    }
    let after = bench.state().await;
    let networks_after = stack::networks_and_clusters(aws).await;
    println!();
    let same = |b: &Value, a: &Value| {
        if a == b {
            "as before the stack"
        } else {
            "CHANGED"
        }
    };
    for (what, label) in [
        ("aws_auth", "aws-auth of the existing cluster"),
        ("ingress", "ingress rules of its security group"),
        (
            "role_policies",
            "inline policies of the Hopsworks instance-profile role",
        ),
        (
            "cross_account_policies",
            "inline policies of the Hopsworks.ai cross-account role",
        ),
        ("ecr", "ECR repositories"),
    ] {
        let (b, a) = if what == "aws_auth" {
            (&before["aws_auth"], &after["aws_auth"])
        } else {
            (&before["aws"][what], &after["aws"][what])
        };
        println!("{label:<56} {}", same(b, a));
    }
    println!(
        "{:<56} {}",
        "VPCs, subnets, NAT gateways, addresses, EKS clusters",
        same(&networks_before, &networks_after)
    );
    let clusters = bench.control.hopsworks_clusters().await;
    let terminated = clusters.iter().all(|c| c["state"] == "terminated");
    println!(
        "{:<56} {}",
        "Hopsworks clusters",
        if terminated {
            "all terminated"
        } else {
            "STILL RUNNING"
        }
    );
    // The backup the Delete took, as Hopsworks.ai keeps it after the cluster and the stack.
    let backups: Vec<Value> = bench
        .control
        .hopsworks_backups()
        .await
        .into_iter()
        .filter(|b| b["clusterId"] == hopsworks_id.as_str())
        .collect();
    let backed_up = backups.iter().any(|b| b["state"] == "succeed");
    for b in &backups {
        println!(
            "{:<56} {} ({}, {})",
            format!("Backup of Hopsworks cluster {hopsworks_id}"),
            b["backupId"].as_str().unwrap_or("?"),
            b["backupName"].as_str().unwrap_or("?"),
            b["state"].as_str().unwrap_or("?")
        );
    }
    if !backed_up {
        println!(
            "{:<56} NONE",
            format!("Backup of Hopsworks cluster {hopsworks_id}")
        );
    } else {
        println!("  (restore it with HopsworksRestoreFromBackupId=<backup id> on a new stack)");
    }
    before == after
        && networks_before == networks_after
        && terminated
        && backed_up
        && workers_changed
}

/// The stack output `key` ("" when there is none).
fn output(stack: &Stack, key: &str) -> String {
    stack
        .outputs()
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A Hopsworks cluster's workers, as the double shows it (every group's count).
fn workers(cluster: &Value) -> u64 {
    cluster["clusterConfiguration"]["workers"]
        .as_array()
        .map(|groups| groups.iter().filter_map(|g| g["count"].as_u64()).sum())
        .unwrap_or(0)
}
