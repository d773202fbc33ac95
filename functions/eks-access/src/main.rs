//! Lambda entry point of the `EksAccess` custom resource.
#![recursion_limit = "256"]

use eks_access::EksAccess;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    let config = aws_config::load_from_env().await;
    custom_resource::serve(EksAccess::new(&config)).await
}
