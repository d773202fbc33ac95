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

//!
//! The engine in files, one job each: `conditions` (Conditions and Rules), `intrinsics` (Ref and
//! the `Fn::` functions), `order` (dependency order), `lifecycle` (Create and Delete), `update`
//! (Update, its cleanup and rollback), `native` (IAM, Logs, EC2 and EKS resources on moto),
//! `functions` (the Lambda functions and the custom resources they answer). `bench` is the bench
//! a stack deploys to ([`StackBench`]), `observe` what tests read of the account.

mod bench;
mod conditions;
mod functions;
mod intrinsics;
mod lifecycle;
mod native;
mod observe;
mod order;
mod update;

pub use bench::{CROSS_ACCOUNT_ROLE, StackBench, create_cross_account_role, demo_parameters};
pub use observe::{
    access_entries, ingress_rules, ingress_rules_of, log_retention, networks_and_clusters,
    observable_state,
};

use crate::aws::AwsBench;
use crate::faults::FaultProxy;
use crate::iam::{Denial, Iam};
use crate::lambda::LambdaFunction;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

pub const STACK_NAME: &str = "hopsworks-eks";

/// What a resource became.
#[derive(Debug, Clone)]
struct Deployed {
    kind: String,
    physical_id: String,
    attrs: Map<String, Value>,
    /// The resolved properties it was created with (a custom resource's Delete sends them).
    properties: Value,
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
    /// Every resource a Create or Update began to make, in order, kept after a rollback.
    attempted: Vec<String>,
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
            attempted: Vec::new(),
        };
        stack.evaluate_conditions()?;
        stack.check_rules()?;
        Ok(stack)
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

    /// The resolved properties a resource was created or last updated with.
    pub fn properties(&self, name: &str) -> Option<&Value> {
        self.deployed.get(name).map(|d| &d.properties)
    }

    /// A fragment of the template resolved on the stack's parameters and conditions (and what
    /// is deployed so far), as CloudFormation would resolve it now.
    pub fn resolved(&self, fragment: &Value) -> Result<Value, String> {
        self.resolve(fragment)
    }

    /// The template the stack deploys (expanded by the SAM translator).
    pub fn template(&self) -> &Value {
        &self.template
    }

    /// Every AWS call of the stack's functions that their role's policies denied.
    pub fn denied(&self) -> Vec<Denial> {
        self.iam.denied()
    }

    /// What updates' cleanups failed to delete: `(logical id, physical id, reason)`.
    pub fn leaked(&self) -> &[(String, String, String)] {
        &self.leaked
    }

    /// Every resource the stack began to make (logical ids, in order), those a rollback
    /// deleted included: what a failure stopped before.
    pub fn attempted(&self) -> &[String] {
        &self.attempted
    }
}

/// A boto3 script against the bench's moto: `client(name)` is a client of that service.
fn with_client(script: &str) -> String {
    format!(
        "import boto3, json, os\ndef client(name):\n    return boto3.client(name, endpoint_url=os.environ['BENCH_ENDPOINT'])\n{script}"
    )
}
