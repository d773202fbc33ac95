//! Dependency order: every resource after what it refers to (Ref, GetAtt, Sub, DependsOn), as
//! CloudFormation creates them; deletion runs it backwards.

use super::Stack;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

impl Stack<'_> {
    /// Resources in creation order: every resource after what it refers to.
    pub(super) fn creation_order(&self) -> Result<Vec<String>, String> {
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
