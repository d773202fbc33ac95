//! The `ClusterDiscovery` custom resource: read-only look-up of an EKS cluster's network and of the
//! role behind the Hopsworks instance profile, for the rest of the stack to use with `Fn::GetAtt`.
//! The same function serves the `Preflight` resource ([`preflight`]), told apart by its type.

mod discover;
mod error;
mod input;
pub mod preflight;

pub use custom_resource::arn::{Arn, role_arn_without_path};
pub use discover::{Clients, Discovered};
pub use error::DiscoveryError;
pub use input::{CLUSTER_NAME, INSTANCE_PROFILE, Input};

/// Every AWS action this function calls (discovery and the pre-flight checks): its role in the
/// template grants exactly these (a test compares them, and the whole-system tests check every
/// call they see is listed).
pub const IAM_ACTIONS: &[&str] = &[
    "eks:DescribeCluster",
    "iam:GetInstanceProfile",
    "ec2:DescribeVpcs",
    "ec2:DescribeRouteTables",
    "s3:GetBucketLocation",
    "ec2:DescribeKeyPairs",
    "ec2:DescribeSubnets",
];

use custom_resource::{Action, Context, CustomResource, Failure, Outcome, Progress, Request};
use preflight::Checks;

/// The resource. Create and Update discover (or, for a `Custom::Preflight`, check); Delete
/// changes nothing.
#[derive(Debug, Clone)]
pub struct ClusterDiscovery {
    clients: Clients,
}

impl ClusterDiscovery {
    pub fn new(clients: Clients) -> Self {
        Self { clients }
    }

    async fn discover(&self, request: &Request, ctx: &Context) -> Result<Outcome, Failure> {
        let input = Input::parse(&request.properties)?;
        ctx.step(format!(
            "discovering EKS cluster {} and instance profile {}",
            input.cluster_name, input.instance_profile.name
        ));
        let found = self.clients.discover(&input).await?;
        tracing::info!(
            cluster_arn = %found.cluster_arn,
            vpc_id = %found.vpc_id,
            authentication_mode = %found.authentication_mode,
            role_arn = %found.role_arn,
            "discovered"
        );
        // The cluster ARN is the id: stable across updates unless the cluster changes, in which
        // case CloudFormation replaces the resource (and its Delete is a no-op).
        let mut outcome = Outcome::new(found.cluster_arn.clone());
        outcome.data = found.attributes();
        Ok(outcome)
    }

    /// The pre-flight checks; on Update only what changed ([`Checks::changed_since`]).
    async fn preflight(&self, request: &Request, ctx: &Context) -> Result<Outcome, Failure> {
        let mut checks = Checks::parse(&request.properties)?;
        if let Action::Update { old_properties, .. } = &request.action {
            // Old properties that no longer parse (a template change) check everything.
            let old = Checks::parse(old_properties).unwrap_or_default();
            checks = checks.changed_since(&old);
        }
        ctx.step("checking the Hopsworks bucket, SSH key pair and subnet");
        let failed = self.clients.preflight(&checks).await;
        if !failed.is_empty() {
            return Err(Failure::new(preflight::reason(&failed)));
        }
        tracing::info!(?checks, "pre-flight checks passed");
        // One id for the stack's life: an Update never replaces it.
        Ok(Outcome::new(request.envelope.logical_resource_id.clone()))
    }

    async fn create_or_update(&self, request: &Request, ctx: &Context) -> Result<Outcome, Failure> {
        if request.envelope.resource_type == preflight::RESOURCE_TYPE {
            self.preflight(request, ctx).await
        } else {
            self.discover(request, ctx).await
        }
    }
}

impl CustomResource for ClusterDiscovery {
    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.create_or_update(request, ctx)
            .await
            .map(Progress::Done)
    }

    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.create_or_update(request, ctx)
            .await
            .map(Progress::Done)
    }

    async fn delete(&self, _request: &Request, _ctx: &Context) -> Result<Progress<()>, Failure> {
        Ok(Progress::Done(())) // read-only: nothing was made, nothing to remove
    }
}
