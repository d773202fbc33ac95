//! Who owns what: one key, one tag name for everything any resource of this project makes.
//!
//! A Delete cleans up by ownership, not by the physical id it is given: the id may be the
//! failed-create marker (the answer was lost after the side effect) or stale. So every resource
//! marks what it makes with [`OWNER_TAG`] = [`Owner::key`], and its Delete removes exactly what
//! that key owns.

use crate::request::Request;

/// The tag (or annotation) name on everything a resource of this stack creates.
pub const OWNER_TAG: &str = "hopsworks.ai/eks-stack";

/// AWS tag values are at most 256 characters.
const MAX_TAG_VALUE: usize = 256;

/// One custom resource of one stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack_id: String,
    pub logical_id: String,
}

impl Owner {
    pub fn of(request: &Request) -> Self {
        Self {
            stack_id: request.envelope.stack_id.clone(),
            logical_id: request.envelope.logical_resource_id.clone(),
        }
    }

    /// `<stack name>/<stack uuid>/<logical id>`: unique per resource (the uuid is), readable, and
    /// a value every AWS tagging API accepts (letters, digits and `+ - = . _ : / @`, at most 256
    /// characters: a long stack name is shortened first, the uuid never).
    pub fn key(&self) -> String {
        let (name, uuid) = stack_parts(&self.stack_id);
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "+-=._:@".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect()
        };
        let uuid = clean(uuid);
        // Room for the logical id (then the name) after the uuid and two slashes.
        let room = MAX_TAG_VALUE.saturating_sub(uuid.len() + 2);
        let logical: String = clean(&self.logical_id).chars().take(room).collect();
        let name: String = clean(name).chars().take(room - logical.len()).collect();
        format!("{name}/{uuid}/{logical}")
    }

    /// Whether a recorded owner value is this resource's: [`Owner::key`], or the form earlier
    /// releases wrote (`<stack id>#<logical id>`), so stacks made by them still clean up.
    pub fn matches(&self, value: &str) -> bool {
        value == self.key() || value == format!("{}#{}", self.stack_id, self.logical_id)
    }

    /// Whether a recorded owner value belongs to this stack (any of its resources).
    pub fn same_stack(&self, value: &str) -> bool {
        let (_, uuid) = stack_parts(&self.stack_id);
        owner_stack(value).1 == uuid
    }
}

/// The stack name in a recorded owner value, for messages naming who holds something.
pub fn stack_name(value: &str) -> &str {
    owner_stack(value).0
}

/// (name, uuid) of a recorded owner value, either form.
fn owner_stack(value: &str) -> (&str, &str) {
    match value.split_once('#') {
        Some((stack_id, _)) => stack_parts(stack_id),
        None => {
            let mut parts = value.rsplitn(3, '/');
            let _logical = parts.next();
            let uuid = parts.next().unwrap_or_default();
            (parts.next().unwrap_or(value), uuid)
        }
    }
}

/// (name, uuid) of `arn:…:stack/<name>/<uuid>`; anything else is all name.
fn stack_parts(stack_id: &str) -> (&str, &str) {
    let resource = stack_id.rsplit(':').next().unwrap_or(stack_id);
    match resource
        .strip_prefix("stack/")
        .and_then(|r| r.split_once('/'))
    {
        Some((name, uuid)) => (name, uuid),
        None => (stack_id, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STACK: &str = "arn:aws:cloudformation:us-east-2:111122223333:stack/hops/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f";

    fn owner(stack_id: &str, logical_id: &str) -> Owner {
        Owner {
            stack_id: stack_id.into(),
            logical_id: logical_id.into(),
        }
    }

    #[test]
    fn the_key_is_name_uuid_and_logical_id() {
        assert_eq!(
            owner(STACK, "EksAccess").key(),
            "hops/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f/EksAccess"
        );
    }

    #[test]
    fn the_key_matches_itself_and_the_earlier_form_only() {
        let o = owner(STACK, "EksAccess");
        assert!(o.matches(&o.key()));
        assert!(o.matches(&format!("{STACK}#EksAccess")));
        assert!(!o.matches(&owner(STACK, "Other").key()));
        assert!(!o.matches(&format!("{STACK}#Other")));
    }

    #[test]
    fn stack_names_read_from_both_forms() {
        assert_eq!(stack_name(&owner(STACK, "EksAccess").key()), "hops");
        assert_eq!(stack_name(&format!("{STACK}#EksAccess")), "hops");
        let o = owner(STACK, "EksAccess");
        assert!(o.same_stack(&owner(STACK, "Other").key()));
        assert!(o.same_stack(&format!("{STACK}#Other")));
        let elsewhere = STACK.replace("6f5c4c80", "00000000");
        assert!(!o.same_stack(&owner(&elsewhere, "EksAccess").key()));
    }

    proptest! {
        /// Any stack name and logical id CloudFormation allows gives a value AWS tagging accepts.
        #[test]
        fn keys_are_valid_tag_values(name in "[A-Za-z][-A-Za-z0-9]{0,127}", logical in "[A-Za-z0-9]{1,255}") {
            let stack = format!("arn:aws-us-gov:cloudformation:us-gov-west-1:111122223333:stack/{name}/6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f");
            let key = owner(&stack, &logical).key();
            prop_assert!(key.len() <= MAX_TAG_VALUE, "{} chars", key.len());
            prop_assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || "+-=._:/@ ".contains(c)));
            prop_assert!(key.contains("6f5c4c80-ab12-11ef-9b1a-0a1b2c3d4e5f"));
        }
    }
}
