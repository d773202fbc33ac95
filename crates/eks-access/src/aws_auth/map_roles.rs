//! `data.mapRoles` of the aws-auth ConfigMap: a YAML string holding a list of
//! `{rolearn, username, groups}`.
//!
//! Changes are surgical: our entry is appended as text in the list's own indentation and removed by
//! cutting exactly the text we appended, so every other entry, key, comment and byte stays as the
//! cluster's owner wrote it. Every result is parsed back and checked against the intended list;
//! only when text surgery cannot apply (a flow-style list, an entry edited by hand) is the list
//! re-emitted from its parsed form.

use serde_json::{Map, Value, json};

/// One mapping, as this stack writes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleMapping {
    pub rolearn: String,
    pub username: String,
    pub groups: Vec<String>,
}

impl RoleMapping {
    pub fn to_value(&self) -> Value {
        json!({"rolearn": self.rolearn, "username": self.username, "groups": self.groups})
    }

    /// Our entry as YAML text, each line indented by `indent` spaces. Scalars are JSON strings,
    /// which YAML reads as double-quoted scalars: no value can be misread (`:`, `{{`, `#`).
    fn render(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let q = |s: &str| Value::String(s.to_owned()).to_string();
        let mut text = format!(
            "{pad}- rolearn: {}\n{pad}  username: {}\n{pad}  groups:\n",
            q(&self.rolearn),
            q(&self.username)
        );
        for group in &self.groups {
            text.push_str(&format!("{pad}    - {}\n", q(group)));
        }
        text
    }
}

/// Why mapRoles cannot be read; nothing may be written over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapRolesError {
    #[error("mapRoles is not valid YAML: {0}")]
    Yaml(String),
    #[error("mapRoles must be a YAML list of {{rolearn, username, groups}}, but it is {0}")]
    NotAList(&'static str),
    #[error("entry {index} of mapRoles is {what}, not a mapping of rolearn, username and groups")]
    NotAMapping { index: usize, what: &'static str },
    /// Our own check of a result failed: a bug, never written.
    #[error("internal error: the edited mapRoles does not read back as intended")]
    Verification,
}

/// Parse mapRoles into its entries (an empty or absent value is an empty list).
pub fn parse(text: &str) -> Result<Vec<Map<String, Value>>, MapRolesError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_saphyr::from_str(text).map_err(|e| MapRolesError::Yaml(one_line(&e.to_string())))?;
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(MapRolesError::NotAList(kind(&other))),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::Object(map) => Ok(map),
            other => Err(MapRolesError::NotAMapping {
                index: index + 1,
                what: kind(&other),
            }),
        })
        .collect()
}

/// The value of `key` in `entry` as the authenticator reads it: keys match whatever their case
/// (`roleARN`, `RoleArn`), and of several spellings the last one counts.
pub fn field<'a>(entry: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    entry
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .next_back()
}

/// The entries that map `role_arn` for the authenticator: whatever the case of the `rolearn` key
/// or of the ARN (it compares role ARNs case-insensitively, as IAM names are).
pub fn entries_for<'a>(
    entries: &'a [Map<String, Value>],
    role_arn: &str,
) -> impl Iterator<Item = &'a Map<String, Value>> {
    entries.iter().filter(move |e| {
        e.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("rolearn")
                && v.as_str()
                    .is_some_and(|arn| arn.eq_ignore_ascii_case(role_arn))
        })
    })
}

/// Does `entry` map exactly as `mapping` does (same user name, same groups in any order)?
pub fn same_mapping(entry: &Map<String, Value>, mapping: &RoleMapping) -> bool {
    let username = field(entry, "username").and_then(Value::as_str);
    let mut groups: Vec<&str> = field(entry, "groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut wanted: Vec<&str> = mapping.groups.iter().map(String::as_str).collect();
    groups.sort_unstable();
    wanted.sort_unstable();
    username == Some(mapping.username.as_str()) && groups == wanted
}

/// Is `entry` exactly the entry this stack writes for `mapping` (same keys, same values)?
pub fn is_entry(entry: &Map<String, Value>, mapping: &RoleMapping) -> bool {
    mapping.to_value().as_object() == Some(entry)
}

/// `text` with `mapping` appended as the last entry.
pub fn append(text: &str, mapping: &RoleMapping) -> Result<String, MapRolesError> {
    let mut expected = parse(text)?;
    if let Value::Object(ours) = mapping.to_value() {
        expected.push(ours);
    }
    let surgical = block_indent(text).map(|indent| {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&mapping.render(indent));
        out
    });
    checked(surgical, &expected)
}

/// `text` without the one entry this stack added for `mapping`: the first entry equal to it (an
/// identical entry someone added later stays). Ours was appended when no such entry existed, so
/// any equal entry before it was inserted by hand above it, and removing either leaves the same
/// list.
pub fn remove(text: &str, mapping: &RoleMapping) -> Result<String, MapRolesError> {
    let before = parse(text)?;
    let Some(index) = before.iter().position(|e| is_entry(e, mapping)) else {
        return Ok(text.to_owned()); // not there (removed by hand): nothing to change
    };
    let mut expected = before;
    expected.remove(index);
    // Cut the first copy of the block we append, in whichever indentation it was written.
    let surgical = (0..=8).find_map(|indent| {
        let block = mapping.render(indent);
        let at = text
            .match_indices(&block)
            .map(|(at, _)| at)
            .find(|&at| at == 0 || text[..at].ends_with('\n'))?;
        Some(format!("{}{}", &text[..at], &text[at + block.len()..]))
    });
    checked(surgical, &expected)
}

/// Use the surgical result if it reads back as `expected`; otherwise re-emit `expected`.
fn checked(
    surgical: Option<String>,
    expected: &[Map<String, Value>],
) -> Result<String, MapRolesError> {
    if let Some(text) = surgical
        && parse(&text).as_deref() == Ok(expected)
    {
        return Ok(text);
    }
    tracing::warn!("mapRoles cannot be edited in place; re-emitting it (comments are not kept)");
    let text = emit(expected);
    if parse(&text).as_deref() == Ok(expected) {
        Ok(text)
    } else {
        Err(MapRolesError::Verification)
    }
}

/// The indentation of the list's items, when the list is a block sequence text can be appended
/// to (or empty); `None` for flow style (`[...]`) or anything else.
fn block_indent(text: &str) -> Option<usize> {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    match first {
        None => Some(0),
        Some(line) => {
            let trimmed = line.trim_start();
            (trimmed.starts_with("- ") || trimmed == "-").then(|| line.len() - trimmed.len())
        }
    }
}

/// A block-style list of entries: keys as written, scalars and nested values as JSON (valid YAML).
pub fn emit(entries: &[Map<String, Value>]) -> String {
    let mut out = String::new();
    for entry in entries {
        let mut first = true;
        for (key, value) in entry {
            let lead = if first { "- " } else { "  " };
            first = false;
            let key = Value::String(key.clone()).to_string();
            match value {
                Value::Array(items) if !items.is_empty() => {
                    out.push_str(&format!("{lead}{key}:\n"));
                    for item in items {
                        out.push_str(&format!("    - {item}\n"));
                    }
                }
                other => out.push_str(&format!("{lead}{key}: {other}\n")),
            }
        }
        if first {
            out.push_str("- {}\n");
        }
    }
    out
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EKSCTL: &str = "- groups:\n  - system:bootstrappers\n  - system:nodes\n  rolearn: arn:aws:iam::111122223333:role/eksctl-demo-nodegroup-NodeInstanceRole-1\n  username: system:node:{{EC2PrivateDNSName}}\n";

    fn hopsworks() -> RoleMapping {
        RoleMapping {
            rolearn: "arn:aws:iam::111122223333:role/hopsworks".into(),
            username: "hopsworks".into(),
            groups: vec!["system:masters".into()],
        }
    }

    #[test]
    fn appends_after_node_roles_keeping_their_text() {
        let after = append(EKSCTL, &hopsworks()).unwrap();
        assert!(after.starts_with(EKSCTL));
        let entries = parse(&after).unwrap();
        assert_eq!(entries.len(), 2);
        assert!(same_mapping(&entries[1], &hopsworks()));
        assert_eq!(entries[0]["username"], "system:node:{{EC2PrivateDNSName}}");
    }

    #[test]
    fn add_then_remove_gives_back_the_same_bytes() {
        let commented = format!("# managed by the platform team\n{EKSCTL}# end\n");
        let indented: String = EKSCTL.lines().map(|l| format!("  {l}\n")).collect();
        for original in [EKSCTL.to_owned(), commented, indented, String::new()] {
            let added = append(&original, &hopsworks()).unwrap();
            assert_eq!(remove(&added, &hopsworks()).unwrap(), original);
        }
    }

    #[test]
    fn flow_style_lists_are_re_emitted_with_every_entry() {
        let flow = r#"[{"rolearn": "arn:aws:iam::1:role/a", "username": "a", "groups": ["g"]}]"#;
        let added = append(flow, &hopsworks()).unwrap();
        let entries = parse(&added).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["rolearn"], "arn:aws:iam::1:role/a");
        let removed = remove(&added, &hopsworks()).unwrap();
        assert_eq!(parse(&removed).unwrap(), parse(flow).unwrap());
    }

    #[test]
    fn malformed_maps_are_refused_with_the_problem() {
        let bad = "- groups:\n  - system:nodes\n rolearn: x\n";
        let err = append(bad, &hopsworks()).unwrap_err().to_string();
        assert!(err.starts_with("mapRoles is not valid YAML"), "{err}");
        assert_eq!(
            append("rolearn: x", &hopsworks()).unwrap_err(),
            MapRolesError::NotAList("a mapping")
        );
        assert_eq!(
            append("- just a string", &hopsworks()).unwrap_err(),
            MapRolesError::NotAMapping {
                index: 1,
                what: "a string"
            }
        );
    }

    #[test]
    fn same_mapping_ignores_group_order() {
        let entry = parse("- rolearn: r\n  username: hopsworks\n  groups: [b, a]\n").unwrap();
        let mapping = RoleMapping {
            rolearn: "r".into(),
            username: "hopsworks".into(),
            groups: vec!["a".into(), "b".into()],
        };
        assert!(same_mapping(&entry[0], &mapping));
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:{}._@/-]{1,24}"
    }

    fn arb_entry() -> impl Strategy<Value = Map<String, Value>> {
        (
            arb_name(),
            arb_name(),
            proptest::collection::vec(arb_name(), 0..4),
            proptest::option::of(arb_name()),
            any::<bool>(),
        )
            .prop_map(|(role, user, groups, extra, user_kind)| {
                let mut m = Map::new();
                let key = if user_kind { "userarn" } else { "rolearn" };
                m.insert(
                    key.into(),
                    Value::String(format!("arn:aws:iam::1:role/{role}")),
                );
                m.insert("username".into(), Value::String(user));
                m.insert(
                    "groups".into(),
                    Value::Array(groups.into_iter().map(Value::String).collect()),
                );
                if let Some(extra) = extra {
                    m.insert("x-note".into(), Value::String(extra));
                }
                m
            })
    }

    /// The same list written three ways: our emitter, eksctl's plain style, and JSON flow style,
    /// optionally indented and commented.
    fn render(entries: &[Map<String, Value>], style: u8, indent: usize, comment: bool) -> String {
        let body = match style {
            0 => emit(entries),
            1 => {
                let mut s = String::new();
                for e in entries {
                    let mut first = true;
                    for (k, v) in e {
                        let lead = if first { "- " } else { "  " };
                        first = false;
                        match v {
                            Value::Array(items) => {
                                s.push_str(&format!("{lead}{k}:"));
                                if items.is_empty() {
                                    s.push_str(" []\n");
                                } else {
                                    s.push('\n');
                                    for i in items {
                                        s.push_str(&format!("  - {}\n", i));
                                    }
                                }
                            }
                            v => s.push_str(&format!("{lead}{k}: {v}\n")),
                        }
                    }
                }
                s
            }
            _ => format!(
                "{}\n",
                Value::Array(entries.iter().cloned().map(Value::Object).collect())
            ),
        };
        let pad = " ".repeat(indent);
        let mut text: String = body.lines().map(|l| format!("{pad}{l}\n")).collect();
        if comment {
            text = format!("# hand-written\n{text}");
        }
        text
    }

    proptest! {
        #[test]
        fn adding_and_removing_ours_keeps_every_other_entry(
            entries in proptest::collection::vec(arb_entry(), 0..8),
            style in 0u8..3,
            indent in 0usize..4,
            comment in any::<bool>(),
        ) {
            let original = render(&entries, style, indent, comment);
            let before = parse(&original).expect("the rendered list parses");
            prop_assert_eq!(&before, &entries);
            let added = append(&original, &hopsworks()).unwrap();
            let after = parse(&added).unwrap();
            prop_assert_eq!(&after[..before.len()], &before[..]);
            prop_assert!(same_mapping(&after[before.len()], &hopsworks()));
            let removed = remove(&added, &hopsworks()).unwrap();
            prop_assert_eq!(parse(&removed).unwrap(), before);
            if style != 2 {
                // block lists: byte for byte
                prop_assert_eq!(removed, original);
            }
        }
    }
}
