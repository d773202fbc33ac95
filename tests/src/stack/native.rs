//! The resources CloudFormation makes itself, applied to moto as its handlers would: IAM roles
//! and inline policies, log groups, and (through tests/bench/cfn_native.py) EC2 and EKS.

use super::{Deployed, STACK_NAME, Stack, with_client};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

impl Stack<'_> {
    pub(super) async fn create_role(&self, name: &str, p: &Value) -> Result<Deployed, String> {
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

    /// The role's trust policy and inline policies as `new` has them (a policy `new` no longer
    /// names is deleted); a new name or path would replace the role, which the bench cannot.
    pub(super) async fn update_role(
        &self,
        name: &str,
        current: &Deployed,
        new: &Value,
    ) -> Result<(), String> {
        let old = &current.properties;
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
        self.py(&script).await
    }

    /// The role, its inline policies deleted and its managed ones detached first, as IAM requires.
    pub(super) async fn delete_role(&self, role: &str) -> Result<(), String> {
        self.py(&format!("iam = client('iam')\nfor p in iam.list_role_policies(RoleName={id:?})['PolicyNames']:\n    iam.delete_role_policy(RoleName={id:?}, PolicyName=p)\nfor p in iam.list_attached_role_policies(RoleName={id:?})['AttachedPolicies']:\n    iam.detach_role_policy(RoleName={id:?}, PolicyArn=p['PolicyArn'])\niam.delete_role(RoleName={id:?})", id = role)).await
    }

    pub(super) async fn put_policy(&self, p: &Value) -> Result<Deployed, String> {
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

    /// The policy as `new` has it, on the roles and users `new` names; removed from those only
    /// `old` named.
    pub(super) async fn update_policy(&self, old: &Value, new: &Value) -> Result<Deployed, String> {
        let deployed = self.put_policy(new).await?;
        let kept_pairs = policy_targets(new);
        let stale: Vec<_> = policy_targets(old)
            .into_iter()
            .filter(|t| !kept_pairs.contains(t))
            .collect();
        self.delete_policy_targets(&stale).await?;
        Ok(deployed)
    }

    pub(super) async fn delete_policy(&self, p: &Value) -> Result<(), String> {
        self.delete_policy_targets(&policy_targets(p)).await
    }

    async fn delete_policy_targets(&self, targets: &[PolicyTarget]) -> Result<(), String> {
        let mut script = "iam = client('iam')\n".to_owned();
        for t in targets {
            script.push_str(&t.call("delete", ""));
        }
        self.py(&script).await
    }

    pub(super) async fn create_log_group(&self, name: &str, p: &Value) -> Result<Deployed, String> {
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

    /// The log group's retention as `new` has it; a new name would replace the group, which the
    /// bench cannot.
    pub(super) async fn update_log_group(
        &self,
        name: &str,
        current: &Deployed,
        new: &Value,
    ) -> Result<(), String> {
        if current.properties["LogGroupName"] != new["LogGroupName"] {
            return Err(format!("{name}: the bench cannot replace a log group"));
        }
        self.py(&format!(
            "client('logs').put_retention_policy(logGroupName={:?}, retentionInDays={})",
            current.physical_id,
            number(name, new, "RetentionInDays")?.unwrap_or(30)
        ))
        .await
    }

    pub(super) async fn delete_log_group(&self, group: &str) -> Result<(), String> {
        self.py(&format!(
            "client('logs').delete_log_group(logGroupName={group:?})"
        ))
        .await
    }

    /// An EC2 or EKS resource, made by tests/bench/cfn_native.py as CloudFormation's handlers
    /// would make it.
    pub(super) async fn native_create(
        &self,
        name: &str,
        kind: &str,
        p: &Value,
    ) -> Result<Deployed, String> {
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

    pub(super) async fn native_delete(&self, kind: &str, d: &Deployed) -> Result<(), String> {
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
}

/// A whole-number property: a JSON number, or a string of one (what a parameter gives, as
/// CloudFormation passes parameters as strings); absent is None, anything else an error.
pub(super) fn number(resource: &str, properties: &Value, key: &str) -> Result<Option<u64>, String> {
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

/// One inline policy on one role or user, as an `AWS::IAM::RolePolicy` or `AWS::IAM::Policy` puts it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PolicyTarget {
    pub(super) kind: &'static str,
    pub(super) principal: String,
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

pub(super) fn policy_targets(p: &Value) -> Vec<PolicyTarget> {
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
