//! Lambda entry point of the `ClusterDiscovery` custom resource.
#![recursion_limit = "256"]

use cluster_discovery::{Clients, ClusterDiscovery};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = aws_config::load_from_env().await;
    let clients = Clients {
        eks: aws_sdk_eks::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        iam: aws_sdk_iam::Client::new(&config),
        s3: aws_sdk_s3::Client::new(&config),
    };
    custom_resource::serve(ClusterDiscovery::new(clients)).await
}
