//! The `EksAccess` custom resource: map the Hopsworks role into an EKS cluster (seed step 3),
//! through EKS access entries or a surgical edit of the aws-auth ConfigMap, and on Delete remove
//! exactly what it added.

mod access_entry;
pub mod aws_auth;
mod cluster;
mod error;
mod input;
pub mod token;

pub use access_entry::ADMIN_POLICY_TAG;
pub use aws_auth::OWNERS_ANNOTATION;
pub use aws_auth::map_roles::{self, RoleMapping};
pub use custom_resource::{OWNER_TAG, Owner};
pub use error::AccessError;
pub use input::{Input, Method, RoleArn};

/// Every AWS action this resource calls (`sts:GetCallerIdentity`, used to name the caller in a
/// 401/403 Reason, needs no permission): its role in the template grants exactly these.
pub const IAM_ACTIONS: &[&str] = &[
    "eks:DescribeCluster",
    "eks:DescribeAccessEntry",
    "eks:CreateAccessEntry",
    "eks:TagResource",
    "eks:UntagResource",
    "eks:DeleteAccessEntry",
    "eks:AssociateAccessPolicy",
    "eks:DisassociateAccessPolicy",
    "eks:ListAssociatedAccessPolicies",
    "sts:AssumeRole",
];

use access_entry::AccessEntries;
use aws_auth::AwsAuth;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use cluster::ClusterInfo;
use custom_resource::aws::AwsError;
use custom_resource::{Action, Context, CustomResource, Failure, Outcome, Progress, Request};
use std::time::SystemTime;

const SESSION_NAME: &str = "hopsworks-eks-stack";

/// The resource, with the clients it calls.
#[derive(Debug, Clone)]
pub struct EksAccess {
    eks: aws_sdk_eks::Client,
    sts: aws_sdk_sts::Client,
    credentials: Option<SharedCredentialsProvider>,
}

impl EksAccess {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            eks: aws_sdk_eks::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            credentials: config.credentials_provider(),
        }
    }

    async fn map(&self, request: &Request, ctx: &Context) -> Result<Outcome, Failure> {
        let input = Input::parse(&request.properties)?;
        if input.role.has_path() {
            tracing::info!(
                given = %input.role.given,
                matched_as = %input.role.canonical,
                "the role ARN has an IAM path; aws-auth matches it without the path"
            );
        }
        ctx.step(format!("describing EKS cluster {}", input.cluster_name));
        let cluster = cluster::describe(&self.eks, &input.cluster_name).await?;
        let method = resolve(input.method, &cluster)?;
        let owner = Owner::of(request);
        let id = physical_id(&cluster.name, method);
        let mut outcome = Outcome::new(id.clone())
            .with("AccessMethod", method.as_str())
            .with("AuthenticationMode", cluster.authentication_mode.clone())
            .with("Username", input.username.clone())
            .with("DryRun", input.dry_run.to_string());
        match method {
            Method::AccessEntry => {
                ctx.step(format!(
                    "mapping {} through an EKS access entry",
                    input.role.given
                ));
                let entries = self.entries(&cluster, &input);
                let mapped = entries
                    .map(
                        &input.role.given,
                        &input.username,
                        &input.groups,
                        &owner,
                        input.dry_run,
                        ctx,
                        &id,
                    )
                    .await?;
                if let Some(old) = moved_from(request, &input) {
                    ctx.step(format!(
                        "removing the earlier access entry for {}",
                        old.given
                    ));
                    entries.unmap(&old.given, &owner, input.dry_run).await?;
                }
                outcome = outcome
                    .with("RoleArn", input.role.given.clone())
                    .with("Adopted", mapped.adopted.to_string())
                    .with("Change", mapped.summary);
            }
            _ => {
                let mapping = RoleMapping {
                    rolearn: input.role.canonical.clone(),
                    username: input.username.clone(),
                    groups: input.groups.clone(),
                };
                ctx.step("connecting to the Kubernetes API");
                let kube = self.aws_auth(&cluster, &input).await?;
                ctx.step(format!("mapping {} in aws-auth", mapping.rolearn));
                let applied = self
                    .explain(kube.map(&owner, &mapping, input.dry_run, ctx, &id).await)
                    .await?;
                outcome = outcome
                    .with("RoleArn", input.role.canonical.clone())
                    .with("Change", applied.summary);
            }
        }
        Ok(outcome)
    }

    /// Remove what this resource owns, found by its owner key (the tag on an access entry, the
    /// annotation on aws-auth), whatever id the Delete carries. A Delete of the failed-create
    /// marker comes after a Create that wrote nothing (the id is recorded before any write), so
    /// where that Create could not have got (properties that do not parse, a mode that allows
    /// no mapping, a Kubernetes API that refuses or cannot be reached) it succeeds.
    async fn unmap(&self, request: &Request, ctx: &Context) -> Result<(), Failure> {
        let marker = request.known_physical_id().is_none();
        let input = match Input::parse(&request.properties) {
            Ok(input) => input,
            Err(e) if marker => {
                tracing::info!(error = %e, "the failed Create's properties do not parse: it made nothing");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        ctx.step(format!("describing EKS cluster {}", input.cluster_name));
        let cluster = match cluster::describe(&self.eks, &input.cluster_name).await {
            Ok(cluster) => cluster,
            Err(AccessError::Cluster(eks_cluster::ClusterError::NotFound { .. })) => {
                tracing::info!("the cluster is gone: nothing to unmap");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // The id says how the mapping was made, whatever the cluster's mode is now; the marker
        // says nothing, so the properties decide, as they did for the Create.
        let method = match request.known_physical_id().and_then(method_of) {
            Some(method) => method,
            None => match resolve(input.method, &cluster) {
                Ok(method) => method,
                Err(e) if marker => {
                    tracing::info!(error = %e, "the failed Create could not map anything");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            },
        };
        let owner = Owner::of(request);
        let summary = match method {
            Method::AccessEntry => {
                ctx.step(format!(
                    "removing the access entry for {}",
                    input.role.given
                ));
                self.entries(&cluster, &input)
                    .unmap(&input.role.given, &owner, input.dry_run)
                    .await?
            }
            _ => {
                ctx.step("connecting to the Kubernetes API");
                let unmapped = match self.aws_auth(&cluster, &input).await {
                    Ok(kube) => {
                        ctx.step("removing this stack's entry from aws-auth");
                        kube.unmap(&owner, input.dry_run, ctx).await
                    }
                    Err(e) => Err(e),
                };
                match unmapped {
                    Ok(applied) => applied.summary,
                    // Not assumable, not reachable, refused: the failed Create met the same, and
                    // it records its id before any write, so it wrote nothing.
                    Err(e) if marker && (e.is_kubernetes_access() || e.is_assume_role()) => {
                        tracing::warn!(
                            error = %e,
                            "aws-auth cannot be read; the failed Create could not have written it either"
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(self.named(e).await.into()),
                }
            }
        };
        tracing::info!(change = %summary, "unmapped");
        Ok(())
    }

    fn entries<'a>(&'a self, cluster: &'a ClusterInfo, input: &'a Input) -> AccessEntries<'a> {
        AccessEntries {
            eks: &self.eks,
            cluster: &cluster.name,
            partition: &input.role.partition,
            tags: &input.tags,
        }
    }

    /// A Kubernetes client for the cluster, authenticated as this function or as
    /// `KubernetesRoleArn`.
    async fn aws_auth(&self, cluster: &ClusterInfo, input: &Input) -> Result<AwsAuth, AccessError> {
        let (credentials, identity) = match &input.kubernetes_role {
            Some(role) => (self.assume(role).await?, role.given.clone()),
            None => (
                self.own_credentials().await?,
                "(this function's execution role)".to_owned(),
            ),
        };
        let token = token::token(
            &credentials,
            &cluster.region,
            &cluster.name,
            SystemTime::now(),
        )
        .map_err(AccessError::Token)?;
        AwsAuth::connect(
            &cluster.name,
            &cluster.endpoint,
            &cluster.ca_pem,
            token.into_secret(),
            identity,
        )
    }

    async fn own_credentials(&self) -> Result<Credentials, AccessError> {
        let provider = self.credentials.as_ref().ok_or(AccessError::Answer {
            call: "credentials",
            problem: "no AWS credentials in the environment",
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(AccessError::Credentials)
    }

    async fn assume(&self, role: &RoleArn) -> Result<Credentials, AccessError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(&role.given)
            .role_session_name(SESSION_NAME)
            .send()
            .await
            .map_err(|e| AccessError::AssumeRole {
                role: role.given.clone(),
                source: AwsError::new(e),
            })?;
        let c = out.credentials.ok_or(AccessError::Answer {
            call: "sts:AssumeRole",
            problem: "the answer has no credentials",
        })?;
        Ok(Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            None,
            "assume-role",
        ))
    }

    /// Name this function's own identity in 401/403 Reasons (one STS call, on that path only).
    async fn explain<T>(&self, result: Result<T, AccessError>) -> Result<T, AccessError> {
        match result {
            Ok(value) => Ok(value),
            Err(e) => Err(self.named(e).await),
        }
    }

    async fn named(&self, err: AccessError) -> AccessError {
        let own = "(this function's execution role)";
        match err {
            AccessError::Unauthorized { cluster, identity } if identity == own => {
                AccessError::Unauthorized {
                    cluster,
                    identity: self.caller().await,
                }
            }
            AccessError::Forbidden {
                cluster,
                identity,
                message,
            } if identity == own => AccessError::Forbidden {
                cluster,
                identity: self.caller().await,
                message,
            },
            other => other,
        }
    }

    async fn caller(&self) -> String {
        match self.sts.get_caller_identity().send().await {
            Ok(out) => out.arn.unwrap_or_default(),
            Err(_) => "(this function's execution role)".to_owned(),
        }
    }
}

impl CustomResource for EksAccess {
    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.map(request, ctx).await.map(Progress::Done)
    }

    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.map(request, ctx).await.map(Progress::Done)
    }

    async fn delete(&self, request: &Request, ctx: &Context) -> Result<Progress<()>, Failure> {
        self.unmap(request, ctx).await.map(Progress::Done)
    }
}

/// Which mechanism to use on this cluster.
pub fn resolve(method: Method, cluster: &ClusterInfo) -> Result<Method, AccessError> {
    match method {
        Method::Auto if cluster.access_entries_enabled() => Ok(Method::AccessEntry),
        Method::Auto => Ok(Method::AwsAuth),
        Method::AccessEntry if !cluster.access_entries_enabled() => {
            Err(AccessError::AccessEntriesDisabled {
                name: cluster.name.clone(),
                mode: cluster.authentication_mode.clone(),
            })
        }
        Method::AwsAuth if !cluster.aws_auth_enabled() => Err(AccessError::AwsAuthIgnored {
            name: cluster.name.clone(),
        }),
        chosen => Ok(chosen),
    }
}

const ID_PREFIX: &str = "eks-access:";

/// Stable across updates of the role, user name or groups; a new cluster or mechanism is a
/// replacement (CloudFormation then deletes the old mapping with the old id).
fn physical_id(cluster: &str, method: Method) -> String {
    format!("{ID_PREFIX}{cluster}:{}", method.as_str())
}

fn method_of(physical_id: &str) -> Option<Method> {
    match physical_id.strip_prefix(ID_PREFIX)?.rsplit(':').next()? {
        "access-entry" => Some(Method::AccessEntry),
        "aws-auth" => Some(Method::AwsAuth),
        _ => None,
    }
}

/// On an Update that changed the role, the role mapped before.
fn moved_from(request: &Request, input: &Input) -> Option<RoleArn> {
    let Action::Update { old_properties, .. } = &request.action else {
        return None;
    };
    let old = Input::parse(old_properties).ok()?;
    (old.cluster_name == input.cluster_name && old.role.given != input.role.given)
        .then_some(old.role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(mode: &str) -> ClusterInfo {
        ClusterInfo {
            name: "demo".into(),
            region: "us-east-2".into(),
            endpoint: "https://x".into(),
            ca_pem: Vec::new(),
            authentication_mode: mode.into(),
        }
    }

    #[test]
    fn auto_picks_access_entries_only_where_the_cluster_allows_them() {
        assert_eq!(
            resolve(Method::Auto, &cluster("CONFIG_MAP")).unwrap(),
            Method::AwsAuth
        );
        assert_eq!(
            resolve(Method::Auto, &cluster("API_AND_CONFIG_MAP")).unwrap(),
            Method::AccessEntry
        );
        assert_eq!(
            resolve(Method::Auto, &cluster("API")).unwrap(),
            Method::AccessEntry
        );
        assert!(resolve(Method::AccessEntry, &cluster("CONFIG_MAP")).is_err());
        assert!(resolve(Method::AwsAuth, &cluster("API")).is_err());
    }

    #[test]
    fn the_id_remembers_the_mechanism() {
        assert_eq!(
            method_of(&physical_id("demo", Method::AwsAuth)),
            Some(Method::AwsAuth)
        );
        assert_eq!(
            method_of(&physical_id("demo", Method::AccessEntry)),
            Some(Method::AccessEntry)
        );
        assert_eq!(method_of("failed-create:x"), None);
    }
}
