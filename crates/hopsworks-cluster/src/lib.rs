//! The `HopsworksCluster` custom resource (seed step 6): create a Hopsworks.ai cluster with EKS
//! and ECR enabled and wait until it runs; on Delete terminate it, wait until it is gone, and
//! delete its ECR repositories (`<cluster id>/…`, nothing else).
//!
//! Creating or terminating takes tens of minutes and Lambda stops at 15: the wait hands itself on
//! to a new invocation ([`Progress::Continue`]) under one overall deadline; only the last
//! invocation answers CloudFormation.

mod aws;
mod input;

pub use input::{IN_PLACE, Settings, settings_fingerprint};

/// Every AWS action this resource calls: its role in the template grants exactly these.
pub const IAM_ACTIONS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "ecr:DescribeRepositories",
    "ecr:DeleteRepository",
    "lambda:InvokeFunction",
];

use custom_resource::{Action, Context, CustomResource, Failure, Outcome, Progress, Request};
use hopsworks_ai::{Client, Cluster, Retry, Wait};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Tag on clusters this resource creates: `<stack id>#<logical id>`, so a duplicate delivery of
/// the same Create finds its cluster instead of making a second one.
pub const OWNER_TAG: &str = "hopsworks-eks-stack";
/// Tag on clusters this resource creates: [`settings_fingerprint`] of the properties it was
/// created with, so an Update can tell a real change from CloudFormation's rollback to them.
pub const SETTINGS_TAG: &str = "hopsworks-eks-stack-settings";
/// Time kept back to hand on to a new invocation.
const HAND_OVER: Duration = Duration::from_secs(3);

/// Where a wait is, carried from one invocation to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "waiting_for", rename_all = "snake_case")]
enum Waiting {
    Running { id: String },
    Gone { id: String },
}

#[derive(Debug, Clone)]
pub struct HopsworksCluster {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ecr: aws_sdk_ecr::Client,
    /// The Hopsworks.ai API (`HOPSWORKS_API_URL`, default `https://api.hopsworks.ai`).
    pub api_url: String,
    pub region: String,
    pub retry: Retry,
}

impl HopsworksCluster {
    async fn client(&self, secret_arn: &str, ctx: &Context) -> Result<Client, Failure> {
        ctx.step(format!(
            "reading the Hopsworks.ai API key from {secret_arn}"
        ));
        let key = aws::api_key(&self.secrets, secret_arn)
            .await
            .map_err(Failure::new)?;
        Client::new(&self.api_url, key, self.retry.clone())
            .map(|c| c.with_key_source(format!("secret {secret_arn}")))
            .map_err(Failure::from)
    }

    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        let settings = Settings::parse(&request.properties, &self.region)?;
        let client = self.client(&settings.secret_arn, ctx).await?;
        let id = match ctx.state() {
            Some(state) => waiting_id(state)?,
            None => {
                let fingerprint = settings_fingerprint(&request.properties);
                self.start(&client, &settings, &owner(request), &fingerprint, ctx)
                    .await?
            }
        };
        self.wait_running(&client, &id, &settings, ctx)
            .await
            .map_err(|f| f.with_physical_id(id.clone()))
    }

    /// POST the cluster, unless this request already made it (a duplicate delivery).
    async fn start(
        &self,
        client: &Client,
        settings: &Settings,
        owner: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Result<String, Failure> {
        let wanted = &settings.cluster;
        ctx.step(format!(
            "checking Hopsworks.ai for clusters using EKS cluster {}",
            wanted.eks_cluster_name
        ));
        let existing = client.list_clusters().await?;
        if let Some(ours) = existing
            .iter()
            .find(|c| c.name == wanted.name && c.tag(OWNER_TAG) == Some(owner))
        {
            tracing::info!(cluster_id = %ours.id, "this request already created the cluster: waiting for it");
            return Ok(ours.id.clone());
        }
        if let Some(other) = existing
            .iter()
            .find(|c| c.aws.eks_cluster_name == wanted.eks_cluster_name)
        {
            return Err(Failure::new(format!(
                "EKS cluster {} is already used by Hopsworks cluster {} ({}); an EKS cluster \
                 serves one Hopsworks cluster only: terminate that one first, or use another \
                 EKS cluster",
                wanted.eks_cluster_name, other.name, other.id
            )));
        }
        let mut cluster = wanted.clone();
        for (name, value) in [(OWNER_TAG, owner), (SETTINGS_TAG, fingerprint)] {
            cluster.tags.push(hopsworks_ai::model::Tag {
                name: name.to_owned(),
                value: value.to_owned(),
            });
        }
        ctx.step(format!("creating Hopsworks cluster {}", cluster.name));
        let id = client.create_cluster(&cluster).await?;
        tracing::info!(cluster_id = %id, "Hopsworks cluster requested");
        Ok(id)
    }

    async fn wait_running(
        &self,
        client: &Client,
        id: &str,
        settings: &Settings,
        ctx: &Context,
    ) -> Result<Progress<Outcome>, Failure> {
        let poll = Duration::from_secs(settings.poll_seconds);
        let deadline = ctx.first_started() + Duration::from_secs(settings.timeout_minutes * 60);
        loop {
            ctx.step(format!("waiting for Hopsworks cluster {id} to run"));
            let Some(cluster) = client.get_cluster(id).await? else {
                return Err(Failure::new(format!(
                    "Hopsworks cluster {id} disappeared while starting"
                )));
            };
            match hopsworks_ai::waiting_for_running(&cluster.state) {
                Wait::Reached => return Ok(Progress::Done(outcome(&cluster))),
                Wait::Failed => {
                    return Err(Failure::new(format!(
                        "Hopsworks cluster {} ({id}) is {}: {}",
                        cluster.name,
                        cluster.state,
                        if cluster.error_message.is_empty() {
                            "no error message from Hopsworks.ai"
                        } else {
                            &cluster.error_message
                        }
                    )));
                }
                Wait::Pending => {}
            }
            if SystemTime::now() + poll > deadline {
                return Err(Failure::new(format!(
                    "Hopsworks cluster {id} did not reach running within {} minutes (it is {}); \
                     raise TimeoutMinutes or check it in Hopsworks.ai",
                    settings.timeout_minutes, cluster.state
                )));
            }
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(Progress::Continue(state(Waiting::Running {
                    id: id.to_owned(),
                })));
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn delete(&self, request: &Request, ctx: &Context) -> Result<Progress<()>, Failure> {
        let id = request.action.physical_id().unwrap_or_default().to_owned();
        let p = &request.properties;
        let secret_arn = p.required_str("ApiKeySecretArn", "the API key's secret")?;
        let poll = Duration::from_secs(p.int("PollIntervalSeconds", 30, 1, 300)?);
        let timeout_minutes: u64 = p.int("TimeoutMinutes", 50, 1, 59)?;
        let client = self.client(secret_arn, ctx).await?;
        if ctx.state().is_none() {
            ctx.step(format!("terminating Hopsworks cluster {id}"));
            client.delete_cluster(&id).await?;
        }
        let deadline = ctx.first_started() + Duration::from_secs(timeout_minutes * 60);
        loop {
            ctx.step(format!("waiting for Hopsworks cluster {id} to terminate"));
            let Some(cluster) = client.get_cluster(&id).await? else {
                break;
            };
            if hopsworks_ai::waiting_for_gone(&cluster.state) == Wait::Failed {
                return Err(Failure::new(format!(
                    "Hopsworks cluster {id} is {} while terminating: {}",
                    cluster.state, cluster.error_message
                )));
            }
            if SystemTime::now() + poll > deadline {
                return Err(Failure::new(format!(
                    "Hopsworks cluster {id} was not gone within {timeout_minutes} minutes (it is \
                     {}); retry the delete, or terminate it in Hopsworks.ai",
                    cluster.state
                )));
            }
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(Progress::Continue(state(Waiting::Gone { id })));
            }
            tokio::time::sleep(poll).await;
        }
        let registry = ecr_registry(p)?;
        ctx.step(format!(
            "deleting ECR repositories {id}/… in account {registry}"
        ));
        let deleted = aws::delete_cluster_repositories(&self.ecr, &registry, &id)
            .await
            .map_err(Failure::new)?;
        tracing::info!(cluster_id = %id, repositories = deleted.len(), "terminated and cleaned up");
        Ok(Progress::Done(()))
    }

    /// Only the secret, the poll interval and the timeout change in place; anything else would be
    /// a new Hopsworks cluster on the same EKS cluster, which Hopsworks does not allow.
    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        let Action::Update {
            physical_id,
            old_properties,
        } = &request.action
        else {
            unreachable!("update is called for Update requests")
        };
        let settings = Settings::parse(&request.properties, &self.region)?;
        let changed = input::replacing_changes(old_properties, &request.properties);
        let client = self.client(&settings.secret_arn, ctx).await?;
        ctx.step(format!("reading Hopsworks cluster {physical_id}"));
        let Some(cluster) = client.get_cluster(physical_id).await? else {
            return Err(Failure::new(format!(
                "Hopsworks cluster {physical_id} no longer exists; delete this stack and create \
                 it again"
            )));
        };
        // CloudFormation rolls a failed update back with old and new swapped: properties that
        // are the cluster's own (its fingerprint) change nothing, whatever the old ones said.
        let as_created =
            cluster.tag(SETTINGS_TAG) == Some(settings_fingerprint(&request.properties).as_str());
        if !changed.is_empty() && !as_created {
            return Err(Failure::new(format!(
                "{} cannot change on an existing Hopsworks cluster (only {} can); put the old \
                 value back, or delete this stack and create it again to get a new cluster",
                changed.join(", "),
                IN_PLACE.join(", ")
            )));
        }
        Ok(Progress::Done(outcome(&cluster)))
    }
}

impl CustomResource for HopsworksCluster {
    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        HopsworksCluster::create(self, request, ctx).await
    }

    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        HopsworksCluster::update(self, request, ctx).await
    }

    async fn delete(&self, request: &Request, ctx: &Context) -> Result<Progress<()>, Failure> {
        HopsworksCluster::delete(self, request, ctx).await
    }
}

fn outcome(cluster: &Cluster) -> Outcome {
    Outcome::new(cluster.id.clone())
        .with("ClusterId", cluster.id.clone())
        .with("ClusterName", cluster.name.clone())
        .with("Url", cluster.url.clone())
        .with("State", cluster.state.clone())
        .with("Version", cluster.version.clone())
}

fn owner(request: &Request) -> String {
    format!(
        "{}#{}",
        request.envelope.stack_id, request.envelope.logical_resource_id
    )
}

fn state(waiting: Waiting) -> serde_json::Value {
    serde_json::to_value(waiting).unwrap_or_default()
}

fn waiting_id(state: &serde_json::Value) -> Result<String, Failure> {
    match serde_json::from_value(state.clone()) {
        Ok(Waiting::Running { id }) | Ok(Waiting::Gone { id }) => Ok(id),
        Err(e) => Err(Failure::new(format!(
            "internal error: the continued state does not read: {e}"
        ))),
    }
}

/// The ECR registry the cluster's repositories are in: `EcrRegistryAccountId`, else the account of
/// the instance profile.
fn ecr_registry(p: &custom_resource::Properties) -> Result<String, Failure> {
    if let Some(account) = p.optional_str("EcrRegistryAccountId")? {
        return Ok(account.to_owned());
    }
    let profile = p.required_str("InstanceProfileArn", "the instance profile's ARN")?;
    profile
        .split(':')
        .nth(4)
        .filter(|a| a.len() == 12)
        .map(str::to_owned)
        .ok_or_else(|| Failure::new(format!("InstanceProfileArn {profile:?} names no account")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_state_round_trips() {
        let s = state(Waiting::Gone { id: "abc".into() });
        assert_eq!(s["waiting_for"], "gone");
        assert_eq!(waiting_id(&s).unwrap(), "abc");
    }
}
