//! Which Hopsworks clusters are this resource's: the ones tagged with its owner key.
//!
//! A Create tags its cluster [`OWNER_TAG`] = [`Owner::key`]; a Delete removes every cluster so
//! tagged, whatever id it is given (the failed-create marker included), and a Create that finds
//! one of its own (a duplicate delivery, a POST whose answer was lost) waits for it instead of
//! making a second. Clusters made by earlier releases carry [`LEGACY_OWNER_TAG`] with the earlier
//! owner form; both are read.
//!
//! One resource can own two clusters for a while: after an Update that replaced its cluster, the
//! new one is made before CloudFormation deletes the old one (with the old properties). So the
//! settings tag ([`SETTINGS_TAG`], the fingerprint of the properties a cluster was made with)
//! tells them apart: a Delete removes only the owned clusters of its own properties, and a Create
//! adopts only one of its own name and properties.

use crate::SETTINGS_TAG;
use custom_resource::{OWNER_TAG, Owner};
use hopsworks_ai::{Cluster, NewCluster};

/// The owner tag's name in earlier releases (value `<stack id>#<logical id>`): still read.
pub const LEGACY_OWNER_TAG: &str = "hopsworks-eks-stack";

/// Whether `cluster` is tagged as made by `owner` (this tag name or the earlier one).
pub fn owned_by(cluster: &Cluster, owner: &Owner) -> bool {
    cluster
        .tags
        .iter()
        .any(|t| (t.name == OWNER_TAG || t.name == LEGACY_OWNER_TAG) && owner.matches(&t.value))
}

/// Whether `cluster` is the one a Create of `wanted` by `owner`, with properties of
/// `fingerprint`, made: its name, its owner tag and its settings tag.
pub fn made_by(cluster: &Cluster, wanted: &NewCluster, owner: &Owner, fingerprint: &str) -> bool {
    cluster.name == wanted.name
        && owned_by(cluster, owner)
        && cluster.tag(SETTINGS_TAG) == Some(fingerprint)
}

/// Whether a Delete of `owner`'s resource with properties of `fingerprint` removes `cluster`
/// (besides the cluster its physical id names): owned, and made with those properties. A cluster
/// without a settings tag (made by an earlier release) is removed by its owner tag alone.
pub fn swept_by(cluster: &Cluster, owner: &Owner, fingerprint: &str) -> bool {
    owned_by(cluster, owner) && cluster.tag(SETTINGS_TAG).is_none_or(|f| f == fingerprint)
}

/// Whether `cluster` holds the EKS cluster `wanted` asks for: same name, same region (EKS names
/// are unique per region; a cluster whose region Hopsworks.ai does not say counts as the same).
pub fn uses_same_eks(cluster: &Cluster, wanted: &NewCluster) -> bool {
    cluster.aws.eks_cluster_name == wanted.eks_cluster_name
        && (cluster.aws.region.is_empty() || cluster.aws.region == wanted.region)
}

/// Whether `id` can be a Hopsworks cluster id: safe in a URL path and as an ECR name prefix. The
/// failed-create marker, an empty id or anything odd is not (it would widen the prefix).
pub fn is_cluster_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopsworks_ai::model::{AwsSettings, Tag};

    const STACK: &str = "arn:aws:cloudformation:us-east-2:111122223333:stack/hops/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f";

    fn owner(logical: &str) -> Owner {
        Owner {
            stack_id: STACK.into(),
            logical_id: logical.into(),
        }
    }

    fn cluster(name: &str, tags: &[(&str, &str)]) -> Cluster {
        Cluster {
            id: "c-1".into(),
            name: name.into(),
            tags: tags
                .iter()
                .map(|(n, v)| Tag {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            aws: AwsSettings {
                region: "us-east-2".into(),
                eks_cluster_name: "demo".into(),
                ecr_registry_account_id: String::new(),
            },
            ..Cluster::default()
        }
    }

    #[test]
    fn the_owner_tag_and_the_earlier_one_are_both_read() {
        let o = owner("HopsworksCluster");
        let key = o.key();
        let legacy = format!("{STACK}#HopsworksCluster");
        assert!(owned_by(&cluster("fs", &[(OWNER_TAG, &key)]), &o));
        assert!(owned_by(&cluster("fs", &[(LEGACY_OWNER_TAG, &legacy)]), &o));
        // Another resource of the same stack, another tag name with our value, no tag: not ours.
        assert!(!owned_by(
            &cluster("fs", &[(OWNER_TAG, &owner("Other").key())]),
            &o
        ));
        assert!(!owned_by(&cluster("fs", &[("team", &key)]), &o));
        assert!(!owned_by(&cluster("fs", &[]), &o));
    }

    #[test]
    fn a_create_adopts_its_own_name_tag_and_properties_only() {
        let o = owner("HopsworksCluster");
        let key = o.key();
        let wanted = NewCluster {
            name: "fs".into(),
            eks_cluster_name: "demo".into(),
            region: "us-east-2".into(),
            ..NewCluster::default()
        };
        let ours = [(OWNER_TAG, key.as_str()), (SETTINGS_TAG, "f1")];
        assert!(made_by(&cluster("fs", &ours), &wanted, &o, "f1"));
        assert!(!made_by(&cluster("fs", &[]), &wanted, &o, "f1"));
        assert!(!made_by(&cluster("other", &ours), &wanted, &o, "f1"));
        // The cluster a replacement leaves behind: same owner, other properties.
        assert!(!made_by(&cluster("fs", &ours), &wanted, &o, "f2"));
        assert!(!made_by(
            &cluster("fs", &[(OWNER_TAG, &key)]),
            &wanted,
            &o,
            "f1"
        ));
    }

    #[test]
    fn a_delete_sweeps_the_clusters_of_its_own_properties_only() {
        let o = owner("HopsworksCluster");
        let key = o.key();
        let old = cluster("fs", &[(OWNER_TAG, &key), (SETTINGS_TAG, "old")]);
        let replacement = cluster("fs2", &[(OWNER_TAG, &key), (SETTINGS_TAG, "new")]);
        assert!(swept_by(&old, &o, "old"));
        assert!(!swept_by(&replacement, &o, "old"));
        // An earlier release's cluster, no settings tag: by its owner alone.
        assert!(swept_by(&cluster("fs", &[(OWNER_TAG, &key)]), &o, "old"));
        assert!(!swept_by(
            &cluster("fs", &[(SETTINGS_TAG, "old")]),
            &o,
            "old"
        ));
    }

    #[test]
    fn an_eks_cluster_of_the_same_name_elsewhere_is_another_cluster() {
        let wanted = NewCluster {
            eks_cluster_name: "demo".into(),
            region: "us-east-2".into(),
            ..NewCluster::default()
        };
        let mut c = cluster("x", &[]);
        assert!(uses_same_eks(&c, &wanted));
        c.aws.region = "eu-west-1".into();
        assert!(!uses_same_eks(&c, &wanted));
        c.aws.region = String::new();
        assert!(
            uses_same_eks(&c, &wanted),
            "unknown region: assume the same"
        );
        c.aws.eks_cluster_name = "other".into();
        assert!(!uses_same_eks(&c, &wanted));
    }

    #[test]
    fn only_plain_ids_are_cluster_ids() {
        assert!(is_cluster_id("5e1d2c3b-aaaa-bbbb-cccc-000000000001"));
        for bad in [
            "",
            "failed-create:HopsworksCluster:0d8f",
            "../clusters",
            "a/b",
            "a b",
        ] {
            assert!(!is_cluster_id(bad), "{bad:?}");
        }
    }
}
