//! Typed access to `ResourceProperties`.
//!
//! CloudFormation sends every scalar property as a string (`"5"`, `"true"`) and lists as lists of
//! strings. These helpers parse them and, on bad input, say which property is wrong, what was given
//! and what is accepted, so the Reason in the console tells the user how to fix the template.

use serde_json::{Map, Value};
use std::fmt::Display;
use std::str::FromStr;

/// Why a property could not be read. The message is written for the person editing the template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("property {name} is required: {hint}")]
    Missing { name: String, hint: String },
    #[error("property {name} must be {expected}, got {got}")]
    Invalid {
        name: String,
        expected: String,
        got: String,
    },
}

impl PropertyError {
    pub fn invalid(name: &str, expected: impl Display, got: impl Display) -> Self {
        Self::Invalid {
            name: name.to_owned(),
            expected: expected.to_string(),
            got: got.to_string(),
        }
    }
}

/// An enum that can be chosen by a property. `VALUES` lists the spellings a user may write.
pub trait PropertyEnum: Sized + Copy + 'static {
    const VALUES: &'static [(&'static str, Self)];
}

/// The resource's properties, as CloudFormation sent them, without the two that are CloudFormation's
/// own (`ServiceToken`, `ServiceTimeout`), so that changing those is never mistaken for a change of
/// the resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties(Map<String, Value>);

impl Properties {
    pub fn new(map: Map<String, Value>) -> Self {
        let mut map = map;
        map.remove("ServiceToken");
        map.remove("ServiceTimeout");
        Self(map)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// A string property; absent or empty counts as not set.
    pub fn optional_str(&self, name: &str) -> Result<Option<&str>, PropertyError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(other) => Err(PropertyError::invalid(name, "a string", describe(other))),
        }
    }

    /// A string property that must be set; `hint` says what to put there.
    pub fn required_str(&self, name: &str, hint: &str) -> Result<&str, PropertyError> {
        self.optional_str(name)?
            .ok_or_else(|| PropertyError::Missing {
                name: name.to_owned(),
                hint: hint.to_owned(),
            })
    }

    /// `"true"` / `"false"` (any case), or a JSON bool; `default` when not set.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, PropertyError> {
        match self.0.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => match self.optional_str(name)? {
                None => Ok(default),
                Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
                Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
                Some(s) => Err(PropertyError::invalid(
                    name,
                    "\"true\" or \"false\"",
                    quote(s),
                )),
            },
        }
    }

    /// A whole number within `min..=max`; `default` when not set.
    pub fn int<T>(&self, name: &str, default: T, min: T, max: T) -> Result<T, PropertyError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let expected = || format!("a whole number from {min} to {max}");
        let text = match self.0.get(name) {
            Some(Value::Number(n)) => n.to_string(),
            _ => match self.optional_str(name)? {
                None => return Ok(default),
                Some(s) => s.to_owned(),
            },
        };
        match text.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(PropertyError::invalid(name, expected(), quote(&text))),
        }
    }

    /// A list of strings: a JSON list, or one comma-separated string (what `!Join` or a
    /// `CommaDelimitedList` parameter gives). Empty items are dropped; not set is an empty list.
    pub fn list(&self, name: &str) -> Result<Vec<String>, PropertyError> {
        let items: Vec<String> = match self.0.get(name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.split(',').map(str::to_owned).collect(),
            Some(Value::Array(values)) => values
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(PropertyError::invalid(
                        name,
                        "a list of strings",
                        format!("a list holding {}", describe(other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(PropertyError::invalid(
                    name,
                    "a list of strings",
                    describe(other),
                ));
            }
        };
        Ok(items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }

    /// Tags given as `KEY=VALUE` items of a [`list`](Self::list) (the stack's `Tags` parameter),
    /// in order. Refused: an item without `=` or with an empty key, a key AWS reserves (`aws:`),
    /// and this project's owner tag (its Delete finds what it made by that tag alone).
    pub fn tags(&self, name: &str) -> Result<Vec<(String, String)>, PropertyError> {
        self.list(name)?
            .into_iter()
            .map(|item| match item.split_once('=') {
                Some((key, _)) if key.trim().to_ascii_lowercase().starts_with("aws:") => {
                    Err(PropertyError::invalid(
                        name,
                        "tag keys that do not start with aws:",
                        quote(&item),
                    ))
                }
                Some((key, _)) if key.trim() == crate::OWNER_TAG => Err(PropertyError::invalid(
                    name,
                    format!(
                        "tags other than {}, which the stack sets itself",
                        crate::OWNER_TAG
                    ),
                    quote(&item),
                )),
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(PropertyError::invalid(
                    name,
                    "KEY=VALUE for each tag",
                    quote(&item),
                )),
            })
            .collect()
    }

    /// One of `T::VALUES` (exact spelling, ASCII case ignored); `default` when not set.
    pub fn enumerated<T: PropertyEnum>(&self, name: &str, default: T) -> Result<T, PropertyError> {
        let Some(given) = self.optional_str(name)? else {
            return Ok(default);
        };
        T::VALUES
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(given))
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let accepted: Vec<&str> = T::VALUES.iter().map(|(s, _)| *s).collect();
                PropertyError::invalid(
                    name,
                    format!("one of {}", accepted.join(", ")),
                    quote(given),
                )
            })
    }
}

fn quote(s: &str) -> String {
    // Keep echoed input short: the whole Reason is limited, and the value is the user's own.
    const MAX: usize = 120;
    match s.char_indices().nth(MAX) {
        Some((cut, _)) => format!("\"{}…\"", &s[..cut]),
        None => format!("\"{s}\""),
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(value: Value) -> Properties {
        match value {
            Value::Object(map) => Properties::new(map),
            _ => unreachable!("test properties are objects"),
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Method {
        Auto,
        AwsAuth,
    }
    impl PropertyEnum for Method {
        const VALUES: &'static [(&'static str, Self)] =
            &[("auto", Method::Auto), ("aws-auth", Method::AwsAuth)];
    }

    #[test]
    fn tags_are_key_value_items_and_never_aws_or_the_owner_tag() {
        let p = props(json!({"Tags": "team=data, cost-center=47=11", "List": ["a=b"]}));
        assert_eq!(
            p.tags("Tags").unwrap(),
            [
                ("team".to_owned(), "data".to_owned()),
                ("cost-center".to_owned(), "47=11".to_owned())
            ]
        );
        assert_eq!(p.tags("List").unwrap().len(), 1);
        assert!(p.tags("Absent").unwrap().is_empty());
        for bad in [
            "team",
            "=x",
            "aws:cloudformation:stack-name=x",
            "hopsworks.ai/eks-stack=x",
        ] {
            let err = props(json!({"Tags": bad})).tags("Tags").unwrap_err();
            assert!(err.to_string().contains("Tags"), "{bad}: {err}");
        }
    }

    #[test]
    fn drops_cloudformations_own_properties() {
        let p =
            props(json!({"ServiceToken": "arn:aws:lambda:x", "ServiceTimeout": "3600", "A": "b"}));
        assert_eq!(p.as_map().len(), 1);
    }

    #[test]
    fn missing_required_names_property_and_hint() {
        let err = props(json!({"A": "  "}))
            .required_str("A", "the EKS cluster name")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "property A is required: the EKS cluster name"
        );
    }

    #[test]
    fn parses_bools_as_cloudformation_sends_them() {
        let p = props(json!({"T": "True", "F": "false", "J": true, "Bad": "yes"}));
        assert!(p.bool("T", false).unwrap());
        assert!(!p.bool("F", true).unwrap());
        assert!(p.bool("J", false).unwrap());
        assert!(p.bool("Unset", true).unwrap());
        assert_eq!(
            p.bool("Bad", false).unwrap_err().to_string(),
            "property Bad must be \"true\" or \"false\", got \"yes\""
        );
    }

    #[test]
    fn parses_ints_within_bounds() {
        let p = props(json!({"N": "42", "Big": "4000", "Word": "ten", "Num": 7}));
        assert_eq!(p.int("N", 0u32, 1, 100).unwrap(), 42);
        assert_eq!(p.int("Num", 0u32, 1, 100).unwrap(), 7);
        assert_eq!(p.int("Unset", 5u32, 1, 100).unwrap(), 5);
        assert_eq!(
            p.int("Big", 0u32, 1, 3600).unwrap_err().to_string(),
            "property Big must be a whole number from 1 to 3600, got \"4000\""
        );
        assert!(p.int("Word", 0u32, 1, 100).is_err());
    }

    #[test]
    fn parses_lists_from_json_or_commas() {
        let p = props(json!({"L": ["a", " b ", ""], "C": "x, y,,z", "Bad": [1]}));
        assert_eq!(p.list("L").unwrap(), ["a", "b"]);
        assert_eq!(p.list("C").unwrap(), ["x", "y", "z"]);
        assert!(p.list("Unset").unwrap().is_empty());
        assert_eq!(
            p.list("Bad").unwrap_err().to_string(),
            "property Bad must be a list of strings, got a list holding a number"
        );
    }

    #[test]
    fn enum_error_lists_accepted_values() {
        let p = props(json!({"M": "AWS-AUTH", "Bad": "configmap"}));
        assert_eq!(p.enumerated("M", Method::Auto).unwrap(), Method::AwsAuth);
        assert_eq!(p.enumerated("Unset", Method::Auto).unwrap(), Method::Auto);
        assert_eq!(
            p.enumerated("Bad", Method::Auto).unwrap_err().to_string(),
            "property Bad must be one of auto, aws-auth, got \"configmap\""
        );
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "é".repeat(500);
        let err = props(json!({ "B": long })).bool("B", false).unwrap_err();
        assert!(err.to_string().len() < 400);
    }
}
