//! OnDelete `backup-then-terminate`: before a Delete terminates a cluster that ran, it backs the
//! cluster up and waits, across invocations, until the backup has succeeded. A failed backup
//! fails the Delete with Hopsworks.ai's message and leaves the cluster running; a cluster that
//! never started, or failed, has no data to keep and is terminated without one.
//!
//! The backup's name is made from the Delete's request id and the cluster's id, so a POST whose
//! answer was lost, an invocation that ran out of time and a second delivery of the same Delete
//! all find the backup asked for first ([`hopsworks_ai::Client::create_backup`]) instead of asking
//! for another. A later Delete (a new request) takes a new backup, unless one an earlier Delete
//! asked for is still under way ([`under_way`]): a Delete retried after one that failed while
//! waiting (a failed hand-over, a timeout) waits for that backup rather than ask for another,
//! which Hopsworks.ai refuses while one is in progress.

use crate::delete::Doomed;
use crate::{HAND_OVER, HopsworksCluster, Stop, Waiting, bounded, state};
use custom_resource::{Context, Failure, Progress};
use hopsworks_ai::{Backup, BackupStarted, Client, Cluster, Wait};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// A backup a Delete waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Taking {
    pub cluster_id: String,
    pub backup_id: String,
    pub backup_name: String,
    /// The last state logged; `succeed` once it has.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seen: String,
}

impl Taking {
    fn done(&self) -> bool {
        hopsworks_ai::waiting_for_backup(&self.seen) == Wait::Reached
    }
}

/// States in which a cluster has failed or is going: nothing to back up.
const NOTHING_TO_KEEP: &[&str] = &[
    "error",
    "command-failed",
    "worker-error",
    "secondary-error",
    "termination-warning",
    "shutting-down",
    "externally-shutting-down",
    "externally-terminated",
];

/// The clusters among `doomed` to back up before terminating: those that run. A cluster that
/// never started or failed has no data to keep; one no longer listed is gone. A cluster that ran
/// but is in another state (stopped, updating, …) cannot be backed up now: the Delete fails with
/// what to do, before anything is asked of Hopsworks.ai.
pub(crate) fn to_back_up<'a>(
    doomed: &[Doomed],
    listed: &'a [Cluster],
) -> Result<Vec<&'a Cluster>, Failure> {
    let mut running = Vec::new();
    for cluster in doomed
        .iter()
        .filter_map(|d| listed.iter().find(|c| c.id == d.id))
    {
        if cluster.state == "running" {
            running.push(cluster);
        } else if cluster.started_on == 0 || NOTHING_TO_KEEP.contains(&cluster.state.as_str()) {
            tracing::info!(cluster_id = %cluster.id, state = %cluster.state, "the cluster never ran or failed: nothing to back up, terminating it");
        } else {
            return Err(Failure::new(format!(
                "Hopsworks cluster {} ({}) is {}, and OnDelete backup-then-terminate backs it up \
                 before terminating it, which needs it running; start it in Hopsworks.ai (or \
                 wait until it runs) and delete again, or update the stack with OnDelete \
                 terminate (its data is lost) or retain first",
                cluster.name, cluster.id, cluster.state
            )));
        }
    }
    Ok(running)
}

/// The name of the backup a Delete (`request_id`) takes of cluster `cluster_id`, named
/// `cluster_name`: the same for every try and delivery of that Delete (FNV-1a of the request id
/// and the cluster id, stable across builds and releases), and led by the cluster's name, so that
/// the user finds it in Hopsworks.ai's backups once the stack and its logs are gone.
pub(crate) fn backup_name(request_id: &str, cluster_id: &str, cluster_name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request_id.bytes().chain([0]).chain(cluster_id.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{cluster_name}{NAME_INFIX}{hash:016x}")
}

/// What every name [`backup_name`] makes holds after the cluster's name.
const NAME_INFIX: &str = "-stack-delete-";

/// Among `cluster`'s backups, one a Delete of it asked for (named by [`backup_name`]) that is
/// still under way.
pub(crate) fn under_way(cluster: &Cluster, backups: Vec<Backup>) -> Option<Backup> {
    let ours = format!("{}{NAME_INFIX}", cluster.name);
    backups.into_iter().find(|b| {
        b.cluster_id == cluster.id
            && b.backup_name.starts_with(&ours)
            && hopsworks_ai::waiting_for_backup(&b.state) == Wait::Pending
    })
}

impl HopsworksCluster {
    /// Ask for a backup of each cluster (or find the one this Delete asked for already); each
    /// backup's id is logged as soon as it is known.
    pub(crate) async fn start_backups(
        &self,
        client: &Client,
        clusters: &[&Cluster],
        request_id: &str,
        ctx: &Context,
    ) -> Result<Vec<Taking>, Stop> {
        let mut taking = Vec::new();
        for cluster in clusters {
            let name = backup_name(request_id, &cluster.id, &cluster.name);
            ctx.step(format!(
                "backing up Hopsworks cluster {} ({}) as {name}",
                cluster.name, cluster.id
            ));
            // A backup under way shows on the cluster: only then are its backups read.
            let earlier = if cluster.backup_pipeline_in_progress {
                let backups = bounded(client, ctx).list_backups(Some(&cluster.id)).await?;
                under_way(cluster, backups)
            } else {
                None
            };
            let (backup_id, name, adopted) = match earlier {
                Some(backup) => (backup.backup_id, backup.backup_name, true),
                None => {
                    let started = bounded(client, ctx)
                        .create_backup(&cluster.id, &name)
                        .await?;
                    let adopted = matches!(started, BackupStarted::Found(_));
                    (started.id().to_owned(), name, adopted)
                }
            };
            tracing::info!(
                phase = "backup",
                cluster_id = %cluster.id,
                backup_id = %backup_id,
                backup_name = %name,
                adopted,
                url = %cluster.url,
                "Hopsworks backup requested"
            );
            taking.push(Taking {
                cluster_id: cluster.id.clone(),
                backup_id,
                backup_name: name,
                seen: String::new(),
            });
        }
        Ok(taking)
    }

    /// Wait until every backup has succeeded, then terminate `clusters`.
    pub(crate) async fn wait_backups(
        &self,
        client: &Client,
        clusters: Vec<Doomed>,
        mut backups: Vec<Taking>,
        settings: &crate::DeleteSettings,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<()>, Failure> {
        let poll = Duration::from_secs(settings.poll_seconds);
        loop {
            for i in 0..backups.len() {
                if backups[i].done() {
                    continue;
                }
                let t = &backups[i];
                ctx.step(format!(
                    "waiting for backup {} of Hopsworks cluster {}",
                    t.backup_id, t.cluster_id
                ));
                let backup = match bounded(client, ctx).get_backup(&t.backup_id).await {
                    Ok(Some(backup)) => backup,
                    Ok(None) => {
                        return Err(Failure::new(format!(
                            "backup {} of Hopsworks cluster {} disappeared before it succeeded; \
                             the cluster is left running: delete again to take a new backup",
                            t.backup_id, t.cluster_id
                        )));
                    }
                    Err(e) if e.is_out_of_time() => {
                        return Ok(Progress::Continue(state(Waiting::BackingUp {
                            clusters,
                            backups,
                        })));
                    }
                    Err(e) => return Err(e.into()),
                };
                let t = &mut backups[i];
                if t.seen != backup.state {
                    tracing::info!(
                        phase = "backup",
                        cluster_id = %t.cluster_id,
                        backup_id = %t.backup_id,
                        state = %backup.state,
                        "Hopsworks backup state"
                    );
                    t.seen.clone_from(&backup.state);
                }
                match hopsworks_ai::waiting_for_backup(&backup.state) {
                    Wait::Reached => {
                        tracing::info!(cluster_id = %t.cluster_id, backup_id = %t.backup_id, backup_name = %t.backup_name, "Hopsworks backup succeeded: the cluster can be restored from it (RestoreFromBackupId)");
                    }
                    Wait::Failed => {
                        let message = if backup.state_message.is_empty() {
                            "no message from Hopsworks.ai"
                        } else {
                            &backup.state_message
                        };
                        return Err(Failure::new(format!(
                            "the backup of Hopsworks cluster {} (backup {}) is {}: {message}; the \
                             cluster is left running. Fix the cause and delete again (a new backup \
                             is taken), or update the stack with OnDelete terminate (its data is \
                             lost) or retain first",
                            t.cluster_id, t.backup_id, backup.state
                        )));
                    }
                    Wait::Pending => {}
                }
            }
            if backups.iter().all(Taking::done) {
                return self
                    .terminate_after_backups(client, clusters, backups, settings, deadline, ctx)
                    .await;
            }
            if SystemTime::now() + poll > deadline {
                let pending: Vec<String> = backups
                    .iter()
                    .filter(|t| !t.done())
                    .map(|t| format!("{} of cluster {} is {}", t.backup_id, t.cluster_id, t.seen))
                    .collect();
                return Err(Failure::new(format!(
                    "backup {} not done within {} minutes; the cluster is left running: delete \
                     again once Hopsworks.ai shows the backup succeeded (a new backup is taken), \
                     or raise TimeoutMinutes",
                    pending.join(", "),
                    settings.timeout_minutes
                )));
            }
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(Progress::Continue(state(Waiting::BackingUp {
                    clusters,
                    backups,
                })));
            }
            tokio::time::sleep(poll).await;
        }
    }

    async fn terminate_after_backups(
        &self,
        client: &Client,
        clusters: Vec<Doomed>,
        backups: Vec<Taking>,
        settings: &crate::DeleteSettings,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<()>, Failure> {
        match self.terminate(client, &clusters, ctx).await {
            Ok(()) => {
                self.after_terminate(client, clusters, settings, deadline, ctx)
                    .await
            }
            // The next invocation finds every backup done and terminates again (a DELETE of a
            // cluster already shutting down is answered as accepted, or 404).
            Err(Stop::OutOfTime) => Ok(Progress::Continue(state(Waiting::BackingUp {
                clusters,
                backups,
            }))),
            Err(Stop::KeyRefused(failure) | Stop::Failed(failure)) => Err(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(id: &str, state: &str, started_on: i64) -> Cluster {
        Cluster {
            id: id.into(),
            name: format!("{id}-name"),
            state: state.into(),
            started_on,
            ..Cluster::default()
        }
    }

    fn doomed(ids: &[&str]) -> Vec<Doomed> {
        ids.iter()
            .map(|id| Doomed {
                id: (*id).into(),
                registry: None,
                seen: String::new(),
            })
            .collect()
    }

    #[test]
    fn only_a_running_cluster_is_backed_up() {
        let listed = [
            cluster("runs", "running", 1_718_001_200),
            cluster("booting", "initializing", 0),
            cluster("broken", "error", 1_718_001_200),
            cluster("going", "shutting-down", 1_718_001_200),
            cluster("not-ours", "running", 1_718_001_200),
        ];
        let ids = ["runs", "booting", "broken", "going", "gone"];
        let backed_up = to_back_up(&doomed(&ids), &listed).unwrap();
        let backed_up: Vec<&str> = backed_up.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(backed_up, ["runs"]);
    }

    #[test]
    fn a_retried_delete_waits_for_the_backup_an_earlier_delete_left_under_way() {
        let c = cluster("c-1", "running", 1_718_001_200);
        let backup = |name: &str, cluster_id: &str, state: &str| Backup {
            backup_id: format!("{name}-id"),
            backup_name: name.into(),
            cluster_id: cluster_id.into(),
            state: state.into(),
            ..Backup::default()
        };
        let earlier = backup_name("req-1", "c-1", "c-1-name");
        let found = under_way(&c, vec![backup(&earlier, "c-1", "pending")]);
        assert_eq!(found.map(|b| b.backup_id), Some(format!("{earlier}-id")));
        // Not one that is over (a new Delete takes a new backup), not the user's own, not
        // another cluster's.
        for other in [
            backup(&earlier, "c-1", "succeed"),
            backup(&earlier, "c-1", "failed"),
            backup("nightly", "c-1", "pending"),
            backup(&backup_name("req-1", "c-2", "c-1-name"), "c-2", "pending"),
        ] {
            assert_eq!(under_way(&c, vec![other.clone()]), None, "{other:?}");
        }
    }

    #[test]
    fn a_cluster_that_ran_but_does_not_run_now_fails_the_delete_saying_what_to_do() {
        let listed = [cluster("c-1", "stopped", 1_718_001_200)];
        let err = to_back_up(&doomed(&["c-1"]), &listed).unwrap_err();
        assert!(err.reason.contains("c-1-name (c-1) is stopped"), "{err}");
        assert!(err.reason.contains("OnDelete terminate"), "{err}");
    }

    #[test]
    fn one_delete_names_its_backup_alike_every_time() {
        let a = backup_name("req-1", "c-1", "fs-demo");
        assert_eq!(a, backup_name("req-1", "c-1", "fs-demo"));
        assert_ne!(a, backup_name("req-2", "c-1", "fs-demo"));
        assert_ne!(a, backup_name("req-1", "c-2", "fs-demo"));
        assert!(a.starts_with("fs-demo-stack-delete-"), "{a}");
    }
}
