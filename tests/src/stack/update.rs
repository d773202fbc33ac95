//! Update, as CloudFormation does it: each resource compared with what it was made with, changed
//! or replaced, then the cleanup; a failure rolls every change back (UPDATE_ROLLBACK).

use super::{Deployed, STACK_NAME, Stack, elapsed, event};
use serde_json::{Map, Value};
use std::time::Instant;

/// A resource as it was before an update changed it.
#[derive(Debug, Clone)]
struct Before {
    name: String,
    deployed: Deployed,
}

/// What an update did, to roll it back or finish it in the cleanup.
#[derive(Debug)]
enum Change {
    Created(String),
    /// `attempted`: the properties it was sent (applied, or half-applied by a failed update).
    Updated {
        before: Before,
        attempted: Value,
    },
}

impl Stack<'_> {
    /// Update the stack to `changes` (parameters not named keep their values, as `sam deploy`
    /// does), as CloudFormation does: resources in dependency order, each compared with what it
    /// was created with; new ones created, changed ones updated (a custom resource gets an Update
    /// with its old properties; a new physical id means it was replaced), then the cleanup deletes
    /// what was replaced or left the template. A failure rolls every change back: changed resources
    /// get an Update back to their old properties (custom resources with old and new swapped, the
    /// one that failed included), new ones are deleted.
    pub async fn update(&mut self, changes: Map<String, Value>) -> Result<(), String> {
        let before = (
            self.parameters.clone(),
            self.conditions.clone(),
            self.order.clone(),
        );
        for (name, value) in changes {
            if !self.parameters.contains_key(&name) {
                return Err(format!("the template has no parameter {name}"));
            }
            self.parameters.insert(name, value);
        }
        // A refused value or rule fails the update before anything changes.
        let declared = self.template["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Err(refused) =
            crate::parameters::check(&declared, &self.parameters).and_then(|()| self.check_rules())
        {
            self.parameters = before.0;
            return Err(refused);
        }
        self.evaluate_conditions()?;
        let order = self.creation_order()?;
        let mut changed = Vec::new();
        for name in &order {
            if let Err(reason) = self.update_one(name, &mut changed).await {
                println!("\nRolling back the update of stack {STACK_NAME}\n");
                (self.parameters, self.conditions, self.order) = before;
                self.roll_back(changed).await?;
                return Err(reason);
            }
        }
        println!("\nUPDATE_COMPLETE_CLEANUP_IN_PROGRESS stack {STACK_NAME}\n");
        let mut gone = Vec::new();
        for change in changed.iter().rev() {
            if let Change::Updated { before, .. } = change
                && self.physical_id(&before.name) != Some(before.deployed.physical_id.as_str())
            {
                gone.push((before.name.clone(), before.deployed.clone()));
            }
        }
        for name in before.2.iter().rev().filter(|n| !order.contains(n)) {
            if let Some(d) = self.deployed.remove(name) {
                gone.push((name.clone(), d));
            }
        }
        // A failed cleanup Delete leaves the update complete and the resource behind.
        for (name, d) in gone {
            if let Err(reason) = self.delete_resource(&name, &d).await {
                self.leaked.push((name, d.physical_id, reason));
            }
        }
        self.order = order
            .into_iter()
            .filter(|n| self.deployed.contains_key(n))
            .collect();
        Ok(())
    }

    /// Bring one resource to the template's current properties; record what was done in `changed`
    /// before doing it, so that a failure midway is rolled back too.
    async fn update_one(&mut self, name: &str, changed: &mut Vec<Change>) -> Result<(), String> {
        let resource = self.template["Resources"][name].clone();
        let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
        let properties = self.resolve(&resource["Properties"])?;
        let Some(deployed) = self.deployed.get(name).cloned() else {
            event("CREATE_IN_PROGRESS", name, &kind, "");
            let started = Instant::now();
            let created = self.create_one(name, &resource).await;
            if self.deployed.contains_key(name) {
                changed.push(Change::Created(name.to_owned()));
            }
            return match created {
                Ok(()) => {
                    event("CREATE_COMPLETE", name, &kind, &elapsed(started));
                    Ok(())
                }
                Err(reason) => {
                    event("CREATE_FAILED", name, &kind, &reason);
                    Err(reason)
                }
            };
        };
        if deployed.properties == properties {
            return Ok(());
        }
        event("UPDATE_IN_PROGRESS", name, &kind, "");
        let started = Instant::now();
        changed.push(Change::Updated {
            before: Before {
                name: name.to_owned(),
                deployed: deployed.clone(),
            },
            attempted: properties.clone(),
        });
        match self
            .update_resource(name, &resource, &deployed, &properties)
            .await
        {
            Ok(after) => {
                let detail = if after.physical_id == deployed.physical_id {
                    elapsed(started)
                } else {
                    format!("{} (replaced {})", elapsed(started), deployed.physical_id)
                };
                self.deployed.insert(name.to_owned(), after);
                event("UPDATE_COMPLETE", name, &kind, &detail);
                Ok(())
            }
            Err(reason) => {
                event("UPDATE_FAILED", name, &kind, &reason);
                Err(reason)
            }
        }
    }

    /// Apply `new` properties to a resource that has `current`'s; what it is afterwards.
    async fn update_resource(
        &mut self,
        name: &str,
        resource: &Value,
        current: &Deployed,
        new: &Value,
    ) -> Result<Deployed, String> {
        let old = &current.properties;
        let kept = |attrs: Map<String, Value>| Deployed {
            kind: current.kind.clone(),
            physical_id: current.physical_id.clone(),
            attrs,
            properties: new.clone(),
        };
        match current.kind.as_str() {
            "AWS::IAM::Role" => {
                self.update_role(name, current, new).await?;
                Ok(kept(current.attrs.clone()))
            }
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => {
                let deployed = self.update_policy(old, new).await?;
                Ok(Deployed {
                    kind: current.kind.clone(),
                    properties: new.clone(),
                    ..deployed
                })
            }
            "AWS::Logs::LogGroup" => {
                self.update_log_group(name, current, new).await?;
                Ok(kept(current.attrs.clone()))
            }
            "AWS::Lambda::Function" => {
                self.check_vpc_config(name, new).await?;
                let deployed =
                    self.create_function(name, resource, new, Some(&current.physical_id))?;
                Ok(Deployed {
                    kind: current.kind.clone(),
                    properties: new.clone(),
                    ..deployed
                })
            }
            k if k.starts_with("Custom::") => {
                let answer = self
                    .custom(name, "Update", new, Some(&current.physical_id), Some(old))
                    .await?;
                if !answer.is_success() {
                    return Err(answer.reason);
                }
                Ok(Deployed {
                    kind: current.kind.clone(),
                    physical_id: answer.physical_id,
                    attrs: answer.data,
                    properties: new.clone(),
                })
            }
            other => Err(format!("the bench cannot update resources of type {other}")),
        }
    }

    /// UPDATE_ROLLBACK: every changed resource back to what it was, in dependency order (a
    /// replaced one by deleting its replacement), then the resources the update created deleted.
    async fn roll_back(&mut self, changed: Vec<Change>) -> Result<(), String> {
        let rollback_failed = |reason: String| format!("UPDATE_ROLLBACK_FAILED: {reason}");
        for change in &changed {
            let Change::Updated { before, attempted } = change else {
                continue;
            };
            let name = before.name.as_str();
            let Some(now) = self.deployed.get(name).cloned() else {
                continue;
            };
            let kind = now.kind.clone();
            if now.physical_id != before.deployed.physical_id {
                // The replacement goes; the original was never touched.
                self.delete_resource(name, &now)
                    .await
                    .map_err(rollback_failed)?;
                self.deployed
                    .insert(name.to_owned(), before.deployed.clone());
                continue;
            }
            event("UPDATE_IN_PROGRESS", name, &kind, "rollback");
            let started = Instant::now();
            let resource = self.template["Resources"][name].clone();
            // What the resource was last sent: the failed one may have half-applied it.
            let current = Deployed {
                properties: attempted.clone(),
                ..now
            };
            match self
                .update_resource(name, &resource, &current, &before.deployed.properties)
                .await
            {
                Ok(restored) => {
                    event("UPDATE_COMPLETE", name, &kind, &elapsed(started));
                    self.deployed.insert(name.to_owned(), restored);
                }
                Err(reason) => {
                    event("UPDATE_FAILED", name, &kind, &reason);
                    return Err(rollback_failed(reason));
                }
            }
        }
        for change in changed.iter().rev() {
            if let Change::Created(name) = change
                && let Some(d) = self.deployed.remove(name)
            {
                self.delete_resource(name, &d)
                    .await
                    .map_err(rollback_failed)?;
            }
        }
        println!("\nUPDATE_ROLLBACK_COMPLETE stack {STACK_NAME}\n");
        Ok(())
    }
}
