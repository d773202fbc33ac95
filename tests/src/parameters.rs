//! Parameter values checked as CloudFormation checks them before it makes anything: `Type`
//! (`Number`, `String`, `CommaDelimitedList`), `AllowedValues`, `AllowedPattern` (the whole value
//! must match), `MinLength`/`MaxLength`, `MinValue`/`MaxValue`. A `CommaDelimitedList`'s members
//! are space-trimmed, and `AllowedValues` and `AllowedPattern` apply to each of them. A refused
//! value is a failed stack operation that changed nothing, with the `ConstraintDescription` when
//! there is one.

use serde_json::{Map, Value};

/// Check every parameter's value against its declaration.
pub fn check(declared: &Map<String, Value>, values: &Map<String, Value>) -> Result<(), String> {
    for (name, spec) in declared {
        if let Some(value) = values.get(name) {
            check_one(name, spec, value)?;
        }
    }
    Ok(())
}

fn check_one(name: &str, spec: &Value, value: &Value) -> Result<(), String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            return Err(format!(
                "parameter {name}: {other} is not a parameter value"
            ));
        }
    };
    let refuse = |what: String| {
        let hint = spec["ConstraintDescription"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        Err(format!("Parameter '{name}' {what}{hint}"))
    };
    let kind = spec["Type"].as_str().unwrap_or("String");
    let number = text.parse::<f64>().ok();
    if kind == "Number" && number.is_none() {
        return refuse(format!("must be a number, got {text:?}"));
    }
    // A list's constraints apply to each of its members, space-trimmed.
    let items: Vec<&str> = if kind == "CommaDelimitedList" {
        text.split(',').map(str::trim).collect()
    } else {
        vec![text.as_str()]
    };
    if let Some(allowed) = spec["AllowedValues"].as_array() {
        let allowed: Vec<String> = allowed.iter().map(scalar).collect();
        if let Some(bad) = items.iter().find(|i| !allowed.iter().any(|a| a == *i)) {
            return refuse(format!(
                "failed to satisfy constraint: value {bad:?} is not one of {allowed:?}"
            ));
        }
    }
    if let Some(pattern) = spec["AllowedPattern"].as_str() {
        // CloudFormation's patterns are Java's, whose \w and \d are ASCII.
        let ascii = pattern
            .replace(r"\w", "[A-Za-z0-9_]")
            .replace(r"\d", "[0-9]");
        let whole = regex::Regex::new(&format!("^(?:{ascii})$"))
            .map_err(|e| format!("parameter {name}: AllowedPattern does not compile: {e}"))?;
        if let Some(bad) = items.iter().find(|i| !whole.is_match(i)) {
            return refuse(format!(
                "failed to satisfy constraint: {bad:?} does not match {pattern}"
            ));
        }
    }
    let length = text.chars().count() as f64;
    if let Some(min) = spec["MinLength"].as_f64().filter(|m| length < *m) {
        return refuse(format!("must be at least {min} characters long"));
    }
    if let Some(max) = spec["MaxLength"].as_f64().filter(|m| length > *m) {
        return refuse(format!("must be at most {max} characters long"));
    }
    if kind == "Number" {
        let n = number.unwrap_or_default();
        if let Some(min) = spec["MinValue"].as_f64().filter(|m| n < *m) {
            return refuse(format!("must be at least {min}, got {text}"));
        }
        if let Some(max) = spec["MaxValue"].as_f64().filter(|m| n > *m) {
            return refuse(format!("must be at most {max}, got {text}"));
        }
    }
    Ok(())
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn declared() -> Map<String, Value> {
        json!({
            "Name": {"Type": "String", "AllowedPattern": "[a-z]+", "MaxLength": 5,
                     "ConstraintDescription": "lower-case letters"},
            "Count": {"Type": "Number", "MinValue": 1, "MaxValue": 50},
            "Mode": {"Type": "String", "AllowedValues": ["auto", "aws-auth"]},
            "Ports": {"Type": "CommaDelimitedList", "AllowedPattern": "[0-9]+"},
            "Open": {"Type": "CommaDelimitedList", "AllowedValues": ["", "Kafka", "Ssh"]},
            "Word": {"Type": "String", "AllowedPattern": "^[\\w-]{1,512}$"},
        })
        .as_object()
        .cloned()
        .unwrap_or_default()
    }

    fn values(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn accepts_values_within_every_constraint() {
        let ok = values(json!({"Name": "abc", "Count": "50", "Mode": "auto", "Ports": "80,443"}));
        assert_eq!(check(&declared(), &ok), Ok(()));
    }

    #[test]
    fn a_lists_members_are_trimmed_and_each_checked() {
        for ok in ["80, 443", " 80 ,443 "] {
            assert_eq!(
                check(&declared(), &values(json!({"Ports": ok}))),
                Ok(()),
                "{ok}"
            );
        }
        for ok in ["", "Kafka", "Kafka, Ssh"] {
            assert_eq!(
                check(&declared(), &values(json!({"Open": ok}))),
                Ok(()),
                "{ok}"
            );
        }
        let err = check(&declared(), &values(json!({"Open": "Kafka,Http"}))).unwrap_err();
        assert!(err.contains("value \"Http\" is not one of"), "{err}");
    }

    #[test]
    fn refuses_what_cloudformation_refuses_naming_the_parameter() {
        for (bad, expected) in [
            (
                json!({"Name": "abc1"}),
                "'Name' failed to satisfy constraint",
            ),
            (
                json!({"Name": "xabcx!"}),
                "'Name' failed to satisfy constraint",
            ),
            (json!({"Name": "abcdef"}), "'Name' must be at most 5"),
            (json!({"Count": "0"}), "'Count' must be at least 1"),
            (json!({"Count": "many"}), "'Count' must be a number"),
            (
                json!({"Mode": "access"}),
                "'Mode' failed to satisfy constraint",
            ),
            (json!({"Ports": "80,http"}), "\"http\" does not match"),
            (json!({"Word": "é"}), "'Word' failed to satisfy constraint"),
        ] {
            let err = check(&declared(), &values(bad.clone())).expect_err(&bad.to_string());
            assert!(err.contains(expected), "{bad}: {err}");
        }
        let err = check(&declared(), &values(json!({"Name": "A"}))).unwrap_err();
        assert!(err.ends_with("(lower-case letters)"), "{err}");
    }
}
