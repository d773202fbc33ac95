//! Replacement: an Update whose changes need a new Hopsworks cluster (any property outside
//! [`IN_PLACE`]) makes one only when `AllowReplacement` is true, since CloudFormation then deletes
//! the old one. The new cluster is made as a Create makes one (restored from a backup with
//! `RestoreFromBackupId`) and answers a new physical id; CloudFormation's clean-up then deletes
//! the old id with the old properties, applying their `OnDelete`, and that Delete removes only the
//! old cluster: its sweep is limited to the old properties' fingerprint
//! ([`crate::ownership::swept_by`]).
//!
//! CloudFormation makes the new cluster before it deletes the old one, and Hopsworks.ai allows
//! one cluster of a name, and one per EKS cluster: a replacement needs a new `ClusterName` and a
//! new EKS cluster, and is refused before anything is made otherwise.

use crate::{HopsworksCluster, IN_PLACE, Settings, Waiting, bounded, ownership, read_state};
use custom_resource::{Context, Failure, Outcome, Progress, Request};
use hopsworks_ai::Cluster;

impl HopsworksCluster {
    /// An Update whose properties `changed` need a new cluster; `current` is the cluster the
    /// physical id names (`None` when it is gone). Also the continuation of a replacement handed
    /// on to a new invocation ([`is_replacing`]).
    pub(crate) async fn replace(
        &self,
        request: &Request,
        ctx: &Context,
        current: Option<&Cluster>,
        changed: &[String],
    ) -> Result<Progress<Outcome>, Failure> {
        let settings = Settings::parse(&request.properties, &self.region)?;
        if is_replacing(ctx)? {
            return self.make_replacement(request, &settings, ctx).await;
        }
        if !settings.allow_replacement {
            return Err(Failure::new(format!(
                "{} cannot change on an existing Hopsworks cluster (only {} can); set \
                 AllowReplacement to true to make a new cluster (CloudFormation then deletes this \
                 one as its OnDelete says: backup-then-terminate by default), or put the old \
                 value back",
                changed.join(", "),
                IN_PLACE.join(", ")
            )));
        }
        if let Some(current) = current {
            check_coexistence(current, &settings)?;
            tracing::info!(
                cluster_id = %current.id,
                changed = %changed.join(", "),
                "AllowReplacement: making a new Hopsworks cluster; CloudFormation deletes this one after the update, as its OnDelete says"
            );
        }
        self.make_replacement(request, &settings, ctx).await
    }

    /// Make the new cluster as a Create does. If that fails, CloudFormation keeps the old
    /// physical id and never deletes the new cluster: so a new cluster that never started (no
    /// data) is terminated here, and the answer carries the old id.
    async fn make_replacement(
        &self,
        request: &Request,
        settings: &Settings,
        ctx: &Context,
    ) -> Result<Progress<Outcome>, Failure> {
        let mut failure = match self.create(request, ctx).await {
            Err(failure) => failure,
            done => return done,
        };
        let old = request.action.physical_id().unwrap_or_default().to_owned();
        let Some(new) = failure.physical_id.clone().filter(|id| *id != old) else {
            return Err(failure);
        };
        failure.physical_id = Some(old);
        let undone = match self.client(&settings.secret_arn, ctx).await {
            Ok(client) => undo(&bounded(&client, ctx), &new).await,
            Err(e) => Err(e.reason),
        };
        failure.reason = match undone {
            Ok(()) => format!(
                "{} (the new cluster {new}, which never started, is terminated)",
                failure.reason
            ),
            Err(why) => format!(
                "{} (the new cluster {new} is left: {why}; terminate it in Hopsworks.ai)",
                failure.reason
            ),
        };
        Err(failure)
    }
}

/// Terminate the failed replacement `id` if it never started (else it holds data: left).
async fn undo(client: &hopsworks_ai::Client, id: &str) -> Result<(), String> {
    match client.get_cluster(id).await.map_err(|e| e.to_string())? {
        None => Ok(()),
        Some(cluster) if cluster.started_on == 0 => {
            client.delete_cluster(id).await.map_err(|e| e.to_string())?;
            tracing::info!(
                phase = "delete",
                cluster_id = id,
                "the failed replacement never started: terminating it"
            );
            Ok(())
        }
        Some(cluster) => Err(format!("it ran, and is {}", cluster.state)),
    }
}

/// Whether this Update is a replacement handed on while its new cluster starts.
pub(crate) fn is_replacing(ctx: &Context) -> Result<bool, Failure> {
    Ok(matches!(read_state(ctx)?, Some(Waiting::Running { .. })))
}

/// The new cluster must be able to live beside `current` until CloudFormation deletes it.
fn check_coexistence(current: &Cluster, settings: &Settings) -> Result<(), Failure> {
    let wanted = &settings.cluster;
    if current.name == wanted.name {
        return Err(Failure::new(format!(
            "AllowReplacement: the new Hopsworks cluster is made before CloudFormation deletes \
             the old one ({}), and Hopsworks.ai allows one cluster of a name: change ClusterName \
             too (it is {})",
            current.id, wanted.name
        )));
    }
    if ownership::uses_same_eks(current, wanted) {
        return Err(Failure::new(format!(
            "AllowReplacement: the new Hopsworks cluster is made before CloudFormation deletes \
             the old one ({}), and an EKS cluster serves one Hopsworks cluster: give the new one \
             another EKS cluster (EksClusterName is {})",
            current.id, wanted.eks_cluster_name
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopsworks_ai::NewCluster;
    use hopsworks_ai::model::AwsSettings;

    fn settings(name: &str, eks: &str) -> Settings {
        Settings {
            secret_arn: String::new(),
            cluster: NewCluster {
                name: name.into(),
                eks_cluster_name: eks.into(),
                region: "us-east-2".into(),
                ..NewCluster::default()
            },
            ports: Default::default(),
            poll_seconds: 1,
            timeout_minutes: 1,
            on_delete: crate::OnDelete::Terminate,
            restore_from: None,
            allow_replacement: true,
        }
    }

    #[test]
    fn a_replacement_needs_a_new_name_and_a_new_eks_cluster() {
        let current = Cluster {
            id: "c-1".into(),
            name: "fs".into(),
            aws: AwsSettings {
                region: "us-east-2".into(),
                eks_cluster_name: "eks-a".into(),
                ..AwsSettings::default()
            },
            ..Cluster::default()
        };
        let err = check_coexistence(&current, &settings("fs", "eks-b")).unwrap_err();
        assert!(err.reason.contains("change ClusterName too"), "{err}");
        let err = check_coexistence(&current, &settings("fs2", "eks-a")).unwrap_err();
        assert!(err.reason.contains("EksClusterName is eks-a"), "{err}");
        assert!(check_coexistence(&current, &settings("fs2", "eks-b")).is_ok());
    }
}
