//! `make demo`: deploy `templates/template.yaml` against the local bench, no AWS account needed.
//!
//! The template is expanded by the real SAM translator, then created resource by resource in
//! dependency order (custom resources run as the compiled functions through the Lambda Runtime API
//! and answer over the ResponseURL; IAM and Logs resources are applied to moto). The outputs are
//! printed, the Hopsworks role is shown reaching the cluster, the stack is updated (ports 80/443
//! from another source), and the stack is deleted in reverse order, after which aws-auth, the
//! ingress rules, the policies and ECR are shown as they were.

use serde_json::json;
use system_tests::aws::AwsBench;
use system_tests::control::Control;
use system_tests::faults::FaultProxy;
use system_tests::kube::KubeAs;
use system_tests::stack::{self, STACK_NAME, Stack};

#[tokio::main]
async fn main() {
    println!(
        "Starting the local bench: moto plays AWS, doubles play the Kubernetes API and Hopsworks.ai; nothing leaves this machine…"
    );
    let aws = AwsBench::start().await;
    let s = aws.seeded.clone();
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = Control::new(&s.control_endpoint);
    stack::create_cross_account_role(&aws).await;
    control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    println!(
        "Account {} in {}: EKS cluster {} (authentication mode CONFIG_MAP), instance profile {}\n",
        s.account_id, s.region, s.cluster.name, s.hopsworks.instance_profile_name
    );
    let before = stack::observable_state(&aws, &control).await;

    let template_path = system_tests::workspace().join("templates/template.yaml");
    let template = match Stack::expand(&template_path).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let mut stack = match Stack::new(&aws, &proxy, template, stack::demo_parameters(&s)) {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    stack.function_env = vec![("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint().to_owned())];

    println!(
        "Deploying stack {STACK_NAME} (templates/template.yaml, expanded by aws-sam-translator)\n"
    );
    if let Err(reason) = stack.create().await {
        eprintln!("\nstack {STACK_NAME} failed and was rolled back: {reason}");
        std::process::exit(1);
    }
    println!("\nOutputs");
    println!("{:-<110}", "");
    for (key, value) in stack.outputs().unwrap_or_default() {
        println!("{key:<28} {value}");
    }
    println!("{:-<110}", "");

    let hopsworks = KubeAs::new(&s, &s.cluster.name, &s.identities.hopsworks);
    match hopsworks.whoami().await {
        Ok((user, groups)) => println!(
            "\nThe Hopsworks role reaches the cluster: Kubernetes sees it as {user:?} in {groups:?}"
        ),
        Err(status) => println!("\nThe Hopsworks role does not reach the cluster (HTTP {status})"),
    }

    let office = "192.0.2.0/24";
    println!(
        "\nUpdating stack {STACK_NAME}: IngressSource {office} (ports 80/443 from an office network instead of the VPC)\n"
    );
    let changes = [("IngressSource".to_owned(), json!(office))].into_iter().collect();
    if let Err(reason) = stack.update(changes).await {
        eprintln!("\nthe update of stack {STACK_NAME} failed and was rolled back: {reason}");
        std::process::exit(1);
    }
    println!(
        "\nIngress rules of the cluster security group now: {}",
        stack::ingress_rules(&aws).await.join(", ")
    );

    println!("\nDeleting stack {STACK_NAME}\n");
    if let Err(reason) = stack.delete().await {
        eprintln!("\nstack {STACK_NAME} could not be deleted: {reason}");
        std::process::exit(1);
    }
    let after = stack::observable_state(&aws, &control).await;
    println!();
    for (what, label) in [
        ("aws_auth", "aws-auth"),
        ("ingress", "ingress rules of the cluster security group"),
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
        println!(
            "{label:<56} {}",
            if a == b {
                "as before the stack"
            } else {
                "CHANGED"
            }
        );
    }
    let clusters = control.hopsworks_clusters().await;
    println!(
        "{:<56} {}",
        "Hopsworks clusters",
        if clusters.iter().all(|c| c["state"] == "terminated") {
            "all terminated"
        } else {
            "STILL RUNNING"
        }
    );
    if before != after {
        std::process::exit(1);
    }
}
