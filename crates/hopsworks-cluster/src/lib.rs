//! The `HopsworksCluster` custom resource (seed step 6): create a Hopsworks.ai cluster with EKS
//! and ECR enabled and wait until it runs; on Delete terminate it, wait until it is gone, and
//! delete its ECR repositories (`<cluster id>/…`, nothing else).
//!
//! Creating or terminating takes tens of minutes and Lambda stops at 15: the wait hands itself on
//! to a new invocation ([`Progress::Continue`]) under one overall deadline; only the last
//! invocation answers CloudFormation. No Hopsworks.ai call outlives the invocation's answer: each
//! is bounded by the time left, and one that runs out of it hands on too.
//!
//! What this resource makes is tagged with its owner ([`ownership`]): a Delete removes every
//! cluster so tagged, whatever physical id it is given, so a Create whose answer was lost after
//! its POST still leaves nothing behind.

mod aws;
mod backup;
mod catalogue;
mod delete;
mod input;
mod ownership;
#[cfg(test)]
mod readme;
mod replace;
mod restore;
mod update;

pub use input::{DeleteSettings, IN_PLACE, OnDelete, Settings, settings_fingerprint};
pub use ownership::LEGACY_OWNER_TAG;

/// Every AWS action this resource calls: its role in the template grants exactly these.
pub const IAM_ACTIONS: &[&str] = &[
    "secretsmanager:GetSecretValue",
    "ecr:DescribeRepositories",
    "ecr:DeleteRepository",
    "lambda:InvokeFunction",
];

use custom_resource::{
    Context, CustomResource, Failure, OWNER_TAG, Outcome, Owner, Progress, Request,
};
use hopsworks_ai::{Client, Cluster, Created, Retry, Wait};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Tag on clusters this resource creates: [`settings_fingerprint`] of the properties it was
/// created with, so an Update can tell a real change from CloudFormation's rollback to them.
pub const SETTINGS_TAG: &str = "hopsworks-eks-stack-settings";
/// Time kept back to hand on to a new invocation.
const HAND_OVER: Duration = Duration::from_secs(3);
/// The most one Hopsworks.ai call (its retries included) may take; less when the invocation has
/// less time left.
const CALL_CAP: Duration = Duration::from_secs(300);

/// Where a request is, carried from one invocation to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "waiting_for", rename_all = "snake_case")]
enum Waiting {
    /// Nothing known yet that repeating the first steps would not find again: start over (a
    /// Create looks for its cluster before it posts; a Delete lists what it owns again).
    Start,
    Running {
        id: String,
        /// The last state logged ([`progress`]): each change is logged once, across invocations.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        seen: String,
    },
    /// A Delete's backups (OnDelete `backup-then-terminate`): `clusters` are terminated once
    /// every backup has succeeded.
    BackingUp {
        clusters: Vec<delete::Doomed>,
        backups: Vec<backup::Taking>,
    },
    /// An Update (or the end of a Create) converging the cluster to its properties.
    Updating(update::Updating),
    Gone {
        clusters: Vec<delete::Doomed>,
    },
}

/// Log a cluster's state while waiting (`phase`: create, backup, delete, …) when it differs from
/// `seen`, the last one logged (carried across invocations in [`Waiting`]): each change once,
/// from the first invocation on.
pub(crate) fn progress(phase: &'static str, cluster: &Cluster, seen: &mut String) {
    if *seen != cluster.state {
        tracing::info!(
            phase,
            cluster_id = %cluster.id,
            state = %cluster.state,
            url = %cluster.url,
            "Hopsworks cluster state"
        );
        seen.clone_from(&cluster.state);
    }
}

/// Why a step stopped: the invocation's time ran out (hand on), Hopsworks.ai refused the key,
/// or it failed otherwise.
enum Stop {
    OutOfTime,
    KeyRefused(Failure),
    Failed(Failure),
}

impl From<hopsworks_ai::Error> for Stop {
    fn from(e: hopsworks_ai::Error) -> Self {
        if e.is_out_of_time() {
            Stop::OutOfTime
        } else if e.is_key_refused() {
            Stop::KeyRefused(e.into())
        } else {
            Stop::Failed(e.into())
        }
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Self {
        Stop::Failed(f)
    }
}

/// `client` for one call: over before the framework must answer, with room left to hand on.
fn bounded(client: &Client, ctx: &Context) -> Client {
    client.within(call_budget(ctx))
}

fn call_budget(ctx: &Context) -> Duration {
    ctx.call_budget(CALL_CAP + HAND_OVER)
        .saturating_sub(HAND_OVER)
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
        self.client_or_why(secret_arn, ctx)
            .await
            .map_err(|e| Failure::new(e.to_string()))
    }

    /// The client, or why the key could not be read (a Delete tells a missing key from a slow
    /// one).
    async fn client_or_why(
        &self,
        secret_arn: &str,
        ctx: &Context,
    ) -> Result<Client, aws::KeyError> {
        ctx.step(format!(
            "reading the Hopsworks.ai API key from {secret_arn}"
        ));
        let key = tokio::time::timeout(call_budget(ctx), aws::api_key(&self.secrets, secret_arn))
            .await
            .map_err(|_| aws::KeyError::Late {
                secret_arn: secret_arn.to_owned(),
            })??;
        Client::new(&self.api_url, key, self.retry.clone())
            .map(|c| c.with_key_source(format!("secret {secret_arn}")))
            .map_err(aws::KeyError::Client)
    }

    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        let settings = Settings::parse(&request.properties, &self.region)?;
        let waiting = read_state(ctx)?;
        if let Some(Waiting::Running { id, .. } | Waiting::Updating(update::Updating { id, .. })) =
            &waiting
        {
            // Before anything can fail in this invocation: its failures answer with the id.
            ctx.record_physical_id(id.clone());
        }
        let client = self.client(&settings.secret_arn, ctx).await?;
        let deadline = ctx.first_started() + Duration::from_secs(settings.timeout_minutes * 60);
        let (id, seen) = match waiting {
            Some(Waiting::Running { id, seen }) => (id, seen),
            // Running, and its in-place settings (OpenPorts) being applied.
            Some(Waiting::Updating(progress)) => {
                let id = progress.id.clone();
                return self
                    .converge(&client, &settings, progress, None, deadline, ctx)
                    .await
                    .map_err(|f| f.with_physical_id(id));
            }
            Some(Waiting::Gone { .. } | Waiting::BackingUp { .. }) => {
                return Err(Failure::new(
                    "internal error: a Create was handed on as a Delete",
                ));
            }
            None | Some(Waiting::Start) => {
                let owner = Owner::of(request);
                let fingerprint = settings_fingerprint(&request.properties);
                match self
                    .start(&client, &settings, &owner, &fingerprint, ctx)
                    .await
                {
                    Ok(id) => (id, String::new()),
                    Err(Stop::OutOfTime) if SystemTime::now() < deadline => {
                        tracing::info!("no answer from Hopsworks.ai in the time left: handing on");
                        return Ok(Progress::Continue(state(Waiting::Start)));
                    }
                    Err(Stop::OutOfTime) => {
                        return Err(Failure::new(format!(
                            "Hopsworks.ai did not answer within {} minutes; retry later, or \
                             raise TimeoutMinutes",
                            settings.timeout_minutes
                        )));
                    }
                    Err(Stop::KeyRefused(failure) | Stop::Failed(failure)) => return Err(failure),
                }
            }
        };
        self.wait_running(&client, &id, seen, &settings, deadline, ctx)
            .await
            .map_err(|f| f.with_physical_id(id.clone()))
    }

    /// POST the cluster, unless this resource already made it (a duplicate delivery, a POST
    /// whose answer was lost); the physical id is recorded as soon as it is known.
    async fn start(
        &self,
        client: &Client,
        settings: &Settings,
        owner: &Owner,
        fingerprint: &str,
        ctx: &Context,
    ) -> Result<String, Stop> {
        let wanted = &settings.cluster;
        ctx.step(format!(
            "checking Hopsworks.ai for clusters using EKS cluster {}",
            wanted.eks_cluster_name
        ));
        let existing = bounded(client, ctx).list_clusters().await?;
        let ours = |c: &Cluster| ownership::made_by(c, wanted, owner, fingerprint);
        if let Some(ours) = existing.iter().find(|c| ours(c)) {
            tracing::info!(cluster_id = %ours.id, "this resource already created the cluster: waiting for it");
            ctx.record_physical_id(ours.id.clone());
            return Ok(ours.id.clone());
        }
        if let Some(other) = existing
            .iter()
            .find(|c| ownership::uses_same_eks(c, wanted))
        {
            return Err(Failure::new(format!(
                "EKS cluster {} in {} is already used by Hopsworks cluster {} ({}); an EKS \
                 cluster serves one Hopsworks cluster only: terminate that one first, or use \
                 another EKS cluster",
                wanted.eks_cluster_name, wanted.region, other.name, other.id
            ))
            .into());
        }
        // Before the POST: a version Hopsworks.ai does not offer here fails now, not after the
        // cluster was made (the pre-flight resource cannot ask: it has no API key).
        catalogue::check_offered(client, wanted, ctx).await?;
        let mut cluster = wanted.clone();
        for (name, value) in [
            (OWNER_TAG, owner.key()),
            (SETTINGS_TAG, fingerprint.to_owned()),
        ] {
            cluster.tags.push(hopsworks_ai::model::Tag {
                name: name.to_owned(),
                value,
            });
        }
        let created = restore::post(
            &bounded(client, ctx),
            &cluster,
            settings.restore_from.as_deref(),
            ours,
            ctx,
        )
        .await?;
        let id = created.id().to_owned();
        ctx.record_physical_id(id.clone());
        match created {
            Created::Made(_) => tracing::info!(cluster_id = %id, "Hopsworks cluster requested"),
            Created::Found(_) => {
                tracing::info!(cluster_id = %id, "the cluster was made already (an earlier attempt or delivery): waiting for it");
            }
        }
        Ok(id)
    }

    async fn wait_running(
        &self,
        client: &Client,
        id: &str,
        mut seen: String,
        settings: &Settings,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<Outcome>, Failure> {
        let poll = Duration::from_secs(settings.poll_seconds);
        let hand_on = |seen: String| {
            Progress::Continue(state(Waiting::Running {
                id: id.to_owned(),
                seen,
            }))
        };
        let late = |state: Option<&str>| {
            Failure::new(format!(
                "Hopsworks cluster {id} did not reach running within {} minutes (it is {}); \
                 raise TimeoutMinutes or check it in Hopsworks.ai",
                settings.timeout_minutes,
                state.unwrap_or("not answering")
            ))
        };
        let mut last_state = None;
        loop {
            if SystemTime::now() > deadline {
                return Err(late(last_state.as_deref()));
            }
            ctx.step(format!("waiting for Hopsworks cluster {id} to run"));
            let cluster = match bounded(client, ctx).get_cluster(id).await {
                Ok(Some(cluster)) => cluster,
                Ok(None) => {
                    return Err(Failure::new(format!(
                        "Hopsworks cluster {id} disappeared while starting"
                    )));
                }
                // A slow answer (a hung connection, a long Retry-After) near the end of this
                // invocation: the next one asks again.
                Err(e) if e.is_out_of_time() => {
                    tracing::info!(cluster_id = %id, error = %e, "no answer in the time left: handing on");
                    return Ok(hand_on(seen));
                }
                Err(e) => return Err(e.into()),
            };
            progress("create", &cluster, &mut seen);
            match hopsworks_ai::waiting_for_running(&cluster.state) {
                // Running: what the API does not take on create (OpenPorts), as an Update does.
                Wait::Reached => {
                    let progress = update::Updating {
                        seen,
                        ..update::Updating::new(id)
                    };
                    return self
                        .converge(client, settings, progress, Some(cluster), deadline, ctx)
                        .await;
                }
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
                return Err(late(Some(&cluster.state)));
            }
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(hand_on(seen));
            }
            last_state = Some(cluster.state);
            tokio::time::sleep(poll).await;
        }
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
        HopsworksCluster::remove(self, request, ctx).await
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

fn state(waiting: Waiting) -> serde_json::Value {
    serde_json::to_value(waiting).unwrap_or_default()
}

/// The state an earlier invocation handed on, if any.
fn read_state(ctx: &Context) -> Result<Option<Waiting>, Failure> {
    ctx.state()
        .map(|state| {
            serde_json::from_value(state.clone()).map_err(|e| {
                Failure::new(format!(
                    "internal error: the continued state does not read: {e}"
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_states_round_trip() {
        for waiting in [
            Waiting::Start,
            Waiting::Running {
                id: "abc".into(),
                seen: String::new(),
            },
            Waiting::Running {
                id: "abc".into(),
                seen: "initializing".into(),
            },
            Waiting::BackingUp {
                clusters: vec![delete::Doomed {
                    id: "abc".into(),
                    registry: None,
                    seen: String::new(),
                }],
                backups: vec![backup::Taking {
                    cluster_id: "abc".into(),
                    backup_id: "b-1".into(),
                    backup_name: "n".into(),
                    seen: "pending".into(),
                }],
            },
            Waiting::Gone {
                clusters: vec![delete::Doomed {
                    id: "abc".into(),
                    registry: Some("111122223333".into()),
                    seen: "shutting-down".into(),
                }],
            },
        ] {
            let s = state(waiting.clone());
            assert!(s["waiting_for"].is_string(), "{s}");
            assert_eq!(serde_json::from_value::<Waiting>(s).unwrap(), waiting);
        }
    }
}
