//! EKS access entries: the mapping through the EKS API, no Kubernetes access needed.
//!
//! `system:masters` cannot be an access-entry group (EKS refuses `system:` groups); cluster-admin
//! rights are the `AmazonEKSClusterAdminPolicy` access policy with cluster scope.
//!
//! What the stack did is written on the entry itself, so that a Delete finds it whatever id it is
//! given: an entry the stack created carries [`OWNER_TAG`] (set in the same call that creates it);
//! an entry that was there before is adopted, and when the stack associates the admin policy with
//! it, it first tags it [`ADMIN_POLICY_TAG`]. Delete removes exactly that: the entry it created,
//! or the policy it associated (and its tag), leaving the adopted entry as it was found.

use crate::cluster::{aws_error, found};
use crate::error::AccessError;
use aws_sdk_eks::types::{AccessEntry, AccessScope, AccessScopeType};
use custom_resource::{Context, OWNER_TAG, Owner, stack_name};

/// On an entry made before the stack, with which the stack associated
/// `AmazonEKSClusterAdminPolicy`: the owner key ([`Owner::key`]). Not [`OWNER_TAG`], which would
/// say the stack owns (and may delete) the entry itself.
pub const ADMIN_POLICY_TAG: &str = "hopsworks.ai/eks-stack-admin-policy";
const ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";
/// How often an entry may turn out to exist (ResourceInUse) yet not be found by a describe.
const CREATE_ATTEMPTS: u32 = 3;

/// What mapping did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The entry was there before this stack: it is left in place on Delete.
    pub adopted: bool,
    pub summary: String,
}

pub struct AccessEntries<'a> {
    pub eks: &'a aws_sdk_eks::Client,
    pub cluster: &'a str,
    pub partition: &'a str,
    /// The stack's `Tags`, put on an entry it creates (with the owner tag).
    pub tags: &'a [(String, String)],
}

/// Who the tags on an entry say did what with it.
struct Marks<'a> {
    created_by: Option<&'a str>,
    associated_by: Option<&'a str>,
}

impl<'a> Marks<'a> {
    fn of(entry: &'a AccessEntry) -> Self {
        let tag = |name: &str| entry.tags().and_then(|t| t.get(name)).map(String::as_str);
        Self {
            created_by: tag(OWNER_TAG),
            associated_by: tag(ADMIN_POLICY_TAG),
        }
    }

    /// Another stack's mark, if any.
    fn other_than(&self, owner: &Owner) -> Option<&'a str> {
        [self.created_by, self.associated_by]
            .into_iter()
            .flatten()
            .find(|v| !owner.matches(v))
    }
}

impl AccessEntries<'_> {
    fn admin_policy_arn(&self) -> String {
        format!(
            "arn:{}:eks::aws:cluster-access-policy/{ADMIN_POLICY}",
            self.partition
        )
    }

    /// Give `principal` cluster-admin rights through an access entry, creating it if needed.
    /// `physical_id` is recorded in `ctx` before the first change.
    #[allow(clippy::too_many_arguments)]
    pub async fn map(
        &self,
        principal: &str,
        username: &str,
        groups: &[String],
        owner: &Owner,
        dry_run: bool,
        ctx: &Context,
        physical_id: &str,
    ) -> Result<Mapped, AccessError> {
        let (system, plain): (Vec<&String>, Vec<&String>) =
            groups.iter().partition(|g| g.starts_with("system:"));
        if !system.is_empty() {
            tracing::info!(
                refused = ?system,
                "access entries refuse system: groups; cluster-admin rights come from {ADMIN_POLICY} instead"
            );
        }
        for attempt in 1..=CREATE_ATTEMPTS {
            if let Some(entry) = self.describe(principal).await? {
                return self
                    .keep(&entry, principal, owner, dry_run, ctx, physical_id)
                    .await;
            }
            let summary =
                format!("create an access entry for {principal} as {username} with {ADMIN_POLICY}");
            if dry_run {
                return Ok(Mapped {
                    adopted: false,
                    summary,
                });
            }
            ctx.record_physical_id(physical_id);
            let request = self
                .eks
                .create_access_entry()
                .cluster_name(self.cluster)
                .principal_arn(principal)
                .username(username)
                .set_kubernetes_groups(Some(plain.iter().map(|g| (*g).clone()).collect()))
                .tags(OWNER_TAG, owner.key());
            let created = self
                .tags
                .iter()
                .fold(request, |r, (k, v)| r.tags(k, v))
                .send()
                .await;
            match created {
                Ok(_) => {
                    self.associate(principal).await?;
                    return Ok(Mapped {
                        adopted: false,
                        summary,
                    });
                }
                // Made meanwhile (by a retry of this request, or by someone else): look again.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    tracing::info!(
                        attempt,
                        "the access entry appeared meanwhile; looking again"
                    );
                }
                Err(e) => return Err(aws_error("eks:CreateAccessEntry", e)),
            }
        }
        Err(AccessError::EntryUnseen {
            cluster: self.cluster.to_owned(),
            role: principal.to_owned(),
            attempts: CREATE_ATTEMPTS,
        })
    }

    /// An entry that exists: ours (a retry), or one made before the stack, adopted. Either way it
    /// gets the admin policy if it lacks it, an adopted one tagged first so Delete takes it back.
    async fn keep(
        &self,
        entry: &AccessEntry,
        principal: &str,
        owner: &Owner,
        dry_run: bool,
        ctx: &Context,
        physical_id: &str,
    ) -> Result<Mapped, AccessError> {
        let marks = Marks::of(entry);
        if let Some(other) = marks.other_than(owner) {
            return Err(AccessError::EntryTaken {
                cluster: self.cluster.to_owned(),
                role: principal.to_owned(),
                owner: stack_name(other).to_owned(),
            });
        }
        let adopted = marks.created_by.is_none();
        let has_admin = self.has_admin_policy(principal).await?;
        let summary = if has_admin {
            format!("access entry for {principal} already has cluster admin")
        } else {
            format!("associate {ADMIN_POLICY} with the existing entry for {principal}")
        };
        if dry_run || has_admin {
            return Ok(Mapped { adopted, summary });
        }
        ctx.record_physical_id(physical_id);
        if adopted && marks.associated_by.is_none() {
            // Before the association: however this invocation ends, Delete knows to take it back.
            let arn = entry.access_entry_arn().unwrap_or_default();
            self.eks
                .tag_resource()
                .resource_arn(arn)
                .tags(ADMIN_POLICY_TAG, owner.key())
                .send()
                .await
                .map_err(|e| aws_error("eks:TagResource", e))?;
        }
        self.associate(principal).await?;
        Ok(Mapped { adopted, summary })
    }

    async fn associate(&self, principal: &str) -> Result<(), AccessError> {
        self.eks
            .associate_access_policy()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .policy_arn(self.admin_policy_arn())
            .access_scope(
                AccessScope::builder()
                    .r#type(AccessScopeType::Cluster)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| aws_error("eks:AssociateAccessPolicy", e))?;
        Ok(())
    }

    /// Take back what `owner` did to the entry for `principal`: delete the entry it created, or
    /// disassociate the admin policy it associated with an adopted one; leave anything else.
    pub async fn unmap(
        &self,
        principal: &str,
        owner: &Owner,
        dry_run: bool,
    ) -> Result<String, AccessError> {
        let Some(entry) = self.describe(principal).await? else {
            return Ok(format!(
                "no access entry for {principal}: nothing to remove"
            ));
        };
        let marks = Marks::of(&entry);
        if marks.created_by.is_some_and(|v| owner.matches(v)) {
            let summary = format!("delete the access entry for {principal}");
            if !dry_run {
                self.delete(principal).await?;
            }
            return Ok(summary);
        }
        if marks.associated_by.is_some_and(|v| owner.matches(v)) {
            let summary = format!(
                "disassociate {ADMIN_POLICY} from the access entry for {principal}, which was \
                 there before the stack and stays"
            );
            if !dry_run {
                self.disassociate(principal).await?;
                // After: if this fails, the next Delete still finds the tag and finishes.
                let arn = entry.access_entry_arn().unwrap_or_default();
                self.eks
                    .untag_resource()
                    .resource_arn(arn)
                    .tag_keys(ADMIN_POLICY_TAG)
                    .send()
                    .await
                    .map_err(|e| aws_error("eks:UntagResource", e))?;
            }
            return Ok(summary);
        }
        Ok(format!(
            "the access entry for {principal} was not created by this stack: left in place"
        ))
    }

    async fn delete(&self, principal: &str) -> Result<(), AccessError> {
        let deleted = self
            .eks
            .delete_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .send()
            .await;
        found("eks:DeleteAccessEntry", deleted).map(drop)
    }

    async fn disassociate(&self, principal: &str) -> Result<(), AccessError> {
        let disassociated = self
            .eks
            .disassociate_access_policy()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .policy_arn(self.admin_policy_arn())
            .send()
            .await;
        found("eks:DisassociateAccessPolicy", disassociated).map(drop)
    }

    async fn describe(&self, principal: &str) -> Result<Option<AccessEntry>, AccessError> {
        let described = self
            .eks
            .describe_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .send()
            .await;
        Ok(found("eks:DescribeAccessEntry", described)?.and_then(|out| out.access_entry))
    }

    async fn has_admin_policy(&self, principal: &str) -> Result<bool, AccessError> {
        let wanted = self.admin_policy_arn();
        let mut pages = self
            .eks
            .list_associated_access_policies()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("eks:ListAssociatedAccessPolicies", e))?;
            let found = page.associated_access_policies().iter().any(|p| {
                p.policy_arn() == Some(wanted.as_str())
                    && p.access_scope().and_then(|s| s.r#type()) == Some(&AccessScopeType::Cluster)
            });
            if found {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
