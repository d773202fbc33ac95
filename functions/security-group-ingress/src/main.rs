//! Lambda entry point of the `SecurityGroupIngress` custom resource.
#![recursion_limit = "256"]

use security_group_ingress::SecurityGroupIngress;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = aws_config::load_from_env().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    custom_resource::serve(SecurityGroupIngress { ec2 }).await
}
