//! The stack's Lambda functions (each the compiled binary, with credentials of its own so that
//! IAM knows its calls as its role's) and the custom resources they answer.

use super::native::{number, policy_targets};
use super::{Deployed, STACK_NAME, Stack, with_client};
use crate::cloudformation::{Answer, Player};
use crate::lambda::{FunctionConfig, LambdaFunction};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

impl Stack<'_> {
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

    /// Send a custom resource's `action` to the function its ServiceToken names, as CloudFormation
    /// does, and wait for the answer at the ResponseURL.
    pub(super) async fn custom(
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

    /// What Lambda checks of a `VpcConfig` before CreateFunction or UpdateFunctionConfiguration
    /// takes it: subnets and security groups given together, existing, in one VPC, and an
    /// execution role that may make, read and delete the function's network interfaces there.
    /// Its refusals read as Lambda's InvalidParameterValueException.
    pub(super) async fn check_vpc_config(&self, name: &str, p: &Value) -> Result<(), String> {
        let ids = |key: &str| -> Vec<String> {
            p["VpcConfig"][key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let (subnets, groups) = (ids("SubnetIds"), ids("SecurityGroupIds"));
        if subnets.is_empty() && groups.is_empty() {
            return Ok(());
        }
        let refused = |why: String| Err(format!("{name}: InvalidParameterValueException: {why}"));
        if subnets.is_empty() || groups.is_empty() {
            return refused("a VpcConfig needs both subnets and security groups".to_owned());
        }
        let found = self
            .aws
            .query(&with_client(&format!(
                r#"
ec2 = client("ec2")
try:
    subnets = ec2.describe_subnets(SubnetIds={subnets:?})["Subnets"]
    groups = ec2.describe_security_groups(GroupIds={groups:?})["SecurityGroups"]
    print(json.dumps({{"vpcs": sorted({{x["VpcId"] for x in subnets + groups}})}}))
except Exception as e:
    print(json.dumps({{"error": str(e)}}))
"#
            )))
            .await;
        if let Some(error) = found["error"].as_str() {
            return refused(format!("Error occurred while describing the VPC: {error}"));
        }
        if found["vpcs"].as_array().map_or(0, Vec::len) != 1 {
            return refused(format!(
                "the subnets and security groups are not in one VPC: {}",
                found["vpcs"]
            ));
        }
        let role = p["Role"].as_str().unwrap_or_default();
        let policies = self.role_policies().remove(role).unwrap_or_default();
        let s = &self.aws.seeded;
        let arn =
            |kind: &str, id: &str| format!("arn:aws:ec2:{}:{}:{kind}/{id}", s.region, s.account_id);
        let create = std::iter::once(arn("network-interface", "*"))
            .chain(subnets.iter().map(|id| arn("subnet", id)))
            .chain(groups.iter().map(|id| arn("security-group", id)))
            .map(|resource| ("CreateNetworkInterface", resource));
        let needed = create.chain([
            ("DescribeNetworkInterfaces", "*".to_owned()),
            (
                "DeleteNetworkInterface",
                arn("network-interface", "eni-0123456789abcdef0"),
            ),
        ]);
        for (action, resource) in needed {
            let check = crate::iam::Check {
                action: format!("ec2:{action}"),
                resource,
                context: BTreeMap::new(),
            };
            if crate::iam::evaluate(&policies, &check)? != crate::iam::Decision::Allow {
                return refused(format!(
                    "The provided execution role does not have permissions to call {action} on EC2"
                ));
            }
        }
        Ok(())
    }

    /// Create the function, or (given the name it has) configure it anew, as UpdateFunctionConfiguration.
    pub(super) fn create_function(
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
