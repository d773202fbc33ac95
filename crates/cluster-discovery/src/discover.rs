//! The AWS calls of discovery: four in all, two at a time.

use crate::error::DiscoveryError;
use crate::input::Input;
use aws_sdk_ec2::types::{Filter, RouteTable};
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_eks::types::Cluster;
use custom_resource::arn::{Arn, role_arn_without_path};
use custom_resource::aws::AwsError;
use std::collections::BTreeMap;

/// Everything the rest of the stack needs to know about the cluster and the Hopsworks role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    pub cluster_name: String,
    pub cluster_arn: String,
    pub partition: String,
    pub region: String,
    pub account_id: String,
    pub endpoint: String,
    pub kubernetes_version: String,
    pub authentication_mode: String,
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub cluster_security_group_id: String,
    pub subnet_ids: Vec<String>,
    pub public_subnet_ids: Vec<String>,
    pub private_subnet_ids: Vec<String>,
    pub instance_profile_name: String,
    pub instance_profile_arn: String,
    pub role_name: String,
    pub role_arn: String,
    pub role_arn_without_path: String,
}

impl Discovered {
    /// `Fn::GetAtt` attributes. Lists are comma-separated (`Fn::Split` turns them back into lists).
    pub fn attributes(&self) -> BTreeMap<String, String> {
        [
            ("ClusterName", self.cluster_name.clone()),
            ("ClusterArn", self.cluster_arn.clone()),
            ("Partition", self.partition.clone()),
            ("Region", self.region.clone()),
            ("AccountId", self.account_id.clone()),
            ("Endpoint", self.endpoint.clone()),
            ("KubernetesVersion", self.kubernetes_version.clone()),
            ("AuthenticationMode", self.authentication_mode.clone()),
            ("VpcId", self.vpc_id.clone()),
            ("VpcCidr", self.vpc_cidr.clone()),
            (
                "ClusterSecurityGroupId",
                self.cluster_security_group_id.clone(),
            ),
            ("SubnetIds", self.subnet_ids.join(",")),
            ("PublicSubnetIds", self.public_subnet_ids.join(",")),
            ("PrivateSubnetIds", self.private_subnet_ids.join(",")),
            ("InstanceProfileName", self.instance_profile_name.clone()),
            ("InstanceProfileArn", self.instance_profile_arn.clone()),
            ("RoleName", self.role_name.clone()),
            ("RoleArn", self.role_arn.clone()),
            ("RoleArnWithoutPath", self.role_arn_without_path.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// The AWS clients discovery calls.
#[derive(Debug, Clone)]
pub struct Clients {
    pub eks: aws_sdk_eks::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    /// For the pre-flight check of the Hopsworks bucket.
    pub s3: aws_sdk_s3::Client,
}

struct Role {
    profile_arn: String,
    name: String,
    arn: String,
}

impl Clients {
    /// DescribeCluster and GetInstanceProfile, then DescribeVpcs and DescribeRouteTables.
    pub async fn discover(&self, input: &Input) -> Result<Discovered, DiscoveryError> {
        let (cluster, role) = tokio::join!(
            self.describe_cluster(&input.cluster_name),
            self.instance_profile_role(&input.instance_profile.name)
        );
        let cluster = cluster?;
        let cluster_arn = cluster.arn().unwrap_or_default().to_owned();
        let arn = Arn::parse(&cluster_arn).ok_or_else(|| DiscoveryError::Answer {
            call: "eks:DescribeCluster",
            problem: format!("the cluster ARN {cluster_arn:?} does not parse"),
        })?;
        if let Some(profile_account) = &input.instance_profile.account
            && profile_account != arn.account
        {
            return Err(DiscoveryError::ForeignInstanceProfile {
                profile_account: profile_account.clone(),
                account: arn.account.to_owned(),
            });
        }
        let role = role.map_err(|e| match e {
            DiscoveryError::InstanceProfileNotFound { name, .. } => {
                DiscoveryError::InstanceProfileNotFound {
                    name,
                    account: arn.account.to_owned(),
                }
            }
            other => other,
        })?;

        let name = &input.cluster_name;
        let vpc_config = cluster.resources_vpc_config();
        let incomplete = |field, why| DiscoveryError::ClusterIncomplete {
            name: name.clone(),
            field,
            why,
        };
        let vpc_id = vpc_config
            .and_then(|c| c.vpc_id())
            .ok_or_else(|| incomplete("resourcesVpcConfig.vpcId", "the VPC Hopsworks joins"))?;
        let cluster_security_group_id = vpc_config
            .and_then(|c| c.cluster_security_group_id())
            .ok_or_else(|| {
                incomplete(
                    "resourcesVpcConfig.clusterSecurityGroupId",
                    "ports 80 and 443 are opened on it",
                )
            })?;
        let subnet_ids: Vec<String> = vpc_config
            .map(|c| c.subnet_ids().to_vec())
            .unwrap_or_default();

        let (cidr, route_tables) = tokio::join!(self.vpc_cidr(vpc_id), self.route_tables(vpc_id));
        let (public_subnet_ids, private_subnet_ids) = split_public(&subnet_ids, &route_tables?);

        Ok(Discovered {
            cluster_name: name.clone(),
            partition: arn.partition.to_owned(),
            region: arn.region.to_owned(),
            account_id: arn.account.to_owned(),
            endpoint: cluster.endpoint().unwrap_or_default().to_owned(),
            kubernetes_version: cluster.version().unwrap_or_default().to_owned(),
            authentication_mode: eks_cluster::authentication_mode(&cluster),
            vpc_id: vpc_id.to_owned(),
            vpc_cidr: cidr?,
            cluster_security_group_id: cluster_security_group_id.to_owned(),
            subnet_ids,
            public_subnet_ids,
            private_subnet_ids,
            instance_profile_name: input.instance_profile.name.clone(),
            instance_profile_arn: role.profile_arn,
            role_arn_without_path: role_arn_without_path(&role.arn).unwrap_or(role.arn.clone()),
            role_name: role.name,
            role_arn: role.arn,
            cluster_arn,
        })
    }

    async fn describe_cluster(&self, name: &str) -> Result<Cluster, DiscoveryError> {
        Ok(eks_cluster::describe_active(&self.eks, name).await?)
    }

    async fn instance_profile_role(&self, name: &str) -> Result<Role, DiscoveryError> {
        let output = self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error()
                    .is_some_and(|se| se.is_no_such_entity_exception())
                {
                    DiscoveryError::InstanceProfileNotFound {
                        name: name.to_owned(),
                        account: String::new(),
                    }
                } else {
                    aws_error("iam:GetInstanceProfile", e)
                }
            })?;
        let profile = output
            .instance_profile
            .ok_or_else(|| DiscoveryError::Answer {
                call: "iam:GetInstanceProfile",
                problem: "the answer has no instance profile".to_owned(),
            })?;
        let role =
            profile
                .roles()
                .first()
                .ok_or_else(|| DiscoveryError::InstanceProfileWithoutRole {
                    name: name.to_owned(),
                })?;
        Ok(Role {
            profile_arn: profile.arn().to_owned(),
            name: role.role_name().to_owned(),
            arn: role.arn().to_owned(),
        })
    }

    async fn vpc_cidr(&self, vpc_id: &str) -> Result<String, DiscoveryError> {
        let output = self
            .ec2
            .describe_vpcs()
            .vpc_ids(vpc_id)
            .send()
            .await
            .map_err(|e| aws_error("ec2:DescribeVpcs", e))?;
        output
            .vpcs()
            .first()
            .and_then(|v| v.cidr_block())
            .map(str::to_owned)
            .ok_or_else(|| DiscoveryError::Answer {
                call: "ec2:DescribeVpcs",
                problem: format!("VPC {vpc_id} has no CIDR block"),
            })
    }

    async fn route_tables(&self, vpc_id: &str) -> Result<Vec<RouteTable>, DiscoveryError> {
        Self::route_tables_of(&self.ec2, vpc_id)
            .await
            .map_err(|source| DiscoveryError::Aws {
                call: "ec2:DescribeRouteTables",
                source,
            })
    }

    /// Every route table of the VPC (DescribeRouteTables, all pages).
    pub(crate) async fn route_tables_of(
        ec2: &aws_sdk_ec2::Client,
        vpc_id: &str,
    ) -> Result<Vec<RouteTable>, AwsError> {
        let mut tables = Vec::new();
        let mut pages = ec2
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(vpc_id).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            tables.extend(
                page.map_err(AwsError::new)?
                    .route_tables
                    .unwrap_or_default(),
            );
        }
        Ok(tables)
    }
}

/// A subnet is public when its route table (its own association, else the VPC's main table) sends
/// 0.0.0.0/0 or ::/0 to an internet gateway.
pub(crate) fn split_public(
    subnet_ids: &[String],
    tables: &[RouteTable],
) -> (Vec<String>, Vec<String>) {
    let associated = |subnet: &str| {
        tables.iter().find(|t| {
            t.associations()
                .iter()
                .any(|a| a.subnet_id() == Some(subnet))
        })
    };
    let main = tables
        .iter()
        .find(|t| t.associations().iter().any(|a| a.main() == Some(true)));
    let is_public = |table: &RouteTable| {
        table.routes().iter().any(|r| {
            let default = matches!(r.destination_cidr_block(), Some("0.0.0.0/0"))
                || matches!(r.destination_ipv6_cidr_block(), Some("::/0"));
            default && r.gateway_id().is_some_and(|g| g.starts_with("igw-"))
        })
    };
    subnet_ids
        .iter()
        .cloned()
        .partition(|s| associated(s).or(main).is_some_and(is_public))
}

fn aws_error<E, R>(call: &'static str, err: aws_sdk_eks::error::SdkError<E, R>) -> DiscoveryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    DiscoveryError::Aws {
        call,
        source: AwsError::new(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{Route, RouteTableAssociation};

    fn table(subnets: &[&str], main: bool, igw: bool) -> RouteTable {
        let mut b = RouteTable::builder();
        for s in subnets {
            b = b.associations(RouteTableAssociation::builder().subnet_id(*s).build());
        }
        if main {
            b = b.associations(RouteTableAssociation::builder().main(true).build());
        }
        b = b.routes(
            Route::builder()
                .destination_cidr_block("10.0.0.0/16")
                .gateway_id("local")
                .build(),
        );
        if igw {
            b = b.routes(
                Route::builder()
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id("igw-1")
                    .build(),
            );
        } else {
            b = b.routes(
                Route::builder()
                    .destination_cidr_block("0.0.0.0/0")
                    .nat_gateway_id("nat-1")
                    .build(),
            );
        }
        b.build()
    }

    #[test]
    fn subnets_follow_their_own_table_then_the_main_one() {
        let subnets: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let tables = [table(&["a"], false, true), table(&["b"], true, false)];
        let (public, private) = split_public(&subnets, &tables);
        assert_eq!(public, ["a"]);
        assert_eq!(private, ["b", "c"]); // c has no association: the main table (NAT) decides
        let tables = [table(&["b"], false, false), table(&[], true, true)];
        let (public, _) = split_public(&subnets, &tables);
        assert_eq!(public, ["a", "c"]);
    }
}
