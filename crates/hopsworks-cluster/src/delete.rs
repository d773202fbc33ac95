//! Delete: as `OnDelete` says, back the cluster up first ([`crate::backup`]), terminate what this
//! resource owns, wait until it is gone, clean its ECR repositories; or, with `retain`, let go of
//! the cluster the physical id names without a call (the API key may be gone already).
//!
//! Ownership, not the physical id alone, says what to remove: the cluster the id names, and every
//! cluster tagged with this resource's owner and made with the Delete's properties
//! ([`ownership::swept_by`]: not the cluster a replacement made). A Delete of the failed-create
//! marker (a Create whose answer was lost after its POST) so finds the cluster its Create made; a
//! marker Delete whose properties or key could not have made anything succeeds.

use crate::backup::{self, Taking};
use crate::{DeleteSettings, OnDelete, Settings, read_state, settings_fingerprint, state};
use crate::{
    HAND_OVER, HopsworksCluster, Stop, Waiting, aws, bounded, call_budget, ownership, progress,
};
use custom_resource::{Context, Failure, Owner, Progress, Request};
use hopsworks_ai::{Client, Cluster, Wait};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// A cluster this Delete terminates, and the ECR registry of its repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Doomed {
    pub id: String,
    pub registry: Option<String>,
    /// The last state logged while waiting for it to go.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seen: String,
}

/// Where a Delete got to in its first steps.
enum Begun {
    /// Nothing of this resource's is there.
    Nothing,
    /// Backups asked for: the clusters are terminated once they have succeeded.
    BackingUp {
        clusters: Vec<Doomed>,
        backups: Vec<Taking>,
    },
    /// DELETE sent for each.
    Terminated(Vec<Doomed>),
}

impl HopsworksCluster {
    pub(crate) async fn remove(
        &self,
        request: &Request,
        ctx: &Context,
    ) -> Result<Progress<()>, Failure> {
        let known = request.known_physical_id();
        let p = &request.properties;
        // The marker's Delete follows a Create that may have failed on its input: checked as the
        // Create checked it, such input made nothing.
        let parsed = match known {
            Some(_) => DeleteSettings::parse(p),
            None => Settings::parse(p, &self.region).and_then(|_| DeleteSettings::parse(p)),
        };
        let settings = match parsed {
            Ok(settings) => settings,
            Err(e) if known.is_none() => {
                tracing::info!(error = %e, "the failed Create had invalid properties: it made nothing");
                return Ok(Progress::Done(()));
            }
            Err(e) => return Err(e.into()),
        };
        // The cluster CloudFormation knows is let go of: the key may be gone, so nothing that
        // fails stops it. Only a cluster that never ran (the rollback of a Create that failed or
        // timed out) holds no data worth keeping: it is terminated as `terminate` does. (The
        // marker's Delete has no cluster to let go of: it cleans up what the failed Create left.)
        if settings.on_delete == OnDelete::Retain
            && let Some(id) = known
            && ctx.state().is_none()
        {
            if !self.never_ran(id, &settings, ctx).await {
                tracing::info!(
                    cluster_id = id,
                    "OnDelete is retain: the Hopsworks cluster is left running, with its ECR repositories, and no longer belongs to the stack"
                );
                return Ok(Progress::Done(()));
            }
            tracing::info!(
                cluster_id = id,
                "OnDelete is retain, but the cluster never ran (a failed Create is rolled back): terminating it, it holds no data"
            );
        }
        let deadline = ctx.first_started() + Duration::from_secs(settings.timeout_minutes * 60);
        let client = match self.client_or_why(&settings.secret_arn, ctx).await {
            Ok(client) => client,
            // A secret that is missing or holds no key: the failed Create could not have used it.
            Err(why) if !why.is_transient() && known.is_none() => {
                tracing::warn!(reason = %why, "the failed Create could not read this key either: it made nothing");
                return Ok(Progress::Done(()));
            }
            // Throttled or slow: the Create may have made a cluster, so try again later rather
            // than give up on it (or answer a success that leaves it running).
            Err(why) if why.is_transient() && SystemTime::now() < deadline => {
                tracing::warn!(reason = %why, "the API key cannot be read now: trying again in a new invocation");
                tokio::time::sleep(
                    Duration::from_secs(settings.poll_seconds).min(ctx.remaining() / 2),
                )
                .await;
                return Ok(Progress::Continue(state(Waiting::Start)));
            }
            Err(e) => return Err(Failure::new(e.to_string())),
        };
        let begun = match read_state(ctx)? {
            Some(Waiting::Gone { clusters }) => {
                return self
                    .wait_gone(&client, clusters, &settings, deadline, ctx)
                    .await;
            }
            Some(Waiting::BackingUp { clusters, backups }) => {
                return self
                    .wait_backups(&client, clusters, backups, &settings, deadline, ctx)
                    .await;
            }
            None | Some(Waiting::Start) => {
                self.begin(&client, request, known, &settings, ctx).await
            }
            Some(_) => {
                return Err(Failure::new(
                    "internal error: a Delete was handed on as another request",
                ));
            }
        };
        match begun {
            Ok(Begun::Nothing) => {
                tracing::info!("no Hopsworks cluster of this resource: nothing to remove");
                Ok(Progress::Done(()))
            }
            Ok(Begun::BackingUp { clusters, backups }) => {
                self.wait_backups(&client, clusters, backups, &settings, deadline, ctx)
                    .await
            }
            Ok(Begun::Terminated(doomed)) => {
                self.after_terminate(&client, doomed, &settings, deadline, ctx)
                    .await
            }
            Err(Stop::OutOfTime) if SystemTime::now() < deadline => {
                Ok(Progress::Continue(state(Waiting::Start)))
            }
            Err(Stop::OutOfTime) => Err(Failure::new(format!(
                "Hopsworks.ai did not answer within {} minutes; retry the delete",
                settings.timeout_minutes
            ))),
            // The marker's Delete with a key Hopsworks.ai refuses: the Create could not have
            // made anything with it either.
            Err(Stop::KeyRefused(failure)) if known.is_none() => {
                tracing::warn!(reason = %failure.reason, "the failed Create's key is refused: it made nothing");
                Ok(Progress::Done(()))
            }
            Err(Stop::KeyRefused(failure) | Stop::Failed(failure)) => Err(failure),
        }
    }

    /// Whether Hopsworks.ai says cluster `id` never started. Anything that keeps it from saying
    /// (the key gone or refused, an error, no answer in time) reads as "it ran": a retained
    /// cluster is never terminated on a guess.
    async fn never_ran(&self, id: &str, settings: &DeleteSettings, ctx: &Context) -> bool {
        let client = match self.client_or_why(&settings.secret_arn, ctx).await {
            Ok(client) => client,
            Err(e) => {
                tracing::info!(cluster_id = id, reason = %e, "the API key cannot be read: the cluster is retained as it is");
                return false;
            }
        };
        match bounded(&client, ctx).get_cluster(id).await {
            Ok(Some(cluster)) => cluster.started_on == 0,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(cluster_id = id, error = %e, "Hopsworks.ai did not say whether the cluster ran: it is retained as it is");
                false
            }
        }
    }

    /// Find what this resource owns; back up what runs (OnDelete `backup-then-terminate`), else
    /// send DELETE for each.
    async fn begin(
        &self,
        client: &Client,
        request: &Request,
        known: Option<&str>,
        settings: &DeleteSettings,
        ctx: &Context,
    ) -> Result<Begun, Stop> {
        ctx.step("listing the Hopsworks clusters this resource owns");
        let listed = bounded(client, ctx).list_clusters().await?;
        let fingerprint = settings_fingerprint(&request.properties);
        let owner = Owner::of(request);
        let registry = settings.registry.as_deref();
        let doomed = doomed(known, &listed, &owner, &fingerprint, registry);
        if doomed.is_empty() {
            return Ok(Begun::Nothing);
        }
        if settings.on_delete == OnDelete::BackupThenTerminate {
            let running = backup::to_back_up(&doomed, &listed)?;
            if !running.is_empty() {
                let request_id = &request.envelope.request_id;
                let backups = self
                    .start_backups(client, &running, request_id, ctx)
                    .await?;
                return Ok(Begun::BackingUp {
                    clusters: doomed,
                    backups,
                });
            }
        }
        self.terminate(client, &doomed, ctx).await?;
        Ok(Begun::Terminated(doomed))
    }

    /// Send DELETE for each cluster.
    pub(crate) async fn terminate(
        &self,
        client: &Client,
        doomed: &[Doomed],
        ctx: &Context,
    ) -> Result<(), Stop> {
        for d in doomed {
            ctx.step(format!("terminating Hopsworks cluster {}", d.id));
            bounded(client, ctx).delete_cluster(&d.id).await?;
            tracing::info!(phase = "delete", cluster_id = %d.id, "Hopsworks cluster terminating");
        }
        Ok(())
    }

    /// After the DELETEs: wait until the clusters are gone, here or in a new invocation.
    pub(crate) async fn after_terminate(
        &self,
        client: &Client,
        doomed: Vec<Doomed>,
        settings: &DeleteSettings,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<()>, Failure> {
        // As Hopsworks' own provider does: the first poll one interval after the DELETE.
        let poll = Duration::from_secs(settings.poll_seconds);
        if ctx.remaining() < poll + HAND_OVER {
            return Ok(Progress::Continue(state(Waiting::Gone {
                clusters: doomed,
            })));
        }
        tokio::time::sleep(poll).await;
        self.wait_gone(client, doomed, settings, deadline, ctx)
            .await
    }

    /// Poll until every cluster is gone (404), cleaning each one's ECR repositories as it goes.
    async fn wait_gone(
        &self,
        client: &Client,
        mut doomed: Vec<Doomed>,
        settings: &DeleteSettings,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<()>, Failure> {
        let poll = Duration::from_secs(settings.poll_seconds);
        loop {
            let mut left: Vec<(Doomed, String)> = Vec::new();
            let mut queue = doomed.into_iter();
            while let Some(mut d) = queue.next() {
                ctx.step(format!(
                    "waiting for Hopsworks cluster {} to terminate",
                    d.id
                ));
                let step = match bounded(client, ctx).get_cluster(&d.id).await {
                    Ok(None) => self.clean_ecr(&d, ctx).await,
                    Ok(Some(cluster)) => {
                        progress("delete", &cluster, &mut d.seen);
                        if hopsworks_ai::waiting_for_gone(&cluster.state) == Wait::Failed {
                            return Err(Failure::new(format!(
                                "Hopsworks cluster {} is {} while terminating: {}",
                                d.id, cluster.state, cluster.error_message
                            )));
                        }
                        left.push((d.clone(), cluster.state));
                        Ok(())
                    }
                    Err(e) => Err(Stop::from(e)),
                };
                match step {
                    Ok(()) => {}
                    Err(Stop::OutOfTime) => {
                        let rest = left.into_iter().map(|(d, _)| d);
                        let clusters = rest.chain([d]).chain(queue).collect();
                        return Ok(Progress::Continue(state(Waiting::Gone { clusters })));
                    }
                    Err(Stop::KeyRefused(failure) | Stop::Failed(failure)) => {
                        return Err(failure);
                    }
                }
            }
            if left.is_empty() {
                return Ok(Progress::Done(()));
            }
            if SystemTime::now() + poll > deadline {
                let states: Vec<String> = left
                    .iter()
                    .map(|(d, state)| format!("{} is {state}", d.id))
                    .collect();
                return Err(Failure::new(format!(
                    "Hopsworks cluster {} not gone within {} minutes; retry the delete, or \
                     terminate it in Hopsworks.ai",
                    states.join(", "),
                    settings.timeout_minutes
                )));
            }
            doomed = left.into_iter().map(|(d, _)| d).collect();
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(Progress::Continue(state(Waiting::Gone {
                    clusters: doomed,
                })));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Delete the repositories `<cluster id>/…` of a cluster that is gone (bounded, like every
    /// call: a clean-up cut short is done again by the next invocation).
    async fn clean_ecr(&self, d: &Doomed, ctx: &Context) -> Result<(), Stop> {
        let Some(registry) = &d.registry else {
            tracing::warn!(cluster_id = %d.id, "no ECR registry known for this cluster: its repositories are left");
            return Ok(());
        };
        ctx.step(format!(
            "deleting ECR repositories {}/… in account {registry}",
            d.id
        ));
        let cleaned = tokio::time::timeout(
            call_budget(ctx),
            aws::delete_cluster_repositories(&self.ecr, registry, &d.id),
        )
        .await
        .map_err(|_| Stop::OutOfTime)?
        .map_err(Failure::from)?;
        tracing::info!(cluster_id = %d.id, repositories = cleaned.len(), "terminated and cleaned up");
        Ok(())
    }
}

/// What a Delete terminates: the cluster `known` names (gone already or not: its repositories are
/// cleaned either way) and every listed cluster `owner` tagged with the Delete's `fingerprint`
/// (never the cluster a replacement made). The registry is the one Hopsworks.ai lists for the
/// cluster, else `fallback` (the properties').
fn doomed(
    known: Option<&str>,
    listed: &[Cluster],
    owner: &Owner,
    fingerprint: &str,
    fallback: Option<&str>,
) -> Vec<Doomed> {
    let registry_of = |id: &str| {
        listed
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.aws.ecr_registry_account_id.as_str())
            .filter(|r| !r.is_empty())
            .or(fallback)
            .map(str::to_owned)
    };
    let mut ids: Vec<&str> = Vec::new();
    match known {
        Some(id) if ownership::is_cluster_id(id) => ids.push(id),
        Some(id) => {
            tracing::info!(
                physical_id = id,
                "not a Hopsworks cluster id: removing by ownership only"
            );
        }
        None => {}
    }
    for c in listed
        .iter()
        .filter(|c| ownership::swept_by(c, owner, fingerprint))
    {
        if ids.contains(&c.id.as_str()) {
            continue;
        }
        if !ownership::is_cluster_id(&c.id) {
            tracing::warn!(cluster_id = %c.id, "a cluster tagged as this resource's has an id that is not safe to use: left");
            continue;
        }
        tracing::info!(cluster_id = %c.id, name = %c.name, "a cluster tagged as this resource's: terminating it");
        ids.push(&c.id);
    }
    ids.into_iter()
        .map(|id| Doomed {
            id: id.to_owned(),
            registry: registry_of(id),
            seen: String::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use custom_resource::OWNER_TAG;
    use hopsworks_ai::model::{AwsSettings, Tag};

    const STACK: &str = "arn:aws:cloudformation:us-east-2:111122223333:stack/hops/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f";

    fn owner() -> Owner {
        Owner {
            stack_id: STACK.into(),
            logical_id: "HopsworksCluster".into(),
        }
    }

    fn cluster(id: &str, owner_value: Option<String>, registry: &str) -> Cluster {
        Cluster {
            id: id.into(),
            name: id.into(),
            tags: owner_value
                .map(|value| Tag {
                    name: OWNER_TAG.into(),
                    value,
                })
                .into_iter()
                .collect(),
            aws: AwsSettings {
                ecr_registry_account_id: registry.into(),
                ..AwsSettings::default()
            },
            ..Cluster::default()
        }
    }

    fn ids(doomed: &[Doomed]) -> Vec<(&str, Option<&str>)> {
        doomed
            .iter()
            .map(|d| (d.id.as_str(), d.registry.as_deref()))
            .collect()
    }

    #[test]
    fn the_marker_removes_what_the_owner_tag_says_and_nothing_else() {
        let other = Owner {
            logical_id: "Other".into(),
            ..owner()
        };
        let listed = [
            cluster("ours", Some(owner().key()), "444455556666"),
            cluster("theirs", Some(other.key()), ""),
            cluster("untagged", None, ""),
        ];
        let d = doomed(None, &listed, &owner(), "f", Some("111122223333"));
        assert_eq!(ids(&d), [("ours", Some("444455556666"))]);
    }

    #[test]
    fn a_known_id_is_removed_even_when_gone_and_orphans_with_it() {
        let listed = [cluster("orphan", Some(owner().key()), "")];
        let d = doomed(Some("gone-1"), &listed, &owner(), "f", Some("111122223333"));
        assert_eq!(
            ids(&d),
            [
                ("gone-1", Some("111122223333")),
                ("orphan", Some("111122223333"))
            ]
        );
        // Listed and known: once.
        let listed = [cluster("c-1", Some(owner().key()), "")];
        assert_eq!(doomed(Some("c-1"), &listed, &owner(), "f", None).len(), 1);
    }

    #[test]
    fn the_sweep_leaves_the_cluster_a_replacement_made() {
        let mut old = cluster("old", Some(owner().key()), "");
        let mut new = cluster("new", Some(owner().key()), "");
        for (c, fingerprint) in [(&mut old, "f-old"), (&mut new, "f-new")] {
            c.tags.push(Tag {
                name: crate::SETTINGS_TAG.into(),
                value: fingerprint.into(),
            });
        }
        let listed = [old, new];
        // The replacement's clean-up: the old id and the old properties.
        let d = doomed(Some("old"), &listed, &owner(), "f-old", None);
        assert_eq!(ids(&d), [("old", None)]);
        // The marker's Delete of a failed replacement: the new properties, no id.
        let d = doomed(None, &listed, &owner(), "f-new", None);
        assert_eq!(ids(&d), [("new", None)]);
    }

    #[test]
    fn an_id_that_is_no_cluster_id_is_never_used() {
        let d = doomed(Some("failed-create:X:1"), &[], &owner(), "f", None);
        assert!(d.is_empty());
        let listed = [cluster("../x", Some(owner().key()), "")];
        assert!(doomed(None, &listed, &owner(), "f", None).is_empty());
    }
}
