//! Before a cluster is made: its version must be one Hopsworks.ai's catalogue offers (`GET
//! /api/clusters/hopsworks/versions/AWS`), and offered in this region where the catalogue lists
//! regions for the cluster's OS. The catalogue says nothing of Kubernetes versions, so neither
//! does this check. (An upgrade's own checks are in `update`.)

use crate::{Stop, bounded};
use custom_resource::{Context, Failure};
use hopsworks_ai::model::Version;
use hopsworks_ai::{Client, NewCluster};

/// Read the catalogue and refuse a version it does not offer here.
pub(crate) async fn check_offered(
    client: &Client,
    cluster: &NewCluster,
    ctx: &Context,
) -> Result<(), Stop> {
    ctx.step("reading the Hopsworks versions Hopsworks.ai offers");
    let catalogue = bounded(client, ctx).versions().await?;
    offered(&catalogue, &cluster.version, &cluster.os, &cluster.region)
        .map_err(|reason| Failure::new(reason).into())
}

fn offered(catalogue: &[Version], version: &str, os: &str, region: &str) -> Result<(), String> {
    let names = |entries: &mut dyn Iterator<Item = &Version>| {
        entries
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(entry) = catalogue.iter().find(|v| v.version == version) else {
        return Err(format!(
            "HopsworksVersion {version} is not a version Hopsworks.ai offers ({}); set one of them",
            names(&mut catalogue.iter())
        ));
    };
    let here = |v: &Version| {
        let regions = v.regions.for_os(os);
        regions.is_empty() || regions.iter().any(|r| r == region)
    };
    if here(entry) {
        return Ok(());
    }
    let elsewhere = entry.regions.for_os(os).join(", ");
    Err(format!(
        "Hopsworks.ai offers HopsworksVersion {version} in {elsewhere} only, not in {region} \
         where this stack is: set a version it offers in {region} ({}), or deploy the stack in \
         one of those regions",
        names(&mut catalogue.iter().filter(|v| here(v)))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hopsworks_ai::model::Regions;

    fn version(name: &str, ubuntu: &[&str]) -> Version {
        Version {
            version: name.to_owned(),
            regions: Regions {
                ubuntu: ubuntu.iter().map(|r| (*r).to_owned()).collect(),
                centos: Vec::new(),
            },
            ..Version::default()
        }
    }

    #[test]
    fn a_version_is_offered_where_its_regions_say_or_anywhere_when_they_say_nothing() {
        let catalogue = [
            version("3.9.0", &["us-east-2", "eu-west-1"]),
            version("4.0.0", &["eu-west-1"]),
            version("4.1.0", &[]),
        ];
        assert_eq!(offered(&catalogue, "3.9.0", "ubuntu", "us-east-2"), Ok(()));
        assert_eq!(offered(&catalogue, "4.1.0", "ubuntu", "us-east-2"), Ok(()));
        // centos lists no region for 4.0.0: the catalogue does not say, the API decides.
        assert_eq!(offered(&catalogue, "4.0.0", "centos", "us-east-2"), Ok(()));
        assert_eq!(
            offered(&catalogue, "4.0.0", "ubuntu", "us-east-2"),
            Err(
                "Hopsworks.ai offers HopsworksVersion 4.0.0 in eu-west-1 only, not in us-east-2 \
                 where this stack is: set a version it offers in us-east-2 (3.9.0, 4.1.0), or \
                 deploy the stack in one of those regions"
                    .to_owned()
            )
        );
    }

    #[test]
    fn a_version_not_in_the_catalogue_is_refused_with_the_list() {
        let catalogue = [version("3.9.0", &[]), version("4.0.0", &[])];
        assert_eq!(
            offered(&catalogue, "3.7.0", "ubuntu", "us-east-2"),
            Err(
                "HopsworksVersion 3.7.0 is not a version Hopsworks.ai offers (3.9.0, 4.0.0); set \
                 one of them"
                    .to_owned()
            )
        );
    }
}
