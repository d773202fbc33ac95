//! The `SecurityGroupIngress` custom resource (seed step 4): open ports 80 and 443 on the EKS
//! cluster security group. A native `AWS::EC2::SecurityGroupIngress` fails on a rule that already
//! exists and would delete it with the stack; this resource adopts an identical rule (and leaves
//! it on Delete), tags the rules it creates, and on Delete revokes only those.

mod error;
mod input;

pub use error::IngressError;
pub use input::{Input, InputError, Source};

/// Every AWS action this resource calls: its role in the template grants exactly these.
pub const IAM_ACTIONS: &[&str] = &[
    "ec2:DescribeSecurityGroupRules",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateTags",
    "ec2:RevokeSecurityGroupIngress",
];

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, SecurityGroupRule, Tag, TagSpecification,
    UserIdGroupPair,
};
use custom_resource::aws::AwsError;
use custom_resource::{
    Context, CustomResource, Failure, OWNER_TAG, Outcome, Owner, Progress, Request,
};

const ID_PREFIX: &str = "sg-ingress:";

#[derive(Debug, Clone)]
pub struct SecurityGroupIngress {
    pub ec2: aws_sdk_ec2::Client,
}

/// Tagged by this resource ([`OWNER_TAG`]): the rules its Delete revokes.
fn is_ours(rule: &SecurityGroupRule, owner: &Owner) -> bool {
    rule.tags()
        .iter()
        .any(|t| t.key() == Some(OWNER_TAG) && t.value().is_some_and(|v| owner.matches(v)))
}

fn allows(rule: &SecurityGroupRule, port: u16, source: &Source) -> bool {
    let port = i32::from(port);
    let from = match source {
        Source::Cidr(cidr) => rule.cidr_ipv4() == Some(cidr.as_str()),
        Source::SecurityGroup(group) => {
            rule.referenced_group_info().and_then(|g| g.group_id()) == Some(group.as_str())
        }
    };
    rule.is_egress() == Some(false)
        && rule.ip_protocol() == Some("tcp")
        && rule.from_port() == Some(port)
        && rule.to_port() == Some(port)
        && from
}

impl SecurityGroupIngress {
    async fn rules(&self, group_id: &str) -> Result<Option<Vec<SecurityGroupRule>>, IngressError> {
        let mut rules = Vec::new();
        let mut pages = self
            .ec2
            .describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(group_id).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => rules.extend(page.security_group_rules.unwrap_or_default()),
                Err(e) if code(&e) == Some("InvalidGroup.NotFound") => return Ok(None),
                Err(e) => return Err(aws_error("ec2:DescribeSecurityGroupRules", e)),
            }
        }
        Ok(Some(rules))
    }

    async fn apply(&self, request: &Request, ctx: &Context) -> Result<Outcome, IngressError> {
        let input = Input::parse(&request.properties)?;
        let owner = Owner::of(request);
        let physical_id = format!("{ID_PREFIX}{}", input.group_id);
        if request.known_physical_id().is_none() {
            ctx.record_physical_id(physical_id.clone());
        }
        ctx.step(format!("reading the ingress rules of {}", input.group_id));
        let rules = self
            .rules(&input.group_id)
            .await?
            .ok_or_else(|| missing_group(&input.group_id))?;
        let adopted: Vec<u16> = input
            .ports
            .iter()
            .copied()
            .filter(|p| {
                rules
                    .iter()
                    .any(|r| allows(r, *p, &input.source) && !is_ours(r, &owner))
            })
            .collect();
        let missing: Vec<u16> = input
            .ports
            .iter()
            .copied()
            .filter(|p| !rules.iter().any(|r| allows(r, *p, &input.source)))
            .collect();
        let stale: Vec<String> = rules
            .iter()
            .filter(|r| is_ours(r, &owner))
            .filter(|r| !input.ports.iter().any(|p| allows(r, *p, &input.source)))
            .filter_map(|r| r.security_group_rule_id().map(str::to_owned))
            .collect();
        if !missing.is_empty() {
            ctx.step(format!("opening ports {missing:?} on {}", input.group_id));
            self.authorize(&input, &missing, &owner).await?;
        }
        if !stale.is_empty() {
            ctx.step(format!("revoking this stack's earlier rules {stale:?}"));
            self.revoke(&input.group_id, &stale).await?;
        }
        let ours: Vec<String> = if missing.is_empty() && stale.is_empty() {
            rules
                .iter()
                .filter(|r| is_ours(r, &owner))
                .filter_map(|r| r.security_group_rule_id().map(str::to_owned))
                .collect()
        } else {
            self.rules(&input.group_id)
                .await?
                .unwrap_or_default()
                .iter()
                .filter(|r| is_ours(r, &owner))
                .filter_map(|r| r.security_group_rule_id().map(str::to_owned))
                .collect()
        };
        tracing::info!(group_id = %input.group_id, ?adopted, created = ?missing, revoked = ?stale, "ingress applied");
        let list = |ports: &[u16]| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        Ok(Outcome::new(physical_id)
            .with("RuleIds", ours.join(","))
            .with("AdoptedPorts", list(&adopted))
            .with("Ports", list(&input.ports)))
    }

    /// One call per port: a rule that appeared meanwhile for one port (`Duplicate`) must not
    /// stop the others from opening.
    async fn authorize(
        &self,
        input: &Input,
        ports: &[u16],
        owner: &Owner,
    ) -> Result<(), IngressError> {
        for port in ports {
            self.authorize_port(input, *port, &owner.key()).await?;
        }
        Ok(())
    }

    async fn authorize_port(
        &self,
        input: &Input,
        port: u16,
        owner: &str,
    ) -> Result<(), IngressError> {
        let builder = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(port))
            .to_port(i32::from(port));
        let permission = match &input.source {
            Source::Cidr(cidr) => builder.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(&input.description)
                    .build(),
            ),
            Source::SecurityGroup(group) => builder.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(group)
                    .description(&input.description)
                    .build(),
            ),
        }
        .build();
        let result = self
            .ec2
            .authorize_security_group_ingress()
            .group_id(&input.group_id)
            .ip_permissions(permission)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroupRule)
                    .set_tags(Some(
                        std::iter::once(Tag::builder().key(OWNER_TAG).value(owner).build())
                            .chain(
                                input
                                    .tags
                                    .iter()
                                    .map(|(k, v)| Tag::builder().key(k).value(v).build()),
                            )
                            .collect(),
                    ))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone added the same rule meanwhile: it is theirs, and it stays.
            Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {
                tracing::info!(port, "the rule appeared meanwhile; adopting it");
                Ok(())
            }
            Err(e) if code(&e) == Some("InvalidGroup.NotFound") => {
                Err(missing_group(&input.group_id))
            }
            Err(e) => Err(aws_error("ec2:AuthorizeSecurityGroupIngress", e)),
        }
    }

    async fn revoke(&self, group_id: &str, rule_ids: &[String]) -> Result<(), IngressError> {
        match self
            .ec2
            .revoke_security_group_ingress()
            .group_id(group_id)
            .set_security_group_rule_ids(Some(rule_ids.to_vec()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    code(&e),
                    Some("InvalidGroup.NotFound")
                        | Some("InvalidSecurityGroupRuleId.NotFound")
                        | Some("InvalidPermission.NotFound")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(aws_error("ec2:RevokeSecurityGroupIngress", e)),
        }
    }

    /// Revoke the rules this resource tagged, on the group its id names, or for the failed-create
    /// marker (the Create's answer may have been lost after it authorized) the group its
    /// properties name.
    async fn remove(&self, request: &Request, ctx: &Context) -> Result<(), IngressError> {
        let group_id = match request.known_physical_id() {
            Some(id) => match id.strip_prefix(ID_PREFIX) {
                Some(group_id) => group_id.to_owned(),
                None => {
                    tracing::info!(
                        physical_id = id,
                        "not an id this resource made: nothing to remove"
                    );
                    return Ok(());
                }
            },
            None => match Input::parse(&request.properties) {
                Ok(input) => input.group_id,
                Err(e) => {
                    tracing::info!(error = %e, "the failed Create had invalid properties: it made nothing");
                    return Ok(());
                }
            },
        };
        let owner = Owner::of(request);
        ctx.step(format!("reading the ingress rules of {group_id}"));
        let Some(rules) = self.rules(&group_id).await? else {
            return Ok(()); // the group is gone, and its rules with it
        };
        let ours: Vec<String> = rules
            .iter()
            .filter(|r| is_ours(r, &owner))
            .filter_map(|r| r.security_group_rule_id().map(str::to_owned))
            .collect();
        if !ours.is_empty() {
            ctx.step(format!("revoking this stack's rules {ours:?}"));
            self.revoke(&group_id, &ours).await?;
        }
        Ok(())
    }
}

impl CustomResource for SecurityGroupIngress {
    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        Ok(Progress::Done(self.apply(request, ctx).await?))
    }

    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        Ok(Progress::Done(self.apply(request, ctx).await?))
    }

    async fn delete(&self, request: &Request, ctx: &Context) -> Result<Progress<()>, Failure> {
        Ok(Progress::Done(self.remove(request, ctx).await?))
    }
}

fn missing_group(group_id: &str) -> IngressError {
    IngressError::MissingGroup {
        group_id: group_id.to_owned(),
    }
}

fn code<E, R>(err: &aws_sdk_ec2::error::SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
}

fn aws_error<E, R>(call: &'static str, err: aws_sdk_ec2::error::SdkError<E, R>) -> IngressError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    IngressError::Aws {
        call,
        source: AwsError::new(err),
    }
}
