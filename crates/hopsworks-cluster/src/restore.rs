//! The Create's POST: a new cluster from the properties, or, with `RestoreFromBackupId`, the
//! backup's cluster (its configuration and data) with this resource's name, tags (the owner and
//! settings tags among them), instance profile and network. Either way a POST whose answer was
//! lost is adopted by name, owner and fingerprint, never repeated blind.

use crate::Stop;
use custom_resource::{Context, Failure};
use hopsworks_ai::{Client, Cluster, Created, NewCluster, RestoreCluster};

/// POST `cluster`, or restore it from `backup_id`.
pub(crate) async fn post(
    client: &Client,
    cluster: &NewCluster,
    backup_id: Option<&str>,
    is_ours: impl Fn(&Cluster) -> bool,
    ctx: &Context,
) -> Result<Created, Stop> {
    let Some(backup_id) = backup_id else {
        ctx.step(format!("creating Hopsworks cluster {}", cluster.name));
        return Ok(client.create_cluster(cluster, is_ours).await?);
    };
    ctx.step(format!(
        "restoring Hopsworks cluster {} from backup {backup_id}",
        cluster.name
    ));
    let created = client
        .restore_cluster(backup_id, &request(cluster), is_ours)
        .await
        .map_err(|e| refused(e, backup_id))?;
    tracing::info!(backup_id, cluster_id = %created.id(), "restoring from the backup");
    Ok(created)
}

/// The restore's body: what the new cluster takes from the properties rather than the backup.
fn request(cluster: &NewCluster) -> RestoreCluster {
    RestoreCluster {
        name: cluster.name.clone(),
        ssh_key_name: cluster.ssh_key_name.clone(),
        tags: cluster.tags.clone(),
        instance_profile_arn: cluster.instance_profile_arn.clone(),
        head_instance_profile_arn: cluster.head_instance_profile_arn.clone(),
        vpc_id: cluster.vpc_id.clone(),
        subnet_id: cluster.subnet_id.clone(),
        security_group_id: cluster.security_group_id.clone(),
    }
}

/// A refused restore, said in terms of the property.
fn refused(e: hopsworks_ai::Error, backup_id: &str) -> Stop {
    match e.code() {
        Some(404) => Stop::Failed(Failure::new(format!(
            "RestoreFromBackupId: there is no backup {backup_id} in this Hopsworks.ai account \
             ({e}); check the id (a stack's Delete logs the backup it takes as backup_id), or \
             leave RestoreFromBackupId empty for a new, empty cluster"
        ))),
        Some(400) => Stop::Failed(Failure::new(format!(
            "RestoreFromBackupId: Hopsworks.ai refused to restore backup {backup_id}: {e}; only \
             a backup that has succeeded can be restored, and the restored cluster needs a \
             ClusterName and an EKS cluster no other Hopsworks cluster uses"
        ))),
        _ => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopsworks_ai::model::Tag;

    #[test]
    fn a_restore_takes_name_tags_profile_and_network_from_the_properties() {
        let cluster = NewCluster {
            name: "fs".into(),
            bucket_name: "not-sent".into(),
            eks_cluster_name: "not-sent".into(),
            tags: vec![Tag {
                name: "owner".into(),
                value: "me".into(),
            }],
            instance_profile_arn: "arn:aws:iam::111122223333:instance-profile/h".into(),
            vpc_id: "vpc-1".into(),
            subnet_id: "subnet-1".into(),
            security_group_id: "sg-1".into(),
            ..NewCluster::default()
        };
        let body = serde_json::to_value(request(&cluster)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "name": "fs",
                "tags": [{"name": "owner", "value": "me"}],
                "instanceProfileArn": "arn:aws:iam::111122223333:instance-profile/h",
                "vpcId": "vpc-1", "subnetId": "subnet-1", "securityGroupId": "sg-1",
            })
        );
    }
}
