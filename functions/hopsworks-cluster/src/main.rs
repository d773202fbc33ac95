//! Lambda entry point of the `HopsworksCluster` custom resource.
#![recursion_limit = "256"]

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use custom_resource::Reinvoke;
use hopsworks_cluster::HopsworksCluster;

/// Hands a long wait on to a new asynchronous invocation of this same function.
struct SelfInvoke(aws_sdk_lambda::Client);

impl Reinvoke for SelfInvoke {
    async fn reinvoke(&self, function_arn: &str, payload: Vec<u8>) -> Result<(), String> {
        self.0
            .invoke()
            .function_name(function_arn)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                format!(
                    "lambda:Invoke failed: {}",
                    custom_resource::aws::sdk_error_message(&e)
                )
            })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = aws_config::load_from_env().await;
    let resource = HopsworksCluster {
        secrets: aws_sdk_secretsmanager::Client::new(&config),
        ecr: aws_sdk_ecr::Client::new(&config),
        api_url: std::env::var("HOPSWORKS_API_URL")
            .unwrap_or_else(|_| hopsworks_ai::DEFAULT_BASE_URL.to_owned()),
        region: config.region().map(ToString::to_string).unwrap_or_default(),
        retry: hopsworks_ai::Retry::default(),
    };
    custom_resource::serve_continuing(resource, SelfInvoke(aws_sdk_lambda::Client::new(&config)))
        .await
}
