//! Deciding the change to aws-auth, without I/O: given what the server holds, what to write.

use super::map_roles::{self, RoleMapping};
use super::{NAME, NAMESPACE};
use crate::error::AccessError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The annotation recording what each stack added: `{"<stack id>#<logical id>": mapping}`.
pub const OWNERS_ANNOTATION: &str = "hopsworks.ai/eks-stack-mappings";
/// Kubernetes refuses a ConfigMap whose data is larger than this.
const MAX_DATA_BYTES: usize = 1024 * 1024;

type Owners = BTreeMap<String, RoleMapping>;

/// Who is asking: one custom resource of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack_id: String,
    pub logical_id: String,
}

impl Owner {
    pub fn key(&self) -> String {
        format!("{}#{}", self.stack_id, self.logical_id)
    }
}

/// The stack name in an owner key (`arn:…:stack/NAME/uuid#Logical`), for messages.
fn stack_name(key: &str) -> &str {
    let stack = key.split('#').next().unwrap_or(key);
    stack.split('/').nth(1).unwrap_or(stack)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    NoChange(String),
    Write {
        config_map: Box<ConfigMap>,
        summary: String,
    },
}

/// Map `mapping` for `owner`: append it (moving the owner's earlier mapping, on Update), adopt an
/// identical mapping that was already there, refuse a different one or another stack's.
pub fn plan_map(
    current: Option<&ConfigMap>,
    owner: &Owner,
    mapping: &RoleMapping,
) -> Result<Plan, AccessError> {
    let owners = read_owners(current)?;
    let key = owner.key();
    if let Some((other, theirs)) = owners.iter().find(|(k, _)| **k != key) {
        return Err(AccessError::ClusterTaken {
            owner: stack_name(other).to_owned(),
            role: theirs.rolearn.clone(),
        });
    }
    let text = map_roles_text(current);
    let before = map_roles::parse(text).map_err(|problem| AccessError::Unparsable { problem })?;
    let previous = owners.get(&key);
    let mut new_owners = owners.clone();
    let mut new_text = text.to_owned();
    let mut steps = Vec::new();

    if let Some(prev) = previous.filter(|p| *p != mapping) {
        new_text = map_roles::remove(&new_text, prev).map_err(unparsable)?;
        new_owners.remove(&key);
        steps.push(format!(
            "remove this stack's earlier entry for {}",
            prev.rolearn
        ));
    }
    let now = map_roles::parse(&new_text).map_err(unparsable)?;
    let existing: Vec<&Map<String, Value>> =
        map_roles::entries_for(&now, &mapping.rolearn).collect();
    if existing.is_empty() {
        new_text = map_roles::append(&new_text, mapping).map_err(unparsable)?;
        new_owners.insert(key.clone(), mapping.clone());
        steps.push(format!(
            "add {} as {} in {}",
            mapping.rolearn,
            mapping.username,
            mapping.groups.join(",")
        ));
    } else if existing.iter().any(|e| map_roles::same_mapping(e, mapping)) {
        if previous != Some(mapping) {
            // There before this stack: adopted as it is, and never removed by it.
            steps.push(format!(
                "{} is already mapped: left as it is",
                mapping.rolearn
            ));
        }
    } else {
        let entry = existing[0];
        return Err(AccessError::MappedDifferently {
            role: mapping.rolearn.clone(),
            username: entry
                .get("username")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            groups: entry
                .get("groups")
                .map(Value::to_string)
                .unwrap_or_else(|| "[]".to_owned()),
        });
    }

    // Every entry that was there, other than this stack's earlier one, must still be there.
    let after = map_roles::parse(&new_text).map_err(unparsable)?;
    let kept = before.iter().filter(|e| previous.is_none_or(|p| !is(e, p)));
    if !contains_all(&after, kept) {
        return Err(unparsable(map_roles::MapRolesError::Verification));
    }
    finish(current, text, new_text, &owners, new_owners, steps)
}

/// Remove what `owner` added; anything else (a mapping that was there before) stays.
pub fn plan_unmap(current: Option<&ConfigMap>, owner: &Owner) -> Result<Plan, AccessError> {
    let owners = read_owners(current)?;
    let key = owner.key();
    let Some(mine) = owners.get(&key) else {
        return Ok(Plan::NoChange(
            "this stack added nothing to aws-auth: nothing to remove".to_owned(),
        ));
    };
    let text = map_roles_text(current);
    let new_text = map_roles::remove(text, mine).map_err(unparsable)?;
    let mut new_owners = owners.clone();
    new_owners.remove(&key);
    let steps = vec![format!("remove {} (added by this stack)", mine.rolearn)];
    finish(current, text, new_text, &owners, new_owners, steps)
}

/// Does `haystack` hold every entry of `needles` (as a multiset)? Linear: aws-auth maps can hold
/// thousands of entries.
fn contains_all<'a>(
    haystack: &[Map<String, Value>],
    needles: impl Iterator<Item = &'a Map<String, Value>>,
) -> bool {
    let key = |e: &Map<String, Value>| serde_json::to_string(e).unwrap_or_default();
    let mut counts = std::collections::HashMap::new();
    for entry in haystack {
        *counts.entry(key(entry)).or_insert(0usize) += 1;
    }
    needles.into_iter().all(|e| match counts.get_mut(&key(e)) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    })
}

fn is(entry: &Map<String, Value>, mapping: &RoleMapping) -> bool {
    entry.get("rolearn").and_then(Value::as_str) == Some(mapping.rolearn.as_str())
        && map_roles::same_mapping(entry, mapping)
}

fn finish(
    current: Option<&ConfigMap>,
    text: &str,
    new_text: String,
    owners: &Owners,
    new_owners: Owners,
    steps: Vec<String>,
) -> Result<Plan, AccessError> {
    let summary = steps.join("; ");
    if new_text == text && new_owners == *owners {
        return Ok(Plan::NoChange(if summary.is_empty() {
            "already mapped by this stack: nothing to do".to_owned()
        } else {
            summary
        }));
    }
    let mut config_map = current.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(NAME.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    // Keep the server's bookkeeping out of the write; resourceVersion stays for the 409 check.
    config_map.metadata.managed_fields = None;
    let data = config_map.data.get_or_insert_with(BTreeMap::new);
    if new_text.is_empty() && !data.contains_key("mapRoles") {
        // nothing to add where there was nothing
    } else {
        data.insert("mapRoles".to_owned(), new_text);
    }
    let annotations = config_map
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    if new_owners.is_empty() {
        annotations.remove(OWNERS_ANNOTATION);
    } else {
        annotations.insert(
            OWNERS_ANNOTATION.to_owned(),
            serde_json::to_string(&new_owners).unwrap_or_default(),
        );
    }
    let bytes = data_bytes(&config_map);
    if bytes > MAX_DATA_BYTES {
        return Err(AccessError::TooLarge { bytes });
    }
    Ok(Plan::Write {
        config_map: Box::new(config_map),
        summary,
    })
}

fn read_owners(current: Option<&ConfigMap>) -> Result<Owners, AccessError> {
    let Some(raw) = current
        .and_then(|cm| cm.metadata.annotations.as_ref())
        .and_then(|a| a.get(OWNERS_ANNOTATION))
    else {
        return Ok(Owners::new());
    };
    serde_json::from_str(raw).map_err(|_| AccessError::BadOwnership {
        annotation: OWNERS_ANNOTATION,
    })
}

fn map_roles_text(current: Option<&ConfigMap>) -> &str {
    current
        .and_then(|cm| cm.data.as_ref())
        .and_then(|d| d.get("mapRoles"))
        .map_or("", String::as_str)
}

fn data_bytes(cm: &ConfigMap) -> usize {
    let text: usize = cm.data.iter().flatten().map(|(_, v)| v.len()).sum();
    let binary: usize = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.len())
        .sum();
    text + binary
}

fn unparsable(problem: map_roles::MapRolesError) -> AccessError {
    AccessError::Unparsable { problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "- rolearn: arn:aws:iam::111122223333:role/nodes\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";

    fn owner(stack: &str) -> Owner {
        Owner {
            stack_id: format!("arn:aws:cloudformation:us-east-2:111122223333:stack/{stack}/uuid"),
            logical_id: "EksAccess".into(),
        }
    }

    fn mapping(role: &str, groups: &[&str]) -> RoleMapping {
        RoleMapping {
            rolearn: format!("arn:aws:iam::111122223333:role/{role}"),
            username: "hopsworks".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn config_map(map_roles: &str) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(NAME.into());
        cm.metadata.resource_version = Some("7".into());
        let mut data = BTreeMap::new();
        data.insert("mapRoles".to_owned(), map_roles.to_owned());
        data.insert(
            "mapUsers".to_owned(),
            "- userarn: u\n  username: u\n".to_owned(),
        );
        cm.data = Some(data);
        cm
    }

    fn written(plan: Plan) -> ConfigMap {
        match plan {
            Plan::Write { config_map, .. } => *config_map,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn map_then(cm: &ConfigMap, who: &Owner, m: &RoleMapping) -> ConfigMap {
        written(plan_map(Some(cm), who, m).unwrap())
    }

    #[test]
    fn adds_ours_keeps_node_roles_and_other_keys_and_records_ownership() {
        let m = mapping("hops", &["system:masters"]);
        let after = map_then(&config_map(NODES), &owner("a"), &m);
        let data = after.data.as_ref().unwrap();
        assert!(data["mapRoles"].starts_with(NODES));
        assert_eq!(data["mapUsers"], "- userarn: u\n  username: u\n");
        assert_eq!(after.metadata.resource_version.as_deref(), Some("7"));
        let owners = &after.metadata.annotations.as_ref().unwrap()[OWNERS_ANNOTATION];
        assert!(owners.contains("stack/a/uuid#EksAccess"));
        // mapping again is a no-op
        assert!(matches!(
            plan_map(Some(&after), &owner("a"), &m).unwrap(),
            Plan::NoChange(_)
        ));
        // and unmapping gives back the original data
        let removed = written(plan_unmap(Some(&after), &owner("a")).unwrap());
        assert_eq!(removed.data, config_map(NODES).data);
        assert!(
            !removed
                .metadata
                .annotations
                .unwrap()
                .contains_key(OWNERS_ANNOTATION)
        );
    }

    #[test]
    fn a_mapping_that_was_there_before_is_adopted_and_survives_delete() {
        let m = mapping("nodes", &["system:bootstrappers", "system:nodes"]);
        let m = RoleMapping {
            username: "system:node:{{EC2PrivateDNSName}}".into(),
            ..m
        };
        let cm = config_map(NODES);
        assert!(matches!(
            plan_map(Some(&cm), &owner("a"), &m).unwrap(),
            Plan::NoChange(_)
        ));
        assert!(matches!(
            plan_unmap(Some(&cm), &owner("a")).unwrap(),
            Plan::NoChange(_)
        ));
    }

    #[test]
    fn a_different_existing_mapping_of_the_role_is_refused() {
        let m = mapping("nodes", &["system:masters"]);
        let err = plan_map(Some(&config_map(NODES)), &owner("a"), &m).unwrap_err();
        assert!(
            matches!(err, AccessError::MappedDifferently { .. }),
            "{err}"
        );
    }

    #[test]
    fn another_stacks_mapping_blocks_a_second_hopsworks_cluster() {
        let first = map_then(
            &config_map(NODES),
            &owner("first"),
            &mapping("hops", &["system:masters"]),
        );
        let err = plan_map(
            Some(&first),
            &owner("second"),
            &mapping("other", &["system:masters"]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Hopsworks stack first"), "{err}");
    }

    #[test]
    fn update_moves_the_entry_without_touching_others() {
        let cm = map_then(
            &config_map(NODES),
            &owner("a"),
            &mapping("hops", &["system:masters"]),
        );
        let moved = map_then(&cm, &owner("a"), &mapping("hops2", &["system:masters"]));
        let text = &moved.data.as_ref().unwrap()["mapRoles"];
        assert!(text.starts_with(NODES));
        assert!(!text.contains("role/hops\""), "{text}");
        assert!(text.contains("role/hops2"));
        let removed = written(plan_unmap(Some(&moved), &owner("a")).unwrap());
        assert_eq!(removed.data.unwrap()["mapRoles"], NODES);
    }

    #[test]
    fn a_missing_config_map_is_created_with_only_our_entry() {
        let cm =
            written(plan_map(None, &owner("a"), &mapping("hops", &["system:masters"])).unwrap());
        assert_eq!(cm.metadata.name.as_deref(), Some(NAME));
        assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE));
        let entries = map_roles::parse(&cm.data.unwrap()["mapRoles"]).unwrap();
        assert_eq!(entries.len(), 1);
    }

    #[test]
    fn unparsable_map_roles_is_refused() {
        let cm = config_map("- rolearn: a\n  groups: [\n");
        let err = plan_map(Some(&cm), &owner("a"), &mapping("hops", &["g"])).unwrap_err();
        assert!(matches!(err, AccessError::Unparsable { .. }), "{err}");
    }

    #[test]
    fn growing_past_one_mib_is_refused() {
        let mut big = String::new();
        for i in 0.. {
            let entry = format!(
                "- rolearn: arn:aws:iam::111122223333:role/r{i:05}\n  username: u\n  groups: [g]\n"
            );
            if big.len() + entry.len() > MAX_DATA_BYTES - 60 {
                break;
            }
            big.push_str(&entry);
        }
        let err = plan_map(
            Some(&config_map(&big)),
            &owner("a"),
            &mapping("hops", &["system:masters"]),
        )
        .unwrap_err();
        assert!(matches!(err, AccessError::TooLarge { .. }), "{err}");
    }
}
