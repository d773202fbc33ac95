//! The bench's IAM. moto does not enforce IAM, so each AWS call a stack's function makes is
//! checked here, on its way through the fault proxy, against the policies of the function's role
//! as the engine holds them at that moment: an update's cleanup runs under the updated policies,
//! an update's rollback under the restored ones, as in AWS. A call the policies deny is answered
//! as the service answers it (the function reports it) and recorded ([`Iam::denied`]).
//!
//! The caller is known by its credentials, as AWS knows it: the engine gives each function an
//! access key of its own ([`Iam::credentials`]) and hands over the role policies before it runs
//! a function ([`Iam::set_policies`]). What the evaluator knows of IAM's policy logic is what the
//! template uses: Allow and Deny, `Action`/`NotAction` and `Resource`/`NotResource` with `*` and
//! `?`, and the string, ARN and `Null` condition operators (with `IfExists`) over the keys the
//! bench can tell: a security group's tags (`aws:ResourceTag/…`, `ec2:ResourceTag/…`, read from
//! moto) and `ec2:CreateAction` for tags set on create. Managed policies, boundaries, SCPs,
//! resource policies and policy variables are not evaluated; a policy or a call the evaluator
//! cannot evaluate is denied, saying why, rather than passed unchecked.

use crate::faults::{Authorizer, Call};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

/// One authorization IAM makes for a request: an action on one resource, with the request's
/// condition keys (names in lowercase, as IAM compares them).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub context: BTreeMap<String, String>,
}

impl Check {
    fn new(action: &str, resource: String) -> Self {
        Self {
            action: action.to_owned(),
            resource,
            context: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    ExplicitDeny,
    ImplicitDeny,
}

/// IAM's wildcard match: `*` any run of characters (none included), `?` exactly one.
pub fn glob(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    // The last `*` seen and where in `value` it started matching: on a mismatch it takes one
    // more character.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if p.get(pi) == Some(&'*') {
            star = Some((pi, vi));
            pi += 1;
        } else if p.get(pi).is_some_and(|c| *c == '?' || *c == v[vi]) {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            star = Some((sp, sv + 1));
            pi = sp + 1;
            vi = sv + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// A resource pattern against an ARN as IAM matches them: each of the first five segments (arn,
/// partition, service, region, account) on its own, then the resource part (which may hold
/// colons and slashes) as a whole. A pattern that is not an ARN (`*`) is matched whole.
pub fn arn_like(pattern: &str, arn: &str) -> bool {
    if !pattern.starts_with("arn:") {
        return glob(pattern, arn);
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a))
}

/// Actions compare without case (`eks:describecluster` is `eks:DescribeCluster`).
fn action_like(pattern: &str, action: &str) -> bool {
    glob(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// A policy element's values: a string or a list of them (booleans and numbers as IAM reads
/// them, as strings).
fn strings(value: &Value) -> Result<Vec<String>, String> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(_) | Value::Number(_) => Ok(v.to_string()),
        other => Err(format!("{other} is not a string")),
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|s| vec![s]),
    }
}

/// `key` (some pattern matches) or `not_key` (none does): a statement has exactly one.
fn element(
    statement: &Value,
    key: &str,
    not_key: &str,
    matches: impl Fn(&str) -> bool,
) -> Result<bool, String> {
    let (value, negated) = match (statement.get(key), statement.get(not_key)) {
        (Some(v), None) => (v, false),
        (None, Some(v)) => (v, true),
        _ => return Err(format!("a statement needs one of {key} and {not_key}")),
    };
    let patterns = strings(value)?;
    if let Some(p) = patterns.iter().find(|p| p.contains("${")) {
        return Err(format!("policy variables ({p}) are not evaluated"));
    }
    Ok(patterns.iter().any(|p| matches(p)) != negated)
}

/// One condition operator on one key: `actual` is the request's value, absent when the request
/// has no such key.
fn condition(operator: &str, actual: Option<&str>, values: &[String]) -> Result<bool, String> {
    if operator.contains(':') {
        return Err(format!("set operators ({operator}) are not evaluated"));
    }
    let (base, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    if base == "Null" {
        return values.iter().try_fold(false, |any, v| match v.as_str() {
            "true" => Ok(any || actual.is_none()),
            "false" => Ok(any || actual.is_some()),
            other => Err(format!("Null takes true or false, not {other}")),
        });
    }
    let (negated, test): (bool, fn(&str, &str) -> bool) = match base {
        "StringEquals" => (false, |p, a| p == a),
        "StringNotEquals" => (true, |p, a| p == a),
        "StringEqualsIgnoreCase" => (false, |p, a| p.eq_ignore_ascii_case(a)),
        "StringNotEqualsIgnoreCase" => (true, |p, a| p.eq_ignore_ascii_case(a)),
        "StringLike" => (false, glob),
        "StringNotLike" => (true, glob),
        "ArnEquals" | "ArnLike" => (false, arn_like),
        "ArnNotEquals" | "ArnNotLike" => (true, arn_like),
        other => return Err(format!("the condition operator {other} is not evaluated")),
    };
    Ok(match actual {
        // A key the request lacks: false, but true for IfExists and the negated operators.
        None => if_exists || negated,
        Some(a) => values.iter().any(|p| test(p, a)) != negated,
    })
}

/// Every operator and key of a `Condition` block must hold.
fn conditions(block: &Value, context: &BTreeMap<String, String>) -> Result<bool, String> {
    let Some(operators) = block.as_object() else {
        return match block {
            Value::Null => Ok(true),
            other => Err(format!("Condition {other} is not a map")),
        };
    };
    for (operator, keys) in operators {
        let keys = keys
            .as_object()
            .ok_or_else(|| format!("Condition {operator} is not a map of keys"))?;
        for (key, values) in keys {
            let actual = context.get(&key.to_ascii_lowercase()).map(String::as_str);
            if !condition(operator, actual, &strings(values)?)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The effect of `statement` on `check`, if it applies.
fn applies(statement: &Value, check: &Check) -> Result<Option<Decision>, String> {
    let object = statement
        .as_object()
        .ok_or_else(|| format!("statement {statement} is not a map"))?;
    if let Some(key) = object.keys().find(|k| {
        ![
            "Sid",
            "Effect",
            "Action",
            "NotAction",
            "Resource",
            "NotResource",
            "Condition",
        ]
        .contains(&k.as_str())
    }) {
        return Err(format!(
            "{key} is not evaluated in an identity-based policy"
        ));
    }
    let effect = match statement["Effect"].as_str() {
        Some("Allow") => Decision::Allow,
        Some("Deny") => Decision::ExplicitDeny,
        other => return Err(format!("Effect {other:?}")),
    };
    let applies = element(statement, "Action", "NotAction", |p| {
        action_like(p, &check.action)
    })? && element(statement, "Resource", "NotResource", |p| {
        arn_like(p, &check.resource)
    })? && conditions(&statement["Condition"], &check.context)?;
    Ok(applies.then_some(effect))
}

/// IAM's decision on `check` under identity-based `policies` (policy documents): an explicit
/// Deny wins, then any Allow; nothing that applies is an implicit deny. `Err` names what the
/// evaluator cannot evaluate.
pub fn evaluate(policies: &[Value], check: &Check) -> Result<Decision, String> {
    let mut decision = Decision::ImplicitDeny;
    for policy in policies {
        let statements = match &policy["Statement"] {
            Value::Array(list) => list.clone(),
            one @ Value::Object(_) => vec![one.clone()],
            other => return Err(format!("Statement {other} is not a list")),
        };
        for statement in &statements {
            match applies(statement, check)? {
                Some(Decision::ExplicitDeny) => return Ok(Decision::ExplicitDeny),
                Some(Decision::Allow) => decision = Decision::Allow,
                _ => {}
            }
        }
    }
    Ok(decision)
}

/// Percent-decoding (and `+` as a space, as in form bodies).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of a form-encoded body or query string.
fn form(text: &str) -> BTreeMap<String, String> {
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Every value of an indexed query list (`SecurityGroupRuleId.1`, `.2`, …).
fn indexed(fields: &BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|i| fields.get(&format!("{prefix}.{i}")).cloned())
        .collect()
}

/// Where EKS puts the id it gives an access entry at the end of the entry's ARN; requests
/// name the entry by its principal only, so the bench puts a fixed one there.
const ACCESS_ENTRY_ID: &str = "00000000-0000-0000-0000-000000000000";

/// What IAM authorizes for a request, as the fault proxy records it (`"METHOD /path target
/// body"`): one check per resource it names (a call on several needs each allowed), none for a
/// call that needs no permission. `Err` for a call whose resources the bench cannot tell.
pub fn checks(request: &str, account: &str, region: &str) -> Result<Vec<Check>, String> {
    let action = crate::faults::action(request);
    let mut parts = request.splitn(4, ' ');
    let (_method, path, _target, body) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let segments: Vec<String> = path.trim_matches('/').split('/').map(decode).collect();
    let segment = |i: usize| segments.get(i).cloned().unwrap_or_default();
    let arn =
        |service: &str, resource: &str| format!("arn:aws:{service}:{region}:{account}:{resource}");
    let fields = form(body);
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let json: Value = serde_json::from_str(body).unwrap_or_default();
    let one = |resource: String| -> Result<Vec<Check>, String> {
        Ok(vec![Check::new(&action, resource)])
    };
    // EKS names an access entry `access-entry/<cluster>/<role|user>/<account>/<name>/<id>`.
    let access_entry = |cluster: &str, principal: &str| {
        let mut parts = principal.splitn(6, ':');
        let principal_account = parts.nth(4).unwrap_or_default();
        let kind_and_name = parts.next().unwrap_or_default();
        let kind = kind_and_name.split('/').next().unwrap_or_default();
        let name = kind_and_name.rsplit('/').next().unwrap_or_default();
        arn(
            "eks",
            &format!("access-entry/{cluster}/{kind}/{principal_account}/{name}/{ACCESS_ENTRY_ID}"),
        )
    };
    match action.as_str() {
        "sts:GetCallerIdentity" => Ok(Vec::new()),
        "eks:DescribeCluster" | "eks:ListAccessEntries" => {
            one(arn("eks", &format!("cluster/{}", segment(1))))
        }
        "eks:CreateAccessEntry" => {
            let mut checks = vec![Check::new(
                &action,
                arn("eks", &format!("cluster/{}", segment(1))),
            )];
            // Tags set on create need eks:TagResource on the entry too.
            if json["tags"].as_object().is_some_and(|t| !t.is_empty()) {
                let principal = json["principalArn"].as_str().unwrap_or_default();
                checks.push(Check::new(
                    "eks:TagResource",
                    access_entry(&segment(1), principal),
                ));
            }
            Ok(checks)
        }
        "eks:DescribeAccessEntry"
        | "eks:DeleteAccessEntry"
        | "eks:AssociateAccessPolicy"
        | "eks:DisassociateAccessPolicy"
        | "eks:ListAssociatedAccessPolicies" => one(access_entry(&segment(1), &segment(3))),
        // The path names the resource by its ARN.
        "eks:TagResource" | "eks:UntagResource" => one(segment(1)),
        // EC2's Describe* calls have no resource-level permissions.
        a if a.starts_with("ec2:Describe") => one("*".to_owned()),
        "ec2:AuthorizeSecurityGroupIngress" => {
            let mut checks = vec![Check::new(
                &action,
                arn("ec2", &format!("security-group/{}", field("GroupId"))),
            )];
            // Rules tagged on create: ec2:CreateTags on the new rules, with ec2:CreateAction.
            if fields.keys().any(|k| k.starts_with("TagSpecification.")) {
                let mut tag = Check::new("ec2:CreateTags", arn("ec2", "security-group-rule/*"));
                tag.context.insert(
                    "ec2:createaction".to_owned(),
                    "AuthorizeSecurityGroupIngress".to_owned(),
                );
                checks.push(tag);
            }
            Ok(checks)
        }
        "ec2:RevokeSecurityGroupIngress" => {
            let group = arn("ec2", &format!("security-group/{}", field("GroupId")));
            Ok(std::iter::once(group)
                .chain(
                    indexed(&fields, "SecurityGroupRuleId")
                        .iter()
                        .map(|id| arn("ec2", &format!("security-group-rule/{id}"))),
                )
                .map(|resource| Check::new(&action, resource))
                .collect())
        }
        // The request names the instance profile, not its path: the ARN without one.
        "iam:GetInstanceProfile" => one(format!(
            "arn:aws:iam::{account}:instance-profile/{}",
            field("InstanceProfileName")
        )),
        "sts:AssumeRole" => one(field("RoleArn")),
        // A bucket's ARN has no region or account.
        "s3:GetBucketLocation" => one(format!("arn:aws:s3:::{}", segment(0))),
        "ecr:DescribeRepositories" | "ecr:DeleteRepository" => {
            let registry = json["registryId"].as_str().unwrap_or(account);
            let repository =
                |name: &str| format!("arn:aws:ecr:{region}:{registry}:repository/{name}");
            let mut names: Vec<String> = strings(&json["repositoryNames"]).unwrap_or_default();
            names.extend(json["repositoryName"].as_str().map(str::to_owned));
            if names.is_empty() {
                // Listing every repository is authorized on all of them.
                names.push("*".to_owned());
            }
            Ok(names
                .iter()
                .map(|n| Check::new(&action, repository(n)))
                .collect())
        }
        // A full secret ARN is the resource; a name or partial ARN is taken as given.
        "secretsmanager:GetSecretValue" => {
            let id = json["SecretId"].as_str().unwrap_or_default();
            one(if id.starts_with("arn:") {
                id.to_owned()
            } else {
                arn("secretsmanager", &format!("secret:{id}"))
            })
        }
        "lambda:InvokeFunction" => {
            let name = segment(2);
            let function = if name.starts_with("arn:") {
                name
            } else {
                arn("lambda", &format!("function:{name}"))
            };
            one(match form(query).get("Qualifier") {
                Some(q) => format!("{function}:{q}"),
                None => function,
            })
        }
        other => Err(format!(
            "the bench's IAM cannot tell which resources {other} names"
        )),
    }
}

/// The security group an ARN names, when it names one (its tags are condition keys).
fn security_group(arn: &str) -> Option<&str> {
    arn.split_once(":security-group/")
        .map(|(_, id)| id)
        .filter(|id| !id.contains('*'))
}

/// A function the engine deployed, as IAM knows it: by its role.
#[derive(Debug, Clone)]
struct Principal {
    function: String,
    role_arn: String,
    secret: String,
}

/// A call the policies denied.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub function: String,
    pub role_arn: String,
    pub action: String,
    pub resource: String,
    /// What the function was told.
    pub message: String,
}

/// The bench's IAM for one stack (see the module's documentation).
pub struct Iam {
    account: String,
    region: String,
    /// moto itself, for the tags of a security group.
    moto: String,
    http: reqwest::Client,
    /// By access key id.
    principals: Mutex<BTreeMap<String, Principal>>,
    /// Policy documents by role ARN.
    policies: Mutex<BTreeMap<String, Vec<Value>>>,
    denied: Mutex<Vec<Denial>>,
}

impl Iam {
    pub fn new(account: &str, region: &str, moto: &str) -> Self {
        Self {
            account: account.to_owned(),
            region: region.to_owned(),
            moto: moto.to_owned(),
            http: reqwest::Client::new(),
            principals: Mutex::default(),
            policies: Mutex::default(),
            denied: Mutex::default(),
        }
    }

    /// The access key id and secret of `function`, which runs as `role_arn` (the same key again
    /// for a function given anew, its role updated).
    pub fn credentials(&self, function: &str, role_arn: &str) -> (String, String) {
        let Ok(mut principals) = self.principals.lock() else {
            return Default::default();
        };
        let key = principals
            .iter()
            .find(|(_, p)| p.function == function)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| format!("ASIA{}", crate::random_hex(16).to_ascii_uppercase()));
        let principal = principals.entry(key.clone()).or_insert(Principal {
            function: function.to_owned(),
            role_arn: String::new(),
            secret: crate::random_hex(40),
        });
        principal.role_arn = role_arn.to_owned();
        (key, principal.secret.clone())
    }

    /// The policy documents of each role (by ARN), as they are now.
    pub fn set_policies(&self, policies: BTreeMap<String, Vec<Value>>) {
        if let Ok(mut current) = self.policies.lock() {
            *current = policies;
        }
    }

    /// Every call denied so far.
    pub fn denied(&self) -> Vec<Denial> {
        self.denied.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// The tags of a security group, as condition keys (`aws:resourcetag/<key>` and
    /// `ec2:resourcetag/<key>`), read from moto.
    async fn security_group_tags(&self, group_id: &str) -> BTreeMap<String, String> {
        let body = format!(
            "Action=DescribeTags&Version=2016-11-15&Filter.1.Name=resource-id&Filter.1.Value.1={group_id}"
        );
        // moto reads the service and region from the signature's scope; it checks no signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=bench/20260101/{}/ec2/aws4_request, SignedHeaders=host, Signature=0",
            self.region
        );
        let text = match self
            .http
            .post(&self.moto)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
        {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return BTreeMap::new(),
        };
        let between = |item: &str, tag: &str| {
            let (_, rest) = item.split_once(&format!("<{tag}>"))?;
            let (value, _) = rest.split_once(&format!("</{tag}>"))?;
            Some(xml_unescape(value))
        };
        let mut tags = BTreeMap::new();
        for item in text.split("<item>").skip(1) {
            if let (Some(key), Some(value)) = (between(item, "key"), between(item, "value")) {
                for prefix in ["aws", "ec2"] {
                    tags.insert(
                        format!("{prefix}:resourcetag/{key}").to_ascii_lowercase(),
                        value.clone(),
                    );
                }
            }
        }
        tags
    }

    /// Whether the trust policy of `role_arn` (read from moto) lets `caller` (a role ARN of this
    /// account) assume it: a statement whose principal is the caller, its account or `*`, whose
    /// action is `sts:AssumeRole` and whose conditions hold with `aws:PrincipalArn` = `caller`.
    async fn trusts(&self, role_arn: &str, caller: &str) -> Result<bool, String> {
        let name = role_arn.rsplit('/').next().unwrap_or_default();
        let authorization = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
        let text = self
            .http
            .post(&self.moto)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", authorization)
            .body(format!("Action=GetRole&Version=2010-05-08&RoleName={name}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        let document = text
            .split_once("<AssumeRolePolicyDocument>")
            .and_then(|(_, rest)| rest.split_once("</AssumeRolePolicyDocument>"))
            .map(|(doc, _)| decode(&xml_unescape(doc)))
            .ok_or_else(|| format!("no role {name} in the account"))?;
        let trust: Value = serde_json::from_str(&document).map_err(|e| e.to_string())?;
        trust_allows(&trust, caller, &self.account)
    }

    async fn authorize_call(&self, call: Call<'_>) -> Result<(), String> {
        let principal = call.access_key.and_then(|key| {
            self.principals
                .lock()
                .ok()
                .and_then(|p| p.get(key).cloned())
        });
        // Not one of the stack's functions: not this IAM's business.
        let Some(principal) = principal else {
            return Ok(());
        };
        let policies = self
            .policies
            .lock()
            .ok()
            .and_then(|p| p.get(&principal.role_arn).cloned())
            .unwrap_or_default();
        let checks = match checks(call.request, &self.account, &self.region) {
            Ok(checks) => checks,
            Err(why) => {
                let action = crate::faults::action(call.request);
                return Err(self.deny(&principal, Check::new(&action, "*".to_owned()), &why));
            }
        };
        for mut check in checks {
            if let Some(group) = security_group(&check.resource) {
                check.context.extend(self.security_group_tags(group).await);
            }
            let identity = evaluate(&policies, &check);
            // Assuming a role needs its trust policy too, as in AWS.
            if check.action == "sts:AssumeRole" && identity == Ok(Decision::Allow) {
                match self.trusts(&check.resource, &principal.role_arn).await {
                    Ok(true) => continue,
                    Ok(false) => {
                        let why = format!(
                            "because the trust policy of {} does not let {} assume it",
                            check.resource, principal.role_arn
                        );
                        return Err(self.deny(&principal, check, &why));
                    }
                    Err(e) => {
                        let why =
                            format!("because the bench cannot evaluate the trust policy: {e}");
                        return Err(self.deny(&principal, check, &why));
                    }
                }
            }
            let why = match identity {
                Ok(Decision::Allow) => continue,
                Ok(Decision::ExplicitDeny) => {
                    "with an explicit deny in an identity-based policy".to_owned()
                }
                Ok(Decision::ImplicitDeny) => format!(
                    "because no identity-based policy allows the {} action",
                    check.action
                ),
                Err(e) => format!("because the bench cannot evaluate its policies: {e}"),
            };
            return Err(self.deny(&principal, check, &why));
        }
        Ok(())
    }

    /// Record a denial; the message the function gets, worded as IAM words it.
    fn deny(&self, principal: &Principal, check: Check, why: &str) -> String {
        let role = principal.role_arn.rsplit('/').next().unwrap_or_default();
        let message = format!(
            "User: arn:aws:sts::{}:assumed-role/{role}/{} is not authorized to perform: {} on \
             resource: {} {why}",
            self.account, principal.function, check.action, check.resource
        );
        if let Ok(mut denied) = self.denied.lock() {
            denied.push(Denial {
                function: principal.function.clone(),
                role_arn: principal.role_arn.clone(),
                action: check.action,
                resource: check.resource,
                message: message.clone(),
            });
        }
        message
    }
}

/// Whether `trust` (a role's trust policy) lets `caller` assume the role: the statements naming
/// the caller (its ARN, its account's root or id, or `*`) as an AWS principal, evaluated as an
/// identity-based policy with `aws:PrincipalArn` = `caller`.
pub fn trust_allows(trust: &Value, caller: &str, account: &str) -> Result<bool, String> {
    let names_caller = |statement: &Value| -> Result<bool, String> {
        let principals = match &statement["Principal"] {
            Value::String(star) if star == "*" => return Ok(true),
            Value::Object(p) => match p.get("AWS") {
                Some(aws) => strings(aws)?,
                None => return Ok(false), // Service or Federated: not a role of this account
            },
            other => return Err(format!("Principal {other} is not evaluated")),
        };
        let root = format!("arn:aws:iam::{account}:root");
        Ok(principals
            .iter()
            .any(|p| p == "*" || p == caller || *p == root || p == account))
    };
    let statements = match &trust["Statement"] {
        Value::Array(list) => list.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        other => return Err(format!("Statement {other} is not a list")),
    };
    let mut relevant = Vec::new();
    for statement in statements {
        if names_caller(&statement)? {
            let mut s = statement.clone();
            if let Some(map) = s.as_object_mut() {
                map.remove("Principal");
                map.insert("Resource".to_owned(), Value::String("*".to_owned()));
            }
            relevant.push(s);
        }
    }
    let policy = serde_json::json!({"Version": "2012-10-17", "Statement": relevant});
    let check = Check {
        action: "sts:AssumeRole".to_owned(),
        resource: "*".to_owned(),
        context: BTreeMap::from([("aws:principalarn".to_owned(), caller.to_owned())]),
    };
    Ok(evaluate(&[policy], &check)? == Decision::Allow)
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl Authorizer for Iam {
    fn authorize<'a>(
        &'a self,
        call: Call<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(self.authorize_call(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const ACCOUNT: &str = "123456789012";
    const REGION: &str = "us-east-2";

    #[test]
    fn a_trust_policy_lets_in_only_the_principals_and_conditions_it_names() {
        let caller = "arn:aws:iam::123456789012:role/hopsworks-eks-EksAccessRole-AB12";
        let scoped = json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/hopsworks-eks-EksAccessRole-*"}}}]});
        assert_eq!(trust_allows(&scoped, caller, ACCOUNT), Ok(true));
        let other = "arn:aws:iam::123456789012:role/someone-else";
        assert_eq!(trust_allows(&scoped, other, ACCOUNT), Ok(false));
        let service = json!({"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"}}]});
        assert_eq!(trust_allows(&service, caller, ACCOUNT), Ok(false));
        let named = json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole",
            "Principal": {"AWS": [caller]}}});
        assert_eq!(trust_allows(&named, caller, ACCOUNT), Ok(true));
    }

    #[test]
    fn iam_documents_are_url_decoded() {
        assert_eq!(decode("%7B%22a%22%3A+1%7D"), "{\"a\": 1}");
        assert_eq!(decode("100%"), "100%");
    }

    fn check(action: &str, resource: &str) -> Check {
        Check::new(action, resource.to_owned())
    }

    fn allow(action: Value, resource: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": action, "Resource": resource}
        ]})
    }

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(glob("cluster/*", "cluster/demo"));
        assert!(glob("cluster/*", "cluster/"));
        assert!(glob("repository/*/base", "repository/abc/base"));
        assert!(!glob("repository/*/base", "repository/abc/basement"));
        assert!(glob("secret:key-??????", "secret:key-AbCdEf"));
        assert!(!glob("secret:key-??????", "secret:key-AbCdE"));
        assert!(!glob("cluster/demo", "cluster/demo-2"));
        assert!(action_like("eks:Describe*", "eks:DescribeCluster"));
        assert!(action_like("EKS:describecluster", "eks:DescribeCluster"));
        assert!(!action_like("eks:Describe*", "eks:DeleteAccessEntry"));
    }

    #[test]
    fn arn_segments_match_one_by_one() {
        let sg = "arn:aws:ec2:us-east-2:123456789012:security-group/sg-1";
        assert!(arn_like("arn:aws:ec2:*:*:security-group/*", sg));
        assert!(arn_like("*", sg));
        // A `*` in the region does not reach into the account.
        assert!(!arn_like("arn:aws:ec2:us-east-*:security-group/*", sg));
        assert!(!arn_like(
            "arn:aws:ec2:us-east-2:210987654321:security-group/*",
            sg
        ));
        // Only `*` grants an action without resource-level permissions.
        assert!(!arn_like("arn:aws:ec2:us-east-2:123456789012:*", "*"));
    }

    #[test]
    fn a_deny_wins_over_any_allow_and_silence_denies() {
        let cluster = "arn:aws:eks:us-east-2:123456789012:cluster/demo";
        let allow_all = allow(json!("eks:*"), json!("*"));
        let deny_demo = json!({"Statement": {"Effect": "Deny", "Action": "eks:DescribeCluster", "Resource": cluster}});
        let c = check("eks:DescribeCluster", cluster);
        assert_eq!(
            evaluate(std::slice::from_ref(&allow_all), &c),
            Ok(Decision::Allow)
        );
        assert_eq!(
            evaluate(&[allow_all, deny_demo], &c),
            Ok(Decision::ExplicitDeny)
        );
        assert_eq!(evaluate(&[], &c), Ok(Decision::ImplicitDeny));
        let not_action = json!({"Statement": [{"Effect": "Allow", "NotAction": "eks:Delete*", "Resource": "*"}]});
        assert_eq!(
            evaluate(std::slice::from_ref(&not_action), &c),
            Ok(Decision::Allow)
        );
        assert_eq!(
            evaluate(&[not_action], &check("eks:DeleteAccessEntry", cluster)),
            Ok(Decision::ImplicitDeny)
        );
    }

    #[test]
    fn conditions_hold_on_the_keys_the_request_has() {
        let policy = json!({"Statement": [{
            "Effect": "Allow",
            "Action": "ec2:AuthorizeSecurityGroupIngress",
            "Resource": "arn:aws:ec2:us-east-2:123456789012:security-group/*",
            "Condition": {"Null": {"aws:ResourceTag/aws:eks:cluster-name": "false"}}
        }]});
        let mut c = check(
            "ec2:AuthorizeSecurityGroupIngress",
            "arn:aws:ec2:us-east-2:123456789012:security-group/sg-1",
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&policy), &c),
            Ok(Decision::ImplicitDeny),
            "an untagged group"
        );
        c.context.insert(
            "aws:resourcetag/aws:eks:cluster-name".to_owned(),
            "demo".to_owned(),
        );
        assert_eq!(evaluate(&[policy], &c), Ok(Decision::Allow));

        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            condition("StringEquals", Some("a"), &values(&["b", "a"])),
            Ok(true)
        );
        assert_eq!(condition("StringEquals", None, &values(&["a"])), Ok(false));
        assert_eq!(
            condition("StringEqualsIfExists", None, &values(&["a"])),
            Ok(true)
        );
        assert_eq!(
            condition("StringNotEquals", None, &values(&["a"])),
            Ok(true)
        );
        assert_eq!(
            condition("StringNotLike", Some("abc"), &values(&["a*"])),
            Ok(false)
        );
        assert!(condition("ForAnyValue:StringEquals", Some("a"), &values(&["a"])).is_err());
        assert!(condition("NumericLessThan", Some("1"), &values(&["2"])).is_err());
    }

    #[test]
    fn what_the_evaluator_cannot_evaluate_is_an_error_not_an_allow() {
        let c = check("eks:DescribeCluster", "arn:aws:eks:us-east-2:1:cluster/a");
        let variable = allow(
            json!("eks:*"),
            json!("arn:aws:eks:*:*:cluster/${aws:username}"),
        );
        assert!(evaluate(&[variable], &c).is_err());
        let principal = json!({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]});
        assert!(evaluate(&[principal], &c).is_err());
    }

    fn resources(request: &str) -> Vec<(String, String)> {
        checks(request, ACCOUNT, REGION)
            .expect("a call the bench knows")
            .into_iter()
            .map(|c| (c.action, c.resource))
            .collect()
    }

    #[test]
    fn each_call_names_the_resources_iam_authorizes() {
        let pair = |a: &str, r: &str| (a.to_owned(), r.to_owned());
        assert_eq!(
            resources("GET /clusters/demo-eks - "),
            [pair(
                "eks:DescribeCluster",
                "arn:aws:eks:us-east-2:123456789012:cluster/demo-eks"
            )]
        );
        assert_eq!(
            resources("GET /hops-demo-bucket?location - "),
            [pair(
                "s3:GetBucketLocation",
                "arn:aws:s3:::hops-demo-bucket"
            )]
        );
        assert_eq!(
            resources(
                "GET /clusters/access-eks/access-entries/arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fhopsworks%2Fhw-role - "
            ),
            [pair(
                "eks:DescribeAccessEntry",
                "arn:aws:eks:us-east-2:123456789012:access-entry/access-eks/role/123456789012/hw-role/00000000-0000-0000-0000-000000000000"
            )]
        );
        assert_eq!(
            resources(
                r#"POST /clusters/access-eks/access-entries - {"principalArn":"arn:aws:iam::123456789012:role/hw-role","tags":{"k":"v"}}"#
            ),
            [
                pair(
                    "eks:CreateAccessEntry",
                    "arn:aws:eks:us-east-2:123456789012:cluster/access-eks"
                ),
                pair(
                    "eks:TagResource",
                    "arn:aws:eks:us-east-2:123456789012:access-entry/access-eks/role/123456789012/hw-role/00000000-0000-0000-0000-000000000000"
                )
            ]
        );
        let entry = "arn:aws:eks:us-east-2:123456789012:access-entry/access-eks/role/123456789012/hw-role/1f2e";
        assert_eq!(
            resources(&format!(
                "DELETE /tags/{}?tagKeys=owner - ",
                entry.replace(':', "%3A").replace('/', "%2F")
            )),
            [pair("eks:UntagResource", entry)]
        );
        assert_eq!(
            resources(
                "DELETE /clusters/access-eks/access-entries/arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fhw-role/access-policies/arn%3Aaws%3Aeks%3A%3Aaws%3Acluster-access-policy%2FAmazonEKSClusterAdminPolicy - "
            ),
            [pair(
                "eks:DisassociateAccessPolicy",
                "arn:aws:eks:us-east-2:123456789012:access-entry/access-eks/role/123456789012/hw-role/00000000-0000-0000-0000-000000000000"
            )]
        );
        assert_eq!(
            resources(
                "POST / - Action=RevokeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-1&SecurityGroupRuleId.1=sgr-a&SecurityGroupRuleId.2=sgr-b"
            ),
            [
                pair(
                    "ec2:RevokeSecurityGroupIngress",
                    "arn:aws:ec2:us-east-2:123456789012:security-group/sg-1"
                ),
                pair(
                    "ec2:RevokeSecurityGroupIngress",
                    "arn:aws:ec2:us-east-2:123456789012:security-group-rule/sgr-a"
                ),
                pair(
                    "ec2:RevokeSecurityGroupIngress",
                    "arn:aws:ec2:us-east-2:123456789012:security-group-rule/sgr-b"
                ),
            ]
        );
        let authorize = checks(
            "POST / - Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-1&IpPermissions.1.FromPort=80&TagSpecification.1.ResourceType=security-group-rule&TagSpecification.1.Tag.1.Key=owner&TagSpecification.1.Tag.1.Value=x",
            ACCOUNT,
            REGION,
        )
        .expect("known");
        assert_eq!(authorize.len(), 2);
        assert_eq!(authorize[1].action, "ec2:CreateTags");
        assert_eq!(
            authorize[1].context["ec2:createaction"],
            "AuthorizeSecurityGroupIngress"
        );
        assert_eq!(
            resources(
                "POST / - Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fadmin&RoleSessionName=s"
            ),
            [pair(
                "sts:AssumeRole",
                "arn:aws:iam::123456789012:role/admin"
            )]
        );
        assert_eq!(
            resources(
                "POST / - Action=GetInstanceProfile&Version=2010-05-08&InstanceProfileName=hw-profile"
            ),
            [pair(
                "iam:GetInstanceProfile",
                "arn:aws:iam::123456789012:instance-profile/hw-profile"
            )]
        );
        assert_eq!(
            resources(
                r#"POST / AmazonEC2ContainerRegistry_V20150921.DeleteRepository {"registryId":"123456789012","repositoryName":"c1/base","force":true}"#
            ),
            [pair(
                "ecr:DeleteRepository",
                "arn:aws:ecr:us-east-2:123456789012:repository/c1/base"
            )]
        );
        assert_eq!(
            resources(
                r#"POST / secretsmanager.GetSecretValue {"SecretId":"arn:aws:secretsmanager:us-east-2:123456789012:secret:key-AbCdEf"}"#
            ),
            [pair(
                "secretsmanager:GetSecretValue",
                "arn:aws:secretsmanager:us-east-2:123456789012:secret:key-AbCdEf"
            )]
        );
        assert_eq!(
            resources("POST /2015-03-31/functions/hopsworks-eks-Fn/invocations - {}"),
            [pair(
                "lambda:InvokeFunction",
                "arn:aws:lambda:us-east-2:123456789012:function:hopsworks-eks-Fn"
            )]
        );
        assert_eq!(
            checks(
                "POST / - Action=GetCallerIdentity&Version=2011-06-15",
                ACCOUNT,
                REGION
            ),
            Ok(vec![])
        );
        assert!(checks("DELETE /clusters/demo - ", ACCOUNT, REGION).is_err());
    }

    /// A pattern made from `value` by putting `*` over some runs and `?` over some characters.
    fn pattern_of(value: &str, cuts: &[(usize, usize, bool)]) -> String {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        for &(start, len, star) in cuts {
            if start < i || start > chars.len() {
                continue;
            }
            out.extend(&chars[i..start]);
            let end = (start + len).min(chars.len());
            if star {
                out.push('*');
                i = end;
            } else if start < chars.len() {
                out.push('?');
                i = start + 1;
            } else {
                i = start;
            }
        }
        out.extend(&chars[i.min(chars.len())..]);
        out
    }

    proptest! {
        #[test]
        fn a_literal_matches_only_itself(a in "[a-z/:-]{0,12}", b in "[a-z/:-]{0,12}") {
            prop_assert_eq!(glob(&a, &b), a == b);
        }

        #[test]
        fn wildcards_over_parts_of_a_value_still_match_it(
            value in "[a-z0-9/:-]{0,20}",
            mut cuts in proptest::collection::vec((0usize..21, 0usize..6, any::<bool>()), 0..4),
        ) {
            cuts.sort();
            let pattern = pattern_of(&value, &cuts);
            prop_assert!(glob(&pattern, &value), "{} should match {}", pattern, value);
        }

        #[test]
        fn a_value_one_character_longer_than_a_wildcard_free_pattern_fails(
            value in "[a-z]{0,12}",
            extra in "[a-z]",
            qs in 0usize..3,
        ) {
            // `?` matches exactly one character: n of them never match n + 1.
            let pattern = format!("{}{}", value, "?".repeat(qs));
            let longer = format!("{value}{}{extra}", "x".repeat(qs));
            prop_assert!(!glob(&pattern, &longer));
        }
    }
}
