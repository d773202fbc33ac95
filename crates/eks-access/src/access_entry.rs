//! EKS access entries: the mapping through the EKS API, no Kubernetes access needed.
//!
//! `system:masters` cannot be an access-entry group (EKS refuses `system:` groups); cluster-admin
//! rights are the `AmazonEKSClusterAdminPolicy` access policy with cluster scope. An entry this
//! stack creates carries a tag naming the stack, so Delete removes it; an entry that was there
//! before is adopted as it is and left in place.

use crate::cluster::aws_error;
use crate::error::AccessError;
use aws_sdk_eks::types::{AccessEntry, AccessScope, AccessScopeType};

/// Tag on entries this stack created: `<stack id>#<logical id>`.
pub const OWNER_TAG: &str = "hopsworks.ai/eks-stack";
const ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";

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
}

impl AccessEntries<'_> {
    fn admin_policy_arn(&self) -> String {
        format!(
            "arn:{}:eks::aws:cluster-access-policy/{ADMIN_POLICY}",
            self.partition
        )
    }

    /// Give `principal` cluster-admin rights through an access entry, creating it if needed.
    pub async fn map(
        &self,
        principal: &str,
        username: &str,
        groups: &[String],
        owner_key: &str,
        dry_run: bool,
    ) -> Result<Mapped, AccessError> {
        let (system, plain): (Vec<&String>, Vec<&String>) =
            groups.iter().partition(|g| g.starts_with("system:"));
        if !system.is_empty() {
            tracing::info!(
                refused = ?system,
                "access entries refuse system: groups; cluster-admin rights come from {ADMIN_POLICY} instead"
            );
        }
        let existing = self.describe(principal).await?;
        let adopted = match &existing {
            Some(entry) => match entry.tags().and_then(|t| t.get(OWNER_TAG)) {
                Some(owner) if owner == owner_key => false,
                Some(other) => {
                    return Err(AccessError::EntryTaken {
                        cluster: self.cluster.to_owned(),
                        role: principal.to_owned(),
                        owner: other.split('/').nth(1).unwrap_or(other).to_owned(),
                    });
                }
                None => true,
            },
            None => false,
        };
        let has_admin = match &existing {
            Some(_) => self.has_admin_policy(principal).await?,
            None => false,
        };
        let summary = match (&existing, has_admin) {
            (Some(_), true) => format!("access entry for {principal} already has cluster admin"),
            (Some(_), false) => {
                format!("associate {ADMIN_POLICY} with the existing entry for {principal}")
            }
            (None, _) => {
                format!("create an access entry for {principal} as {username} with {ADMIN_POLICY}")
            }
        };
        if dry_run {
            return Ok(Mapped { adopted, summary });
        }
        if existing.is_none() {
            let created = self
                .eks
                .create_access_entry()
                .cluster_name(self.cluster)
                .principal_arn(principal)
                .username(username)
                .set_kubernetes_groups(Some(plain.into_iter().cloned().collect()))
                .tags(OWNER_TAG, owner_key)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // A retry of this same request may find the entry it made a moment ago.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    return Box::pin(self.map(principal, username, groups, owner_key, dry_run))
                        .await;
                }
                Err(e) => return Err(aws_error("eks:CreateAccessEntry", &e)),
            }
        }
        if !has_admin {
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
                .map_err(|e| aws_error("eks:AssociateAccessPolicy", &e))?;
        }
        Ok(Mapped { adopted, summary })
    }

    /// Delete the entry for `principal` if this stack created it; leave any other.
    pub async fn unmap(
        &self,
        principal: &str,
        owner_key: &str,
        dry_run: bool,
    ) -> Result<String, AccessError> {
        let Some(entry) = self.describe(principal).await? else {
            return Ok(format!(
                "no access entry for {principal}: nothing to remove"
            ));
        };
        if entry
            .tags()
            .and_then(|t| t.get(OWNER_TAG))
            .map(String::as_str)
            != Some(owner_key)
        {
            return Ok(format!(
                "the access entry for {principal} was not created by this stack: left in place"
            ));
        }
        let summary = format!("delete the access entry for {principal}");
        if dry_run {
            return Ok(summary);
        }
        match self
            .eks
            .delete_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .send()
            .await
        {
            Ok(_) => Ok(summary),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(summary)
            }
            Err(e) => Err(aws_error("eks:DeleteAccessEntry", &e)),
        }
    }

    async fn describe(&self, principal: &str) -> Result<Option<AccessEntry>, AccessError> {
        match self
            .eks
            .describe_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .send()
            .await
        {
            Ok(out) => Ok(out.access_entry),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws_error("eks:DescribeAccessEntry", &e)),
        }
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
            let page = page.map_err(|e| aws_error("eks:ListAssociatedAccessPolicies", &e))?;
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
