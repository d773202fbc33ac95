//! The bench a stack deploys to, and what `make demo` deploys with.

use super::observe::observable_state;
use super::{Stack, with_client};
use crate::aws::AwsBench;
use crate::faults::FaultProxy;
use serde_json::{Map, Value, json};

/// The bench a stack deploys to: moto (seeded, plus the Hopsworks.ai cross-account role), the
/// fault proxy in front of it that the stack's functions call, and the doubles' control API.
pub struct StackBench {
    pub aws: AwsBench,
    pub proxy: FaultProxy,
    pub control: crate::control::Control,
}

impl StackBench {
    pub async fn start() -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let control = crate::control::Control::new(&aws.seeded.control_endpoint);
        create_cross_account_role(&aws).await;
        Self {
            aws,
            proxy,
            control,
        }
    }

    /// A stack of `template` with `parameters`, its functions calling AWS through the proxy.
    pub fn stack(
        &self,
        template: Value,
        parameters: Map<String, Value>,
    ) -> Result<Stack<'_>, String> {
        let mut stack = Stack::new(&self.aws, &self.proxy, template, parameters)?;
        // The bench's network: AWS is moto behind the proxy, Hopsworks.ai is its double. The
        // template itself has no way to send the API key anywhere but api.hopsworks.ai.
        stack.function_env = vec![
            (
                "AWS_ENDPOINT_URL".to_owned(),
                self.proxy.endpoint().to_owned(),
            ),
            (
                "HOPSWORKS_API_URL".to_owned(),
                self.aws.seeded.hopsworks_ai.api_url.clone(),
            ),
        ];
        Ok(stack)
    }

    /// What the stack may change in the account ([`observable_state`]).
    pub async fn state(&self) -> Value {
        observable_state(&self.aws, &self.control).await
    }
}

/// The parameters `make demo` deploys with: the bench's cluster (CONFIG_MAP: Kubernetes calls as its
/// creator), its instance profile, the Hopsworks.ai double, a 1 s poll.
pub fn demo_parameters(s: &crate::aws::Seeded) -> Map<String, Value> {
    [
        ("EksClusterName", s.cluster.name.as_str()),
        (
            "HopsworksInstanceProfile",
            s.hopsworks.instance_profile_name.as_str(),
        ),
        ("KubernetesRoleArn", s.identities.creator.role_arn.as_str()),
        ("HopsworksPrincipalType", "role"),
        ("HopsworksPrincipal", CROSS_ACCOUNT_ROLE),
        ("CreateHopsworksCluster", "true"),
        (
            "HopsworksApiKeySecretArn",
            s.hopsworks_ai.secret_arn.as_str(),
        ),
        ("HopsworksClusterName", "fs-demo"),
        ("HopsworksBucketName", s.storage.bucket.as_str()),
        ("HopsworksPollIntervalSeconds", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect()
}

/// The role the buyer connected to Hopsworks.ai (seed step 5 gives it ECR delete rights).
pub const CROSS_ACCOUNT_ROLE: &str = "hopsworks-ai-cross-account";

pub async fn create_cross_account_role(aws: &AwsBench) {
    aws.query(&with_client(&format!(
        r#"
client("iam").create_role(RoleName="{CROSS_ACCOUNT_ROLE}", AssumeRolePolicyDocument=json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::822623301872:root"}}, "Action": "sts:AssumeRole"}}]}}))
print("true")
"#
    )))
    .await;
}
