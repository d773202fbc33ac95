//! A small CloudFormation engine for the local bench: it deploys the real template, expanded by
//! the real SAM translator, against moto and the bench's Lambda Runtime API.
//!
//! It resolves the intrinsic functions the template uses (Ref, GetAtt, Sub, Join, Select, Split,
//! If, Equals, Not, And, Or, FindInMap, Condition, GetAZs, Cidr) and fails loudly on any other; evaluates
//! Conditions; creates resources in dependency order; runs each custom resource as its compiled
//! function answering over the ResponseURL; applies IAM, Logs, EC2 and EKS resources to moto
//! (EC2 and EKS through tests/bench/cfn_native.py); rolls a failed
//! Create back; updates to changed parameters (Update requests with the old properties,
//! replacement, cleanup, and the update rollback with old and new swapped); deletes in reverse
//! order. Parameter values are checked against their constraints ([`crate::parameters`]) and the
//! template's `Rules` are evaluated before anything is made or changed, as CloudFormation does.
//!
//! IAM is enforced as AWS enforces it, which moto does not: each function runs with credentials
//! of its own, and every AWS call it makes is checked against its role's policies as the stack
//! holds them when the function runs ([`crate::iam`]); [`Stack::denied`] lists what was denied.
//! As in CloudFormation, a Delete that fails in an update's cleanup does not fail the update: the
//! resource is left behind ([`Stack::leaked`]).

use crate::aws::AwsBench;
use crate::cloudformation::{Answer, Player, STACK_ID};
use crate::faults::FaultProxy;
use crate::iam::{Denial, Iam};
use crate::lambda::{FunctionConfig, LambdaFunction};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STACK_NAME: &str = "hopsworks-eks";
const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// What a resource became.
#[derive(Debug, Clone)]
struct Deployed {
    kind: String,
    physical_id: String,
    attrs: Map<String, Value>,
    /// The resolved properties it was created with (a custom resource's Delete sends them).
    properties: Value,
}

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

/// `Fn::Cidr [block, count, bits]`: `count` consecutive subnets of `bits` host bits each, from
/// the start of the IPv4 `block`.
fn cidr(block: &str, count: &str, bits: &str) -> Result<Vec<String>, String> {
    let bad =
        || format!("Fn::Cidr [{block}, {count}, {bits}]: not an IPv4 block, a count and bits");
    let (address, prefix) = block.split_once('/').ok_or_else(bad)?;
    let address: std::net::Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let count: u32 = count.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    if prefix > 32
        || bits > 32 - prefix
        || count == 0
        || u64::from(count) << bits > 1u64 << (32 - prefix)
    {
        return Err(format!(
            "Fn::Cidr: {count} subnets of {bits} bits do not fit in {block}"
        ));
    }
    let base = u32::from(address) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Ok((0..count)
        .map(|i| {
            format!(
                "{}/{}",
                std::net::Ipv4Addr::from(base + (i << bits)),
                32 - bits
            )
        })
        .collect())
}

/// A whole-number property: a JSON number, or a string of one (what a parameter gives, as
/// CloudFormation passes parameters as strings); absent is None, anything else an error.
fn number(resource: &str, properties: &Value, key: &str) -> Result<Option<u64>, String> {
    let value = &properties[key];
    let parsed = match value {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| format!("{resource}: {key} is not a whole number: {value}"))
}

fn elapsed(started: Instant) -> String {
    format!("{:.2} s", started.elapsed().as_secs_f64())
}

/// One event line, as `sam deploy` prints them.
pub fn event(status: &str, logical_id: &str, kind: &str, detail: &str) {
    println!("{status:<22} {logical_id:<34} {kind:<28} {detail}");
}

pub struct Stack<'a> {
    aws: &'a AwsBench,
    proxy: &'a FaultProxy,
    template: Value,
    parameters: Map<String, Value>,
    conditions: BTreeMap<String, bool>,
    deployed: BTreeMap<String, Deployed>,
    /// Creation order, for deleting in reverse.
    order: Vec<String>,
    functions: BTreeMap<String, Arc<LambdaFunction>>,
    /// Environment every function gets on top of the template's (the bench's endpoints).
    pub function_env: Vec<(String, String)>,
    /// IAM for the functions' calls through `proxy`.
    iam: Arc<Iam>,
    /// Resources an update's cleanup failed to delete: `(logical id, physical id, reason)`.
    leaked: Vec<(String, String, String)>,
}

impl<'a> Stack<'a> {
    /// Expand `template` (a SAM template file) with the real translator.
    pub async fn expand(template: &std::path::Path) -> Result<Value, String> {
        let python = crate::workspace().join(".venv/lint/bin/python");
        let output = tokio::process::Command::new(&python)
            .arg(crate::workspace().join("tests/bench/expand_template.py"))
            .arg(template)
            .output()
            .await
            .map_err(|e| format!("{}: {e} (run `make lint-venv`)", python.display()))?;
        if !output.status.success() {
            return Err(format!(
                "the SAM translator refused the template: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
    }

    pub fn new(
        aws: &'a AwsBench,
        proxy: &'a FaultProxy,
        template: Value,
        given: Map<String, Value>,
    ) -> Result<Self, String> {
        let mut parameters = Map::new();
        for (name, spec) in template["Parameters"].as_object().into_iter().flatten() {
            let value = given
                .get(name)
                .or_else(|| spec.get("Default"))
                .cloned()
                .ok_or_else(|| format!("parameter {name} has no value and no default"))?;
            parameters.insert(name.clone(), value);
        }
        for name in given.keys() {
            if !parameters.contains_key(name) {
                return Err(format!("the template has no parameter {name}"));
            }
        }
        crate::parameters::check(
            template["Parameters"].as_object().unwrap_or(&Map::new()),
            &parameters,
        )?;
        let iam = Arc::new(Iam::new(
            &aws.seeded.account_id,
            &aws.seeded.region,
            aws.endpoint(),
        ));
        proxy.authorize_with(iam.clone());
        let mut stack = Self {
            aws,
            proxy,
            template,
            parameters,
            conditions: BTreeMap::new(),
            deployed: BTreeMap::new(),
            order: Vec::new(),
            functions: BTreeMap::new(),
            function_env: Vec::new(),
            iam,
            leaked: Vec::new(),
        };
        let conditions = stack.template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, _) in &conditions {
            let value = stack.condition(name, &conditions)?;
            stack.conditions.insert(name.clone(), value);
        }
        stack.check_rules()?;
        Ok(stack)
    }

    /// The template's `Rules`: each rule whose `RuleCondition` holds must have every assertion
    /// true, or the operation fails with the assertion's description before anything changes.
    fn check_rules(&self) -> Result<(), String> {
        for (name, rule) in self.template["Rules"].as_object().into_iter().flatten() {
            let applies = match rule.get("RuleCondition") {
                Some(condition) => self.resolve(condition)?.as_bool().unwrap_or(false),
                None => true,
            };
            if !applies {
                continue;
            }
            for assertion in rule["Assertions"].as_array().into_iter().flatten() {
                if self.resolve(&assertion["Assert"])?.as_bool() != Some(true) {
                    return Err(format!(
                        "rule {name}: {}",
                        assertion["AssertDescription"]
                            .as_str()
                            .unwrap_or("an assertion failed")
                    ));
                }
            }
        }
        Ok(())
    }

    fn condition(&self, name: &str, all: &Map<String, Value>) -> Result<bool, String> {
        if let Some(v) = self.conditions.get(name) {
            return Ok(*v);
        }
        let expr = all
            .get(name)
            .ok_or_else(|| format!("no condition {name}"))?;
        // Conditions may refer to each other: resolve with a view that evaluates on demand.
        let value = self.resolve_with(expr, Some(all))?;
        value
            .as_bool()
            .ok_or_else(|| format!("condition {name} is not a boolean: {value}"))
    }

    fn active(&self, resource: &Value) -> bool {
        resource["Condition"]
            .as_str()
            .is_none_or(|c| self.conditions.get(c).copied().unwrap_or(false))
    }

    /// Resources in creation order: every resource after what it refers to.
    fn creation_order(&self) -> Result<Vec<String>, String> {
        let resources = self.template["Resources"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let active: BTreeSet<String> = resources
            .iter()
            .filter(|(_, r)| self.active(r))
            .map(|(k, _)| k.clone())
            .collect();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for name in &active {
            let r = &resources[name];
            let mut found = BTreeSet::new();
            references(&r["Properties"], &mut found);
            // As in CloudFormation, a reference in Metadata orders resources too.
            references(&r["Metadata"], &mut found);
            match &r["DependsOn"] {
                Value::String(d) => {
                    found.insert(d.clone());
                }
                Value::Array(list) => {
                    found.extend(list.iter().filter_map(|d| d.as_str().map(str::to_owned)))
                }
                _ => {}
            }
            found.retain(|d| active.contains(d));
            deps.insert(name.clone(), found);
        }
        let mut order = Vec::new();
        let mut done = BTreeSet::new();
        while order.len() < active.len() {
            let ready: Vec<String> = deps
                .iter()
                .filter(|(n, d)| !done.contains(*n) && d.iter().all(|x| done.contains(x)))
                .map(|(n, _)| n.clone())
                .collect();
            if ready.is_empty() {
                return Err("the template's resources depend on each other in a circle".to_owned());
            }
            for n in ready {
                done.insert(n.clone());
                order.push(n);
            }
        }
        Ok(order)
    }

    /// Create every resource; on a failure, roll back what was made and return the failure.
    pub async fn create(&mut self) -> Result<(), String> {
        let order = self.creation_order()?;
        for name in order {
            let resource = self.template["Resources"][&name].clone();
            let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
            event("CREATE_IN_PROGRESS", &name, &kind, "");
            let started = Instant::now();
            match self.create_one(&name, &resource).await {
                Ok(()) => event(
                    "CREATE_COMPLETE",
                    &name,
                    &kind,
                    &format!("{:.2} s", started.elapsed().as_secs_f64()),
                ),
                Err(reason) => {
                    event("CREATE_FAILED", &name, &kind, &reason);
                    println!("\nRolling back stack {STACK_NAME}\n");
                    self.delete().await?;
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    async fn create_one(&mut self, name: &str, resource: &Value) -> Result<(), String> {
        let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
        let properties = self.resolve(&resource["Properties"])?;
        let deployed = match kind.as_str() {
            "AWS::IAM::Role" => self.create_role(name, &properties).await?,
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => self.put_policy(&properties).await?,
            "AWS::Logs::LogGroup" => self.create_log_group(name, &properties).await?,
            "AWS::Lambda::Function" => self.create_function(name, resource, &properties, None)?,
            // Signals are not played: the handle only orders resources (through its Metadata).
            "AWS::CloudFormation::WaitConditionHandle" => Deployed {
                kind: String::new(),
                physical_id: format!(
                    "https://cloudformation-waitcondition-{}.s3.amazonaws.com/{STACK_NAME}/{name}",
                    self.aws.seeded.region
                ),
                attrs: Map::new(),
                properties: Value::Null,
            },
            k if k.starts_with("AWS::EC2::") || k.starts_with("AWS::EKS::") => {
                self.native_create(name, k, &properties).await?
            }
            k if k.starts_with("Custom::") => {
                let answer = self.custom(name, "Create", &properties, None, None).await?;
                let deployed = Deployed {
                    kind: kind.clone(),
                    physical_id: answer.physical_id.clone(),
                    attrs: answer.data.clone(),
                    properties: properties.clone(),
                };
                if !answer.is_success() {
                    // As CloudFormation does, the rollback sends this resource a Delete too,
                    // with the id its FAILED answer gave.
                    self.deployed.insert(name.to_owned(), deployed);
                    self.order.push(name.to_owned());
                    return Err(answer.reason);
                }
                deployed
            }
            other => return Err(format!("the bench cannot create resources of type {other}")),
        };
        self.deployed.insert(
            name.to_owned(),
            Deployed {
                kind,
                properties,
                ..deployed
            },
        );
        self.order.push(name.to_owned());
        Ok(())
    }

    /// Delete in reverse creation order.
    pub async fn delete(&mut self) -> Result<(), String> {
        while let Some(name) = self.order.pop() {
            let Some(d) = self.deployed.remove(&name) else {
                continue;
            };
            self.delete_resource(&name, &d).await?;
        }
        Ok(())
    }

    async fn delete_resource(&mut self, name: &str, d: &Deployed) -> Result<(), String> {
        event("DELETE_IN_PROGRESS", name, &d.kind, "");
        let started = Instant::now();
        let result = match d.kind.as_str() {
            "AWS::IAM::Role" => self.py(&format!("iam = client('iam')\nfor p in iam.list_role_policies(RoleName={id:?})['PolicyNames']:\n    iam.delete_role_policy(RoleName={id:?}, PolicyName=p)\nfor p in iam.list_attached_role_policies(RoleName={id:?})['AttachedPolicies']:\n    iam.detach_role_policy(RoleName={id:?}, PolicyArn=p['PolicyArn'])\niam.delete_role(RoleName={id:?})", id = d.physical_id)).await,
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => self.delete_policy(&d.properties).await,
            "AWS::Logs::LogGroup" => self.py(&format!("client('logs').delete_log_group(logGroupName={:?})", d.physical_id)).await,
            "AWS::Lambda::Function" => {
                self.functions.remove(name);
                Ok(())
            }
            "AWS::CloudFormation::WaitConditionHandle" => Ok(()),
            k if k.starts_with("AWS::EC2::") || k.starts_with("AWS::EKS::") => {
                self.native_delete(k, d).await
            }
            _ => match self
                .custom(name, "Delete", &d.properties, Some(&d.physical_id), None)
                .await
            {
                Ok(answer) if answer.is_success() => Ok(()),
                Ok(answer) => Err(answer.reason),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                event(
                    "DELETE_COMPLETE",
                    name,
                    &d.kind,
                    &format!("{:.2} s", started.elapsed().as_secs_f64()),
                );
                Ok(())
            }
            Err(reason) => {
                event("DELETE_FAILED", name, &d.kind, &reason);
                Err(reason)
            }
        }
    }

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
        self.conditions.clear();
        let conditions = self.template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for name in conditions.keys() {
            let value = self.condition(name, &conditions)?;
            self.conditions.insert(name.clone(), value);
        }
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
                if old["RoleName"] != new["RoleName"] || old["Path"] != new["Path"] {
                    return Err(format!("{name}: the bench cannot replace a role"));
                }
                let role = &current.physical_id;
                let mut script = format!(
                    "iam = client('iam')\niam.update_assume_role_policy(RoleName={role:?}, PolicyDocument={:?})\n",
                    new["AssumeRolePolicyDocument"].to_string()
                );
                let names = |p: &Value| -> BTreeSet<String> {
                    p["Policies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["PolicyName"].as_str().map(str::to_owned))
                        .collect()
                };
                for policy in new["Policies"].as_array().into_iter().flatten() {
                    script.push_str(&format!(
                        "iam.put_role_policy(RoleName={role:?}, PolicyName={:?}, PolicyDocument={:?})\n",
                        policy["PolicyName"].as_str().unwrap_or_default(),
                        policy["PolicyDocument"].to_string()
                    ));
                }
                for gone in names(old).difference(&names(new)) {
                    script.push_str(&format!(
                        "iam.delete_role_policy(RoleName={role:?}, PolicyName={gone:?})\n"
                    ));
                }
                self.py(&script).await?;
                Ok(kept(current.attrs.clone()))
            }
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => {
                let deployed = self.put_policy(new).await?;
                let kept_pairs = policy_targets(new);
                let stale: Vec<_> = policy_targets(old)
                    .into_iter()
                    .filter(|t| !kept_pairs.contains(t))
                    .collect();
                self.delete_policy_targets(&stale).await?;
                Ok(Deployed {
                    kind: current.kind.clone(),
                    properties: new.clone(),
                    ..deployed
                })
            }
            "AWS::Logs::LogGroup" => {
                if old["LogGroupName"] != new["LogGroupName"] {
                    return Err(format!("{name}: the bench cannot replace a log group"));
                }
                self.py(&format!(
                    "client('logs').put_retention_policy(logGroupName={:?}, retentionInDays={})",
                    current.physical_id,
                    number(name, new, "RetentionInDays")?.unwrap_or(30)
                ))
                .await?;
                Ok(kept(current.attrs.clone()))
            }
            "AWS::Lambda::Function" => {
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

    /// The template's Outputs that apply, resolved.
    pub fn outputs(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for (name, spec) in self.template["Outputs"].as_object().into_iter().flatten() {
            if !self.active(spec) {
                continue;
            }
            let value = self.resolve(&spec["Value"])?;
            out.push((
                name.clone(),
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned),
            ));
        }
        Ok(out)
    }

    pub fn physical_id(&self, name: &str) -> Option<&str> {
        self.deployed.get(name).map(|d| d.physical_id.as_str())
    }

    /// Every AWS call of the stack's functions that their role's policies denied.
    pub fn denied(&self) -> Vec<Denial> {
        self.iam.denied()
    }

    /// What updates' cleanups failed to delete: `(logical id, physical id, reason)`.
    pub fn leaked(&self) -> &[(String, String, String)] {
        &self.leaked
    }

    /// The policy documents of each of the stack's roles (by ARN) as the stack holds them now:
    /// the role's own `Policies` and the `AWS::IAM::RolePolicy`/`Policy` resources naming it.
    fn role_policies(&self) -> BTreeMap<String, Vec<Value>> {
        let mut by_name: BTreeMap<&str, (&str, Vec<Value>)> = BTreeMap::new();
        for d in self
            .deployed
            .values()
            .filter(|d| d.kind == "AWS::IAM::Role")
        {
            let documents = d.properties["Policies"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p["PolicyDocument"].clone())
                .collect();
            let arn = d
                .attrs
                .get("Arn")
                .and_then(Value::as_str)
                .unwrap_or_default();
            by_name.insert(d.physical_id.as_str(), (arn, documents));
        }
        for d in self.deployed.values() {
            if !matches!(d.kind.as_str(), "AWS::IAM::RolePolicy" | "AWS::IAM::Policy") {
                continue;
            }
            for target in policy_targets(&d.properties) {
                if let Some((_, documents)) = by_name.get_mut(target.principal.as_str())
                    && target.kind == "role"
                {
                    documents.push(d.properties["PolicyDocument"].clone());
                }
            }
        }
        by_name
            .into_values()
            .map(|(arn, documents)| (arn.to_owned(), documents))
            .collect()
    }

    async fn custom(
        &self,
        name: &str,
        action: &str,
        properties: &Value,
        id: Option<&str>,
        old_properties: Option<&Value>,
    ) -> Result<Answer, String> {
        let token = properties["ServiceToken"].as_str().unwrap_or_default();
        let function = self
            .functions
            .values()
            .find(|f| f.config().arn() == token)
            .ok_or_else(|| format!("{name}: no function for ServiceToken {token}"))?;
        let kind = self.template["Resources"][name]["Type"]
            .as_str()
            .unwrap_or_default();
        // The function's calls are checked against its role as it is now.
        self.iam.set_policies(self.role_policies());
        let mut cfn = Player::new(function, kind).await;
        cfn.answer_timeout = Duration::from_secs(900);
        // CloudFormation sends every scalar property as a string.
        let sent = stringify(properties);
        match (action, id, old_properties) {
            ("Create", _, _) => Ok(cfn.create(name, sent).await),
            ("Update", Some(id), Some(old)) => Ok(cfn.update(name, id, sent, stringify(old)).await),
            ("Delete", Some(id), _) => Ok(cfn.delete(name, id, sent).await),
            _ => Err(format!(
                "internal: {action} without an id or old properties"
            )),
        }
    }

    /// Create the function, or (given the name it has) configure it anew, as UpdateFunctionConfiguration.
    fn create_function(
        &mut self,
        name: &str,
        resource: &Value,
        p: &Value,
        existing: Option<&str>,
    ) -> Result<Deployed, String> {
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .ok_or_else(|| format!("{name}: Metadata.BuildProperties.Binary names no binary"))?;
        let function_name = existing.or(p["FunctionName"].as_str()).map_or_else(
            || format!("{STACK_NAME}-{name}-{}", crate::random_hex(8)),
            str::to_owned,
        );
        let mut config = FunctionConfig::new(&function_name, crate::function_binary(binary));
        config.timeout = Duration::from_secs(number(name, p, "Timeout")?.unwrap_or(3));
        config.memory_mb = u32::try_from(number(name, p, "MemorySize")?.unwrap_or(128))
            .map_err(|_| format!("{name}: MemorySize out of range"))?;
        config.region = self.aws.seeded.region.clone();
        config.account_id = self.aws.seeded.account_id.clone();
        for (k, v) in p["Environment"]["Variables"]
            .as_object()
            .into_iter()
            .flatten()
        {
            config
                .env
                .push((k.clone(), v.as_str().unwrap_or_default().to_owned()));
        }
        // Credentials of its own, so that IAM knows its calls as its role's.
        let role = p["Role"].as_str().unwrap_or_default();
        let (key, secret) = self.iam.credentials(&function_name, role);
        config.env.extend([
            ("AWS_ACCESS_KEY_ID".to_owned(), key),
            ("AWS_SECRET_ACCESS_KEY".to_owned(), secret),
            ("AWS_SESSION_TOKEN".to_owned(), crate::random_hex(64)),
        ]);
        config.env.extend(self.function_env.iter().cloned());
        let arn = config.arn();
        let function = Arc::new(LambdaFunction::new(config));
        self.proxy.register_function(function.clone());
        self.functions.insert(name.to_owned(), function);
        Ok(Deployed {
            kind: String::new(),
            physical_id: function_name,
            attrs: Map::from_iter([("Arn".to_owned(), json!(arn))]),
            properties: Value::Null,
        })
    }

    async fn create_role(&self, name: &str, p: &Value) -> Result<Deployed, String> {
        let role = p["RoleName"].as_str().map_or_else(
            || format!("{STACK_NAME}-{name}-{}", crate::random_hex(8)),
            str::to_owned,
        );
        let mut script = format!(
            "iam = client('iam')\nr = iam.create_role(RoleName={role:?}, Path={path:?}, AssumeRolePolicyDocument={doc:?})['Role']\n",
            path = p["Path"].as_str().unwrap_or("/"),
            doc = p["AssumeRolePolicyDocument"].to_string()
        );
        for policy in p["Policies"].as_array().into_iter().flatten() {
            script.push_str(&format!(
                "iam.put_role_policy(RoleName={role:?}, PolicyName={:?}, PolicyDocument={:?})\n",
                policy["PolicyName"].as_str().unwrap_or_default(),
                policy["PolicyDocument"].to_string()
            ));
        }
        for arn in p["ManagedPolicyArns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            script.push_str(&format!(
                "iam.attach_role_policy(RoleName={role:?}, PolicyArn={arn:?})\n"
            ));
        }
        script.push_str("print(json.dumps({'Arn': r['Arn'], 'RoleId': r['RoleId']}))");
        let attrs = self.aws.query(&with_client(&script)).await;
        Ok(Deployed {
            kind: String::new(),
            physical_id: role,
            attrs: attrs.as_object().cloned().unwrap_or_default(),
            properties: Value::Null,
        })
    }

    async fn put_policy(&self, p: &Value) -> Result<Deployed, String> {
        let document = p["PolicyDocument"].to_string();
        let mut script = "iam = client('iam')\n".to_owned();
        for t in policy_targets(p) {
            script.push_str(&t.call("put", &format!(", PolicyDocument={document:?}")));
        }
        self.py(&script).await?;
        Ok(Deployed {
            kind: String::new(),
            physical_id: p["PolicyName"].as_str().unwrap_or_default().to_owned(),
            attrs: Map::new(),
            properties: Value::Null,
        })
    }

    async fn delete_policy(&self, p: &Value) -> Result<(), String> {
        self.delete_policy_targets(&policy_targets(p)).await
    }

    async fn delete_policy_targets(&self, targets: &[PolicyTarget]) -> Result<(), String> {
        let mut script = "iam = client('iam')\n".to_owned();
        for t in targets {
            script.push_str(&t.call("delete", ""));
        }
        self.py(&script).await
    }

    async fn create_log_group(&self, name: &str, p: &Value) -> Result<Deployed, String> {
        let group = p["LogGroupName"].as_str().map_or_else(
            || format!("{STACK_NAME}-{name}-{}", crate::random_hex(8)),
            str::to_owned,
        );
        let retention = number(name, p, "RetentionInDays")?.unwrap_or(30);
        self.py(&format!(
            "logs = client('logs')\nlogs.create_log_group(logGroupName={group:?})\nlogs.put_retention_policy(logGroupName={group:?}, retentionInDays={retention})"
        ))
        .await?;
        let arn = format!(
            "arn:aws:logs:{}:{}:log-group:{group}:*",
            self.aws.seeded.region, self.aws.seeded.account_id
        );
        Ok(Deployed {
            kind: String::new(),
            physical_id: group,
            attrs: Map::from_iter([("Arn".to_owned(), json!(arn))]),
            properties: Value::Null,
        })
    }

    /// An EC2 or EKS resource, made by tests/bench/cfn_native.py as CloudFormation's handlers
    /// would make it.
    async fn native_create(&self, name: &str, kind: &str, p: &Value) -> Result<Deployed, String> {
        let made = self
            .native(&format!(
                "cfn_native.create({kind:?}, {name:?}, json.loads({:?}))",
                p.to_string()
            ))
            .await?;
        Ok(Deployed {
            kind: String::new(),
            physical_id: made["id"].as_str().unwrap_or_default().to_owned(),
            attrs: made["attrs"].as_object().cloned().unwrap_or_default(),
            properties: Value::Null,
        })
    }

    async fn native_delete(&self, kind: &str, d: &Deployed) -> Result<(), String> {
        self.native(&format!(
            "cfn_native.delete({kind:?}, {:?}, json.loads({:?}), json.loads({:?}))",
            d.physical_id,
            d.properties.to_string(),
            Value::Object(d.attrs.clone()).to_string()
        ))
        .await
        .map(|_| ())
    }

    /// Run a cfn_native call; an AWS error (or an unknown type) becomes the resource's failure.
    async fn native(&self, call: &str) -> Result<Value, String> {
        let bench = crate::workspace().join("tests/bench");
        let script = with_client(&format!(
            "import sys\nsys.path.insert(0, {bench:?})\nimport cfn_native\ntry:\n    result = {call}\nexcept Exception as e:\n    result = {{'error': f'{{type(e).__name__}}: {{e}}'}}\nprint(json.dumps(result))"
        ));
        let result = self.aws.query(&script).await;
        match result["error"].as_str() {
            Some(error) => Err(error.to_owned()),
            None => Ok(result),
        }
    }

    async fn py(&self, script: &str) -> Result<(), String> {
        let script = format!("{}\nprint('true')", with_client(script));
        self.aws.query(&script).await;
        Ok(())
    }

    fn resolve(&self, value: &Value) -> Result<Value, String> {
        self.resolve_with(value, None)
    }

    fn pseudo(&self, name: &str) -> Option<Value> {
        let s = &self.aws.seeded;
        Some(json!(match name {
            "AWS::Region" => s.region.clone(),
            "AWS::AccountId" => s.account_id.clone(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::StackName" => STACK_NAME.to_owned(),
            "AWS::StackId" => STACK_ID.to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::NoValue" => NO_VALUE.to_owned(),
            _ => return None,
        }))
    }

    fn reference(&self, name: &str) -> Result<Value, String> {
        if let Some(v) = self
            .pseudo(name)
            .or_else(|| self.parameters.get(name).cloned())
        {
            return Ok(v);
        }
        self.deployed
            .get(name)
            .map(|d| json!(d.physical_id))
            .ok_or_else(|| format!("Ref {name}: no such parameter or created resource"))
    }

    fn attribute(&self, name: &str, attr: &str) -> Result<Value, String> {
        self.deployed
            .get(name)
            .and_then(|d| d.attrs.get(attr).cloned())
            .ok_or_else(|| format!("Fn::GetAtt {name}.{attr}: no such attribute"))
    }

    fn resolve_with(
        &self,
        value: &Value,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<Value, String> {
        let r = |v: &Value| self.resolve_with(v, conditions);
        let text = |v: &Value| -> Result<String, String> {
            let v = r(v)?;
            v.as_str()
                .map(str::to_owned)
                .or_else(|| (!v.is_object() && !v.is_array()).then(|| v.to_string()))
                .ok_or_else(|| format!("expected a string, got {v}"))
        };
        match value {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(r)
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|v| v != NO_VALUE)
                    .collect(),
            )),
            Value::Object(map) if map.len() == 1 => {
                let Some((key, arg)) = map.iter().next() else {
                    unreachable!("a map of one entry")
                };
                match key.as_str() {
                    "Ref" => self.reference(arg.as_str().unwrap_or_default()),
                    "Fn::GetAtt" => {
                        let (res, attr) = match arg {
                            Value::Array(a) => (text(&a[0])?, text(&a[1])?),
                            Value::String(s) => s
                                .split_once('.')
                                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                                .unwrap_or_default(),
                            _ => return Err(format!("bad Fn::GetAtt {arg}")),
                        };
                        self.attribute(&res, &attr)
                    }
                    "Fn::Sub" => {
                        let (template, vars) = match arg {
                            Value::String(s) => (s.clone(), Map::new()),
                            Value::Array(a) => (
                                text(&a[0])?,
                                a.get(1)
                                    .and_then(Value::as_object)
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                            _ => return Err(format!("bad Fn::Sub {arg}")),
                        };
                        self.substitute(&template, &vars, conditions)
                            .map(Value::String)
                    }
                    "Fn::Join" => {
                        let delimiter = text(&arg[0])?;
                        let items = r(&arg[1])?;
                        let parts: Vec<String> = items
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .collect();
                        Ok(json!(parts.join(&delimiter)))
                    }
                    "Fn::Select" => {
                        let index: usize = text(&arg[0])?
                            .parse()
                            .map_err(|_| format!("bad index in {arg}"))?;
                        let list = r(&arg[1])?;
                        list.get(index)
                            .cloned()
                            .ok_or_else(|| format!("Fn::Select {index} out of {list}"))
                    }
                    "Fn::Split" => {
                        let delimiter = text(&arg[0])?;
                        let source = text(&arg[1])?;
                        Ok(json!(source.split(delimiter.as_str()).collect::<Vec<_>>()))
                    }
                    "Fn::If" => {
                        let name = text(&arg[0])?;
                        let chosen = self.condition_value(&name, conditions)?;
                        r(&arg[if chosen { 1 } else { 2 }])
                    }
                    "Fn::Equals" => Ok(json!(r(&arg[0])? == r(&arg[1])?)),
                    "Fn::Not" => Ok(json!(!r(&arg[0])?.as_bool().unwrap_or(false))),
                    "Fn::And" | "Fn::Or" => {
                        let values: Vec<bool> = arg
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| r(v).map(|b| b.as_bool().unwrap_or(false)))
                            .collect::<Result<_, _>>()?;
                        Ok(json!(if key == "Fn::And" {
                            values.iter().all(|b| *b)
                        } else {
                            values.iter().any(|b| *b)
                        }))
                    }
                    "Condition" => self
                        .condition_value(arg.as_str().unwrap_or_default(), conditions)
                        .map(Value::Bool),
                    "Fn::FindInMap" => {
                        let (m, a, b) = (text(&arg[0])?, text(&arg[1])?, text(&arg[2])?);
                        self.template["Mappings"][&m][&a]
                            .get(&b)
                            .cloned()
                            .ok_or_else(|| format!("Fn::FindInMap {m}.{a}.{b}: not found"))
                    }
                    // The Availability Zones moto serves for the bench's region.
                    "Fn::GetAZs" => Ok(json!(
                        ["a", "b", "c"].map(|z| format!("{}{z}", self.aws.seeded.region))
                    )),
                    "Fn::Cidr" => {
                        let block = text(&arg[0])?;
                        let count = text(&arg[1])?;
                        let bits = text(&arg[2])?;
                        cidr(&block, &count, &bits).map(|list| json!(list))
                    }
                    k if k.starts_with("Fn::") => {
                        Err(format!("the bench's engine does not know {k}"))
                    }
                    _ => self.resolve_map(map, conditions),
                }
            }
            Value::Object(map) => self.resolve_map(map, conditions),
            other => Ok(other.clone()),
        }
    }

    fn resolve_map(
        &self,
        map: &Map<String, Value>,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in map {
            let v = self.resolve_with(v, conditions)?;
            if v != NO_VALUE {
                out.insert(k.clone(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn condition_value(
        &self,
        name: &str,
        all: Option<&Map<String, Value>>,
    ) -> Result<bool, String> {
        match (self.conditions.get(name), all) {
            (Some(v), _) => Ok(*v),
            (None, Some(all)) => self.condition(name, all),
            (None, None) => Err(format!("no condition {name}")),
        }
    }

    fn substitute(
        &self,
        template: &str,
        vars: &Map<String, Value>,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {template}"))?;
            let name = &after[..end];
            let value = if let Some(literal) = name.strip_prefix('!') {
                json!(format!("${{{literal}}}"))
            } else if let Some(v) = vars.get(name) {
                self.resolve_with(v, conditions)?
            } else if let Some((res, attr)) = name.split_once('.') {
                self.attribute(res, attr)?
            } else {
                self.reference(name)?
            };
            out.push_str(
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
                    .as_str(),
            );
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// The bench a stack deploys to: moto (seeded, plus the Hopsworks.ai cross-account role), the
/// fault proxy in front of it that the stack's functions call, and the doubles' control API.
pub struct StackBench {
    pub aws: AwsBench,
    pub proxy: FaultProxy,
    pub control: crate::control::Control,
}

impl StackBench {
    pub async fn start() -> Self {
        let aws = AwsBench::start().await;
        let proxy = FaultProxy::start(aws.endpoint()).await;
        let control = crate::control::Control::new(&aws.seeded.control_endpoint);
        create_cross_account_role(&aws).await;
        Self {
            aws,
            proxy,
            control,
        }
    }

    /// A stack of `template` with `parameters`, its functions calling AWS through the proxy.
    pub fn stack(
        &self,
        template: Value,
        parameters: Map<String, Value>,
    ) -> Result<Stack<'_>, String> {
        let mut stack = Stack::new(&self.aws, &self.proxy, template, parameters)?;
        // The bench's network: AWS is moto behind the proxy, Hopsworks.ai is its double. The
        // template itself has no way to send the API key anywhere but api.hopsworks.ai.
        stack.function_env = vec![
            (
                "AWS_ENDPOINT_URL".to_owned(),
                self.proxy.endpoint().to_owned(),
            ),
            (
                "HOPSWORKS_API_URL".to_owned(),
                self.aws.seeded.hopsworks_ai.api_url.clone(),
            ),
        ];
        Ok(stack)
    }

    /// What the stack may change in the account ([`observable_state`]).
    pub async fn state(&self) -> Value {
        observable_state(&self.aws, &self.control).await
    }
}

/// The parameters `make demo` deploys with: the bench's cluster (CONFIG_MAP: Kubernetes calls as its
/// creator), its instance profile, the Hopsworks.ai double, a 1 s poll.
pub fn demo_parameters(s: &crate::aws::Seeded) -> Map<String, Value> {
    [
        ("EksClusterName", s.cluster.name.as_str()),
        (
            "HopsworksInstanceProfile",
            s.hopsworks.instance_profile_name.as_str(),
        ),
        ("KubernetesRoleArn", s.identities.creator.role_arn.as_str()),
        ("HopsworksPrincipalType", "role"),
        ("HopsworksPrincipal", CROSS_ACCOUNT_ROLE),
        ("CreateHopsworksCluster", "true"),
        (
            "HopsworksApiKeySecretArn",
            s.hopsworks_ai.secret_arn.as_str(),
        ),
        ("HopsworksClusterName", "fs-demo"),
        ("HopsworksBucketName", "hops-demo-bucket"),
        ("HopsworksPollIntervalSeconds", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!(v)))
    .collect()
}

/// The role the buyer connected to Hopsworks.ai (seed step 5 gives it ECR delete rights).
pub const CROSS_ACCOUNT_ROLE: &str = "hopsworks-ai-cross-account";

pub async fn create_cross_account_role(aws: &AwsBench) {
    aws.query(&with_client(&format!(
        r#"
client("iam").create_role(RoleName="{CROSS_ACCOUNT_ROLE}", AssumeRolePolicyDocument=json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::822623301872:root"}}, "Action": "sts:AssumeRole"}}]}}))
print("true")
"#
    )))
    .await;
}

/// What the stack may change in the account, to compare before and after: aws-auth, the cluster
/// security group's rules, the inline policies of the two roles the stack adds policies to, ECR.
pub async fn observable_state(aws: &AwsBench, control: &crate::control::Control) -> Value {
    let s = &aws.seeded;
    let state = aws
        .query(&with_client(&format!(
            r#"
rules = client("ec2").describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{sg}"]}}])["SecurityGroupRules"]
print(json.dumps({{
  "ingress": sorted([r["SecurityGroupRuleId"] for r in rules]),
  "role_policies": sorted(client("iam").list_role_policies(RoleName="{role}")["PolicyNames"]),
  "cross_account_policies": sorted(client("iam").list_role_policies(RoleName="{CROSS_ACCOUNT_ROLE}")["PolicyNames"]),
  "ecr": sorted(r["repositoryName"] for r in client("ecr").describe_repositories()["repositories"]),
}}))
"#,
            sg = s.cluster.cluster_security_group_id,
            role = s.hopsworks.role_name
        )))
        .await;
    json!({"aws": state, "aws_auth": control.aws_auth(&s.cluster.name).await["data"]})
}

/// One inline policy on one role or user, as an `AWS::IAM::RolePolicy` or `AWS::IAM::Policy` puts it.
#[derive(Debug, Clone, PartialEq)]
struct PolicyTarget {
    kind: &'static str,
    principal: String,
    policy: String,
}

impl PolicyTarget {
    /// The boto3 line for IAM's `<verb>_{role,user}_policy` on this target, `extra` arguments after.
    fn call(&self, verb: &str, extra: &str) -> String {
        let principal_key = if self.kind == "role" {
            "RoleName"
        } else {
            "UserName"
        };
        format!(
            "iam.{verb}_{kind}_policy({principal_key}={principal:?}, PolicyName={policy:?}{extra})\n",
            kind = self.kind,
            principal = self.principal,
            policy = self.policy,
        )
    }
}

fn policy_targets(p: &Value) -> Vec<PolicyTarget> {
    let policy = p["PolicyName"].as_str().unwrap_or_default().to_owned();
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    };
    let roles = match &p["RoleName"] {
        Value::String(r) => vec![r.clone()],
        _ => names(&p["Roles"]),
    };
    let target = |kind, principal| PolicyTarget {
        kind,
        principal,
        policy: policy.clone(),
    };
    roles
        .into_iter()
        .map(|r| target("role", r))
        .chain(names(&p["Users"]).into_iter().map(|u| target("user", u)))
        .collect()
}

/// The seeded cluster security group's ingress rules as `port source`, sorted, to compare what
/// they allow (rule ids change when a rule moves).
pub async fn ingress_rules(aws: &AwsBench) -> Vec<String> {
    ingress_rules_of(aws, &aws.seeded.cluster.cluster_security_group_id).await
}

/// A security group's ingress rules as `port source` (a CIDR or a group id), sorted.
pub async fn ingress_rules_of(aws: &AwsBench, group_id: &str) -> Vec<String> {
    let rules = aws
        .query(&with_client(&format!(
            r#"
rules = client("ec2").describe_security_group_rules(Filters=[{{"Name": "group-id", "Values": ["{group_id}"]}}])["SecurityGroupRules"]
print(json.dumps(sorted(f"{{r.get('FromPort')}} {{r.get('CidrIpv4') or r.get('ReferencedGroupInfo', {{}}).get('GroupId')}}" for r in rules if not r["IsEgress"])))
"#
        )))
        .await;
    serde_json::from_value(rules).unwrap_or_default()
}

/// The IAM principals with an access entry on `cluster`, sorted.
pub async fn access_entries(aws: &AwsBench, cluster: &str) -> Vec<String> {
    let entries = aws
        .query(&with_client(&format!(
            r#"
print(json.dumps(sorted(client("eks").list_access_entries(clusterName="{cluster}")["accessEntries"])))
"#
        )))
        .await;
    serde_json::from_value(entries).unwrap_or_default()
}

/// The account's VPCs, subnets, NAT gateways, addresses, security groups and EKS clusters, to show
/// that a stack which made its own network and cluster leaves none behind.
pub async fn networks_and_clusters(aws: &AwsBench) -> Value {
    aws.query(&with_client(
        r#"
ec2 = client("ec2")
print(json.dumps({
  "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
  "subnets": sorted(n["SubnetId"] for n in ec2.describe_subnets()["Subnets"]),
  "nat_gateways": sorted(n["NatGatewayId"] for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"),
  "addresses": sorted(a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]),
  "security_groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
  "clusters": sorted(client("eks").list_clusters()["clusters"]),
}))
"#,
    ))
    .await
}

/// Retention in days of each of the stack's log groups.
pub async fn log_retention(aws: &AwsBench) -> BTreeMap<String, u64> {
    let groups = aws
        .query(&with_client(&format!(
            r#"
groups = client("logs").describe_log_groups(logGroupNamePrefix="{STACK_NAME}-")["logGroups"]
print(json.dumps({{g["logGroupName"]: g.get("retentionInDays", 0) for g in groups}}))
"#
        )))
        .await;
    serde_json::from_value(groups).unwrap_or_default()
}

/// Names a resource's properties refer to (Ref, GetAtt, Sub variables).
fn references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("Ref", Value::String(name)) => {
                        found.insert(name.clone());
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(name) = a.first().and_then(Value::as_str) {
                            found.insert(name.to_owned());
                        }
                    }
                    ("Fn::GetAtt", Value::String(s)) => {
                        found.insert(s.split('.').next().unwrap_or_default().to_owned());
                    }
                    ("Fn::Sub", sub) => {
                        let text = sub
                            .as_str()
                            .or_else(|| sub.get(0).and_then(Value::as_str))
                            .unwrap_or_default();
                        for part in text.split("${").skip(1) {
                            let name = part.split('}').next().unwrap_or_default();
                            found.insert(name.split('.').next().unwrap_or_default().to_owned());
                        }
                        references(sub, found);
                    }
                    _ => references(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, found)),
        _ => {}
    }
}

/// Every scalar as a string, as CloudFormation sends custom-resource properties.
fn stringify(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(stringify).collect()),
        Value::Bool(b) => json!(b.to_string()),
        Value::Number(n) => json!(n.to_string()),
        other => other.clone(),
    }
}

fn with_client(script: &str) -> String {
    format!(
        "import boto3, json, os\ndef client(name):\n    return boto3.client(name, endpoint_url=os.environ['BENCH_ENDPOINT'])\n{script}"
    )
}

#[cfg(test)]
mod tests {
    use super::cidr;

    #[test]
    fn cidr_splits_a_block_as_cloudformation_does() {
        assert_eq!(
            cidr("10.0.0.0/16", "4", "12").unwrap(),
            [
                "10.0.0.0/20",
                "10.0.16.0/20",
                "10.0.32.0/20",
                "10.0.48.0/20"
            ]
        );
        // The block's host bits are ignored, as CloudFormation ignores them.
        assert_eq!(
            cidr("10.1.2.3/24", "2", "4").unwrap(),
            ["10.1.2.0/28", "10.1.2.16/28"]
        );
        assert!(
            cidr("10.0.0.0/18", "8", "12").is_err(),
            "8 /20s do not fit in a /18"
        );
        assert!(cidr("10.0.0.0", "1", "8").is_err());
    }
}
