//! Deciding the change to aws-auth, without I/O: given what the server holds, what to write.

use super::map_roles::{self, RoleMapping};
use super::{NAME, NAMESPACE};
use crate::error::AccessError;
use custom_resource::{Owner, stack_name};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The annotation recording what each stack added: `{"<owner key>": Owned}` ([`Owner::key`];
/// stacks made by earlier releases wrote `<stack id>#<logical id>`, still recognised).
pub const OWNERS_ANNOTATION: &str = "hopsworks.ai/eks-stack-mappings";
/// Kubernetes refuses a ConfigMap whose data is larger than this.
const MAX_DATA_BYTES: usize = 1024 * 1024;
/// The most of the earlier mapRoles text the annotation keeps to give it back exactly (all of a
/// ConfigMap's annotations together may hold 256 KiB); past it, Delete removes our entry from the
/// text as it is.
const MAX_RESTORE_BYTES: usize = 32 * 1024;
const MAP_ROLES: &str = "mapRoles";

type Owners = BTreeMap<String, Owned>;

/// What one stack added to mapRoles, and how to give mapRoles back as it was before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    #[serde(flatten)]
    pub mapping: RoleMapping,
    /// Absent in annotations written by earlier releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
}

/// mapRoles as it was before the stack's entry, recorded against the text the stack wrote: the
/// written text's first `head` and last `tail` bytes with `was` between them. An append keeps the
/// whole earlier text (`was` is empty); a re-emitted flow-style list keeps little of it. Delete
/// uses it only while the text is still exactly what mapping that earlier text gives, so nothing
/// anyone changed since is lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub head: usize,
    pub tail: usize,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub was: String,
    /// There was no mapRoles key at all.
    #[serde(default, skip_serializing_if = "is_false")]
    pub absent: bool,
    /// There was no aws-auth at all: the stack created it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub created: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Restore {
    /// How to get `before` back from `written`; `None` when that would take too much room.
    fn between(before: &str, written: &str, absent: bool, created: bool) -> Option<Self> {
        let (b, w) = (before.as_bytes(), written.as_bytes());
        let mut head = b.iter().zip(w).take_while(|(x, y)| x == y).count();
        // The bytes before `head` are the same in both, so a boundary in one is one in the other.
        while !before.is_char_boundary(head) {
            head -= 1;
        }
        let room = b.len().min(w.len()) - head;
        let mut tail = b
            .iter()
            .rev()
            .zip(w.iter().rev())
            .take(room)
            .take_while(|(x, y)| x == y)
            .count();
        while !before.is_char_boundary(b.len() - tail) {
            tail -= 1;
        }
        let was = &before[head..b.len() - tail];
        (was.len() <= MAX_RESTORE_BYTES).then(|| Self {
            head,
            tail,
            was: was.to_owned(),
            absent,
            created,
        })
    }

    /// The earlier text, if `current` can hold what was recorded.
    fn apply(&self, current: &str) -> Option<String> {
        let end = current.len().checked_sub(self.tail)?;
        if self.head > end || !current.is_char_boundary(self.head) || !current.is_char_boundary(end)
        {
            return None;
        }
        Some(format!(
            "{}{}{}",
            &current[..self.head],
            self.was,
            &current[end..]
        ))
    }
}

impl Owned {
    /// How aws-auth stood before the stack: (mapRoles absent, ConfigMap absent).
    fn origin(&self) -> (bool, bool) {
        self.restore
            .as_ref()
            .map_or((false, false), |r| (r.absent, r.created))
    }

    /// `text` without this entry: the exact earlier text while nothing else changed, else the
    /// text with our entry cut out.
    fn removed_from(&self, text: &str) -> Result<String, AccessError> {
        let exact = self
            .restore
            .as_ref()
            .and_then(|r| r.apply(text))
            .filter(|earlier| {
                map_roles::append(earlier, &self.mapping).is_ok_and(|again| again == text)
            });
        match exact {
            Some(earlier) => Ok(earlier),
            None => map_roles::remove(text, &self.mapping).map_err(unparsable),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    NoChange(String),
    Write {
        config_map: Box<ConfigMap>,
        summary: String,
    },
    /// Delete aws-auth: the stack created it, and it holds nothing else now.
    Delete {
        resource_version: Option<String>,
        summary: String,
    },
}

/// Map `mapping` for `owner`: append it (moving the owner's earlier mapping, on Update), adopt an
/// identical mapping that was already there, refuse a different one (however its key or ARN is
/// spelled) or another stack's.
pub fn plan_map(
    current: Option<&ConfigMap>,
    owner: &Owner,
    mapping: &RoleMapping,
) -> Result<Plan, AccessError> {
    let owners = read_owners(current)?;
    if let Some((other, theirs)) = owners.iter().find(|(k, _)| !owner.matches(k)) {
        return Err(AccessError::ClusterTaken {
            owner: stack_name(other).to_owned(),
            role: theirs.mapping.rolearn.clone(),
        });
    }
    let mine = owners.values().next();
    let text = map_roles_text(current);
    let before = map_roles::parse(text).map_err(|problem| AccessError::Unparsable { problem })?;
    let mut steps = Vec::new();
    // mapRoles without this stack's earlier entry (on a move), and how aws-auth stood before
    // the stack came.
    let moved = mine.filter(|p| p.mapping != *mapping);
    let (base, (absent, created)) = match (mine, moved) {
        (Some(_), Some(prev)) => {
            steps.push(format!(
                "remove this stack's earlier entry for {}",
                prev.mapping.rolearn
            ));
            (prev.removed_from(text)?, prev.origin())
        }
        (Some(prev), None) => (text.to_owned(), prev.origin()),
        (None, _) => (
            text.to_owned(),
            (!has_map_roles(current), current.is_none()),
        ),
    };
    let now = map_roles::parse(&base).map_err(unparsable)?;
    let existing: Vec<&Map<String, Value>> =
        map_roles::entries_for(&now, &mapping.rolearn).collect();
    let (new_text, new_owned) = if existing.is_empty() {
        let new_text = map_roles::append(&base, mapping).map_err(unparsable)?;
        let restore = Restore::between(&base, &new_text, absent, created);
        steps.push(format!(
            "add {} as {} in {}",
            mapping.rolearn,
            mapping.username,
            mapping.groups.join(",")
        ));
        let owned = Owned {
            mapping: mapping.clone(),
            restore,
        };
        (Some(new_text), Some(owned))
    } else if existing.iter().any(|e| map_roles::same_mapping(e, mapping)) {
        if moved.is_some() || mine.is_none() {
            // There before this stack: adopted as it is, and never removed by it.
            steps.push(format!(
                "{} is already mapped: left as it is",
                mapping.rolearn
            ));
            (keep_or_drop(base, absent), None)
        } else {
            (Some(base), mine.cloned())
        }
    } else {
        let entry = existing[existing.len() - 1]; // the one the authenticator uses
        return Err(AccessError::MappedDifferently {
            role: mapping.rolearn.clone(),
            username: map_roles::field(entry, "username")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            groups: map_roles::field(entry, "groups")
                .map(Value::to_string)
                .unwrap_or_else(|| "[]".to_owned()),
        });
    };

    // Every entry that was there, other than this stack's earlier one, must still be there.
    let after = map_roles::parse(new_text.as_deref().unwrap_or_default()).map_err(unparsable)?;
    let mut kept = before;
    if let Some(prev) = moved
        && let Some(at) = kept
            .iter()
            .position(|e| map_roles::is_entry(e, &prev.mapping))
    {
        kept.remove(at);
    }
    if !contains_all(&after, kept.iter()) {
        return Err(unparsable(map_roles::MapRolesError::Verification));
    }
    let mut new_owners = owners.clone();
    if new_owned.as_ref() != mine {
        // (An unchanged record stays under the key it has, an earlier release's included.)
        new_owners.retain(|k, _| !owner.matches(k));
        if let Some(owned) = new_owned {
            new_owners.insert(owner.key(), owned);
        }
    }
    finish(current, new_text, &owners, new_owners, steps, false)
}

/// Remove what `owner` added; anything else (a mapping that was there before) stays. While nothing
/// else changed, aws-auth gets back the exact bytes it had before the stack.
pub fn plan_unmap(current: Option<&ConfigMap>, owner: &Owner) -> Result<Plan, AccessError> {
    let owners = read_owners(current)?;
    let Some(mine) = owners
        .iter()
        .find(|(k, _)| owner.matches(k))
        .map(|(_, v)| v)
    else {
        return Ok(Plan::NoChange(
            "this stack added nothing to aws-auth: nothing to remove".to_owned(),
        ));
    };
    let (absent, created) = mine.origin();
    let new_text = keep_or_drop(mine.removed_from(map_roles_text(current))?, absent);
    let mut new_owners = owners.clone();
    new_owners.retain(|k, _| !owner.matches(k));
    let steps = vec![format!(
        "remove {} (added by this stack)",
        mine.mapping.rolearn
    )];
    finish(current, new_text, &owners, new_owners, steps, created)
}

/// `None` (remove the key) for a text that is empty where there was no mapRoles key before.
fn keep_or_drop(text: String, absent: bool) -> Option<String> {
    (!(absent && text.trim().is_empty())).then_some(text)
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

/// The write that gives aws-auth `new_text` as mapRoles (`None`: no mapRoles key) and
/// `new_owners`; with `created`, deleting aws-auth when nothing else is left in it.
fn finish(
    current: Option<&ConfigMap>,
    new_text: Option<String>,
    owners: &Owners,
    new_owners: Owners,
    steps: Vec<String>,
    created: bool,
) -> Result<Plan, AccessError> {
    let summary = steps.join("; ");
    let old_text = current
        .and_then(|cm| cm.data.as_ref())
        .and_then(|d| d.get(MAP_ROLES));
    if old_text == new_text.as_ref() && new_owners == *owners {
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
    match new_text {
        Some(text) => {
            data.insert(MAP_ROLES.to_owned(), text);
        }
        None => {
            data.remove(MAP_ROLES);
        }
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
    if annotations.is_empty() {
        config_map.metadata.annotations = None; // as the API server shows none
    }
    if created && new_owners.is_empty() && is_empty(&config_map) {
        return Ok(Plan::Delete {
            resource_version: config_map.metadata.resource_version.clone(),
            summary: format!("{summary}; delete aws-auth, which this stack created"),
        });
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

/// Nothing in it: no data, no labels, no annotations (someone else's would say it is in use).
fn is_empty(cm: &ConfigMap) -> bool {
    cm.data.as_ref().is_none_or(BTreeMap::is_empty)
        && cm.binary_data.as_ref().is_none_or(BTreeMap::is_empty)
        && cm
            .metadata
            .annotations
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
        && cm.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty)
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
        .and_then(|d| d.get(MAP_ROLES))
        .map_or("", String::as_str)
}

fn has_map_roles(current: Option<&ConfigMap>) -> bool {
    current
        .and_then(|cm| cm.data.as_ref())
        .is_some_and(|d| d.contains_key(MAP_ROLES))
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
    use proptest::prelude::*;

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
        assert!(owners.contains("\"a/uuid/EksAccess\""), "{owners}");
        // mapping again is a no-op
        assert!(matches!(
            plan_map(Some(&after), &owner("a"), &m).unwrap(),
            Plan::NoChange(_)
        ));
        // and unmapping gives back the original data
        let removed = written(plan_unmap(Some(&after), &owner("a")).unwrap());
        assert_eq!(removed.data, config_map(NODES).data);
        assert_eq!(removed.metadata.annotations, None, "no annotation left");
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

    fn with_data(data: BTreeMap<String, String>) -> ConfigMap {
        let mut cm = config_map("");
        cm.data = Some(data);
        cm
    }

    #[derive(serde::Deserialize)]
    struct Sample {
        name: String,
        data: BTreeMap<String, String>,
    }

    fn corpus() -> Vec<Sample> {
        serde_saphyr::from_str(include_str!("../../testdata/aws-auth-maps.yaml"))
            .expect("the corpus parses")
    }

    #[test]
    fn delete_gives_back_the_exact_data_of_36_real_world_maps() {
        let m = mapping("hops", &["system:masters"]);
        let samples = corpus();
        assert_eq!(samples.len(), 36);
        for sample in samples {
            let cm = with_data(sample.data.clone());
            let mapped = map_then(&cm, &owner("a"), &m);
            let text = &mapped.data.as_ref().unwrap()["mapRoles"];
            let entries = map_roles::parse(text).unwrap();
            assert!(
                entries.last().is_some_and(|e| map_roles::is_entry(e, &m)),
                "{}: {text}",
                sample.name
            );
            let removed = written(plan_unmap(Some(&mapped), &owner("a")).unwrap());
            assert_eq!(removed.data.unwrap(), sample.data, "{}", sample.name);
        }
    }

    #[test]
    fn an_identical_entry_added_after_the_stack_stays_on_delete() {
        let m = mapping("hops", &["system:masters"]);
        let mapped = map_then(&config_map(NODES), &owner("a"), &m);
        let ours = mapped.data.as_ref().unwrap()["mapRoles"][NODES.len()..].to_owned();
        let eksctl = "- rolearn: arn:aws:iam::111122223333:role/hops\n  username: hopsworks\n  groups:\n  - system:masters\n";
        for theirs in [eksctl, ours.as_str()] {
            let mut edited = mapped.clone();
            edited
                .data
                .as_mut()
                .unwrap()
                .get_mut("mapRoles")
                .unwrap()
                .push_str(theirs);
            let removed = written(plan_unmap(Some(&edited), &owner("a")).unwrap());
            assert_eq!(
                removed.data.unwrap()["mapRoles"],
                format!("{NODES}{theirs}"),
                "only the stack's own entry goes"
            );
        }
    }

    #[test]
    fn owner_keys_of_earlier_releases_are_still_this_stacks() {
        let a = owner("a");
        let legacy = format!("{}#{}", a.stack_id, a.logical_id);
        // What an earlier release wrote: the same entry, the annotation keyed by the stack ARN,
        // no restore record.
        let mut cm = map_then(
            &config_map(NODES),
            &a,
            &mapping("hops", &["system:masters"]),
        );
        cm.metadata.annotations = Some(BTreeMap::from([(
            OWNERS_ANNOTATION.to_owned(),
            format!(
                r#"{{"{legacy}":{{"rolearn":"arn:aws:iam::111122223333:role/hops","username":"hopsworks","groups":["system:masters"]}}}}"#
            ),
        )]));
        let m = mapping("hops", &["system:masters"]);
        assert!(matches!(
            plan_map(Some(&cm), &a, &m).unwrap(),
            Plan::NoChange(_)
        ));
        let err = plan_map(Some(&cm), &owner("b"), &m)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Hopsworks stack a "), "{err}");
        let removed = written(plan_unmap(Some(&cm), &a).unwrap());
        assert_eq!(removed.data.unwrap()["mapRoles"], NODES);
        assert_eq!(removed.metadata.annotations, None, "no annotation left");
    }

    #[test]
    fn aws_auth_the_stack_created_is_deleted_when_nothing_else_is_in_it() {
        let m = mapping("hops", &["system:masters"]);
        let mut created = written(plan_map(None, &owner("a"), &m).unwrap());
        created.metadata.resource_version = Some("8".into());
        match plan_unmap(Some(&created), &owner("a")).unwrap() {
            Plan::Delete {
                resource_version, ..
            } => assert_eq!(resource_version.as_deref(), Some("8")),
            other => panic!("expected a delete, got {other:?}"),
        }
        // Someone added a node role meanwhile: the ConfigMap stays, with only theirs.
        let mut used = created.clone();
        used.data
            .as_mut()
            .unwrap()
            .get_mut("mapRoles")
            .unwrap()
            .push_str(NODES);
        let kept = written(plan_unmap(Some(&used), &owner("a")).unwrap());
        assert_eq!(kept.data.unwrap()["mapRoles"], NODES);
    }

    #[test]
    fn an_update_then_delete_gives_back_a_flow_style_list_exactly() {
        let flow = r#"[{"rolearn": "arn:aws:iam::111122223333:role/nodes", "username": "n", "groups": ["g"]}]"#;
        let cm = config_map(flow);
        let first = map_then(&cm, &owner("a"), &mapping("hops", &["system:masters"]));
        let moved = map_then(&first, &owner("a"), &mapping("hops2", &["system:masters"]));
        let removed = written(plan_unmap(Some(&moved), &owner("a")).unwrap());
        assert_eq!(removed.data, cm.data);
    }

    /// The role as the authenticator reads an entry: the key in any case, the ARN in any case.
    fn respelled(text: &str, flips: &[bool]) -> String {
        text.chars()
            .zip(flips.iter().cycle())
            .map(|(c, flip)| if *flip { c.to_ascii_uppercase() } else { c })
            .collect()
    }

    proptest! {
        #[test]
        fn another_spelling_of_the_role_is_refused_or_adopted_never_appended(
            key_flips in proptest::collection::vec(any::<bool>(), 7),
            arn_flips in proptest::collection::vec(any::<bool>(), 1..40),
            same in any::<bool>(),
        ) {
            let m = mapping("hops", &["system:masters"]);
            let key = respelled("rolearn", &key_flips);
            let arn = respelled(&m.rolearn, &arn_flips);
            let (user, group) = if same { ("hopsworks", "system:masters") } else { ("viewer", "view") };
            let text = format!("{NODES}- {key}: {arn}\n  username: {user}\n  groups:\n  - {group}\n");
            match plan_map(Some(&config_map(&text)), &owner("a"), &m) {
                Ok(Plan::NoChange(_)) => prop_assert!(same),
                Err(AccessError::MappedDifferently { username, .. }) => {
                    prop_assert!(!same);
                    prop_assert_eq!(username, "viewer");
                }
                other => prop_assert!(false, "{key} {arn}: {other:?}"),
            }
        }

        #[test]
        fn mapping_then_unmapping_gives_back_the_exact_data(
            roles in proptest::collection::vec("[a-z][a-z0-9-]{0,12}", 0..5),
            style in 0u8..4,
            final_newline in any::<bool>(),
            comment in any::<bool>(),
            absent in any::<bool>(),
        ) {
            let entries: Vec<String> = roles.iter().map(|r| format!("arn:aws:iam::1:role/{r}")).collect();
            let mut text = match style {
                0 => entries.iter().map(|a| format!("- rolearn: {a}\n  username: u\n  groups:\n  - g\n")).collect(),
                1 => entries.iter().map(|a| format!("  - groups: [g]\n    rolearn: {a}\n    username: u\n")).collect(),
                2 => format!("[{}]\n", entries.iter().map(|a| format!("{{rolearn: {a}, username: u, groups: [g]}}")).collect::<Vec<_>>().join(", ")),
                _ => format!("{}\n", serde_json::to_string(&entries.iter().map(|a| serde_json::json!({"rolearn": a, "username": "u", "groups": ["g"]})).collect::<Vec<_>>()).unwrap()),
            };
            if comment && style < 2 {
                text = format!("# team maps\n{text}");
            }
            if !final_newline {
                text.truncate(text.trim_end().len());
            }
            let mut data = BTreeMap::from([("mapUsers".to_owned(), "- userarn: u\n  username: u\n".to_owned())]);
            if !absent {
                data.insert("mapRoles".to_owned(), text.clone());
            }
            let cm = with_data(data.clone());
            let m = mapping("hops", &["system:masters"]);
            let mapped = map_then(&cm, &owner("a"), &m);
            let removed = written(plan_unmap(Some(&mapped), &owner("a")).unwrap());
            prop_assert_eq!(removed.data.unwrap(), data, "{:?}", text);
        }
    }
}
