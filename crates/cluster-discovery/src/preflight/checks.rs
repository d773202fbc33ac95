//! The AWS calls of the pre-flight checks: s3:GetBucketLocation, ec2:DescribeKeyPairs, and for
//! the subnet ec2:DescribeSubnets with eks:DescribeCluster, then ec2:DescribeRouteTables.

use super::SubnetCheck;
use super::error::{Hint, PreflightError};
use crate::discover::{Clients, split_public};
use aws_sdk_eks::error::{ProvideErrorMetadata, SdkError};
use custom_resource::aws::AwsError;
use eks_cluster::ClusterError;

impl Clients {
    /// The bucket exists, this account may read it, and it is in `region`.
    pub(super) async fn check_bucket(
        &self,
        bucket: &str,
        region: &str,
    ) -> Result<(), PreflightError> {
        let answer = self.s3.get_bucket_location().bucket(bucket).send().await;
        let actual = match answer {
            Ok(output) => bucket_region(output.location_constraint().map(|c| c.as_str())),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                // S3 names the bucket's region when it will not answer for it here.
                let elsewhere = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .map(str::to_owned);
                return Err(match (code, elsewhere) {
                    ("NoSuchBucket", _) => PreflightError::NoSuchBucket {
                        bucket: bucket.to_owned(),
                        region: region.to_owned(),
                    },
                    ("AccessDenied", _) => PreflightError::BucketDenied {
                        bucket: bucket.to_owned(),
                        region: region.to_owned(),
                        source: AwsError::new(e),
                    },
                    (_, Some(actual)) if actual != region => PreflightError::BucketElsewhere {
                        bucket: bucket.to_owned(),
                        actual,
                        region: region.to_owned(),
                    },
                    _ => aws_error("s3:GetBucketLocation", e),
                });
            }
        };
        if actual == region {
            Ok(())
        } else {
            Err(PreflightError::BucketElsewhere {
                bucket: bucket.to_owned(),
                actual,
                region: region.to_owned(),
            })
        }
    }

    pub(super) async fn check_key_pair(
        &self,
        name: &str,
        region: &str,
    ) -> Result<(), PreflightError> {
        let missing = || PreflightError::NoSuchKeyPair {
            name: name.to_owned(),
            region: region.to_owned(),
        };
        match self.ec2.describe_key_pairs().key_names(name).send().await {
            Ok(output)
                if output
                    .key_pairs()
                    .iter()
                    .any(|k| k.key_name() == Some(name)) =>
            {
                Ok(())
            }
            Ok(_) => Err(missing()),
            Err(e) if e.code() == Some("InvalidKeyPair.NotFound") => Err(missing()),
            Err(e) => Err(aws_error("ec2:DescribeKeyPairs", e)),
        }
    }

    /// The subnet is in the cluster's VPC, and public.
    pub(super) async fn check_subnet(
        &self,
        check: &SubnetCheck,
        region: &str,
    ) -> Result<(), PreflightError> {
        let subnet = &check.subnet_id;
        let (found, cluster) = tokio::join!(
            self.ec2.describe_subnets().subnet_ids(subnet).send(),
            eks_cluster::describe_active(&self.eks, &check.cluster_name)
        );
        let cluster = match cluster {
            Ok(cluster) => cluster,
            Err(ClusterError::NotFound { .. }) if check.new_cluster => {
                return Err(PreflightError::SubnetForNewCluster {
                    subnet: subnet.clone(),
                    cluster: check.cluster_name.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let config = cluster.resources_vpc_config();
        let vpc = config
            .and_then(|c| c.vpc_id())
            .ok_or_else(|| PreflightError::Answer {
                call: "eks:DescribeCluster",
                problem: format!("EKS cluster {} has no VPC", check.cluster_name),
            })?
            .to_owned();
        let cluster_subnets = config.map(|c| c.subnet_ids().to_vec()).unwrap_or_default();
        let tables = Self::route_tables_of(&self.ec2, &vpc)
            .await
            .map_err(|source| PreflightError::Aws {
                call: "ec2:DescribeRouteTables",
                source,
            })?;
        // Sorted: one Reason for one account, whatever order EKS lists the subnets in.
        let mut public = split_public(&cluster_subnets, &tables).0;
        public.sort();
        let public = Hint(public);
        let actual = match found {
            Ok(output) => output
                .subnets()
                .iter()
                .find(|s| s.subnet_id() == Some(subnet))
                .and_then(|s| s.vpc_id())
                .map(str::to_owned),
            Err(e) if e.code() == Some("InvalidSubnetID.NotFound") => None,
            Err(e) => return Err(aws_error("ec2:DescribeSubnets", e)),
        };
        let Some(actual) = actual else {
            return Err(PreflightError::NoSuchSubnet {
                subnet: subnet.clone(),
                region: region.to_owned(),
                vpc,
                cluster: check.cluster_name.clone(),
                public,
            });
        };
        if actual != vpc {
            return Err(PreflightError::SubnetElsewhere {
                subnet: subnet.clone(),
                actual,
                vpc,
                cluster: check.cluster_name.clone(),
                public,
            });
        }
        if split_public(std::slice::from_ref(subnet), &tables)
            .0
            .is_empty()
        {
            return Err(PreflightError::PrivateSubnet {
                subnet: subnet.clone(),
                vpc,
                public,
            });
        }
        Ok(())
    }
}

/// GetBucketLocation's LocationConstraint as a region: none for us-east-1, `EU` for eu-west-1
/// (the names S3 kept from before regions had names).
fn bucket_region(constraint: Option<&str>) -> String {
    match constraint {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(region) => region.to_owned(),
    }
}

fn aws_error<E, R>(call: &'static str, err: SdkError<E, R>) -> PreflightError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    PreflightError::Aws {
        call,
        source: AwsError::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_constraints_read_as_regions() {
        assert_eq!(bucket_region(None), "us-east-1");
        assert_eq!(bucket_region(Some("")), "us-east-1");
        assert_eq!(bucket_region(Some("EU")), "eu-west-1");
        assert_eq!(bucket_region(Some("eu-north-1")), "eu-north-1");
    }
}
