//! The whole stack: `templates/template.yaml`, expanded by the real SAM translator, deployed by the
//! bench's engine (custom resources as compiled functions, IAM and Logs in moto), then deleted.

use serde_json::{Value, json};
use system_tests::aws::AwsBench;
use system_tests::control::Control;
use system_tests::faults::FaultProxy;
use system_tests::kube::KubeAs;
use system_tests::stack::{self, Stack};

async fn template() -> Value {
    Stack::expand(&system_tests::workspace().join("templates/template.yaml"))
        .await
        .expect("the translator expands the template")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_does_the_guide_and_its_delete_leaves_the_account_as_before() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = Control::new(&aws.seeded.control_endpoint);
    stack::create_cross_account_role(&aws).await;
    control
        .hopsworks_behaviour(json!({"leave_ecr_repos": true}))
        .await;
    let before = stack::observable_state(&aws, &control).await;
    let s = aws.seeded.clone();

    let mut deployed =
        Stack::new(&aws, &proxy, template().await, stack::demo_parameters(&s)).expect("parameters");
    deployed.function_env = vec![("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint().to_owned())];
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
    let during = stack::observable_state(&aws, &control).await;
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
    assert_eq!(stack::observable_state(&aws, &control).await, before);
    assert_eq!(hopsworks.whoami().await, Err(401));
    let clusters = control.hopsworks_clusters().await;
    assert!(
        clusters.iter().all(|c| c["state"] == "terminated"),
        "{clusters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_midway_rolls_back_cleanly() {
    let aws = AwsBench::start().await;
    let proxy = FaultProxy::start(aws.endpoint()).await;
    let control = Control::new(&aws.seeded.control_endpoint);
    stack::create_cross_account_role(&aws).await;
    // The Hopsworks cluster, the last resource, ends in an error state.
    control
        .hopsworks_behaviour(json!({"fail_next_with": "no capacity for m5.2xlarge"}))
        .await;
    let before = stack::observable_state(&aws, &control).await;
    let mut deployed = Stack::new(
        &aws,
        &proxy,
        template().await,
        stack::demo_parameters(&aws.seeded),
    )
    .expect("parameters");
    deployed.function_env = vec![("AWS_ENDPOINT_URL".to_owned(), proxy.endpoint().to_owned())];
    let reason = deployed.create().await.expect_err("the create fails");
    assert!(reason.contains("no capacity for m5.2xlarge"), "{reason}");
    assert_eq!(
        stack::observable_state(&aws, &control).await,
        before,
        "the rollback left changes"
    );
    let clusters = control.hopsworks_clusters().await;
    assert!(
        clusters.iter().all(|c| c["state"] == "terminated"),
        "{clusters:?}"
    );
}
