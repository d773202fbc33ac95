//! The response body CloudFormation reads from the pre-signed URL, kept within its limits.

use crate::request::Envelope;
use serde::Serialize;
use std::collections::BTreeMap;

/// CloudFormation rejects a response body larger than this (the whole JSON document).
pub const MAX_BODY_BYTES: usize = 4096;
/// CloudFormation's limit on `PhysicalResourceId`.
pub const MAX_PHYSICAL_ID_BYTES: usize = 1024;

const ELLIPSIS: &str = "…";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Success,
    Failed,
}

/// What a request is answered with, before it is fitted into the body limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: Status,
    pub reason: Option<String>,
    pub physical_id: String,
    pub data: BTreeMap<String, String>,
    pub no_echo: bool,
}

impl Response {
    pub fn failed(physical_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            reason: Some(reason.into()),
            physical_id: physical_id.into(),
            data: BTreeMap::new(),
            no_echo: false,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    physical_resource_id: &'a str,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_echo: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    data: &'a BTreeMap<String, String>,
}

/// A body ready to PUT, and the status it really carries (a response whose Data does not fit is
/// turned into FAILED).
#[derive(Debug, Clone)]
pub struct Rendered {
    pub status: Status,
    pub body: Vec<u8>,
}

/// Serialise `response` for `envelope`, within CloudFormation's limits:
/// control characters (which break the console's event view) become spaces; a physical id over
/// 1 KiB is cut; Data that does not fit turns the answer into FAILED with a Reason saying so; a
/// Reason that does not fit is cut on a UTF-8 boundary and marked with an ellipsis.
pub fn render(envelope: &Envelope, response: &Response) -> Rendered {
    let sanitized_id = sanitize(&response.physical_id);
    let physical_id = truncate(&sanitized_id, MAX_PHYSICAL_ID_BYTES);
    let mut status = response.status;
    let mut reason = response.reason.as_deref().map(sanitize);
    let no_data = BTreeMap::new();
    // A FAILED answer carries no Data: CloudFormation does not read it.
    let mut data = match status {
        Status::Success => &response.data,
        Status::Failed => &no_data,
    };
    let serialize = |status, reason: Option<&str>, data| {
        let body = Body {
            status,
            reason,
            physical_resource_id: physical_id,
            stack_id: &envelope.stack_id,
            request_id: &envelope.request_id,
            logical_resource_id: &envelope.logical_resource_id,
            no_echo: response.no_echo,
            data,
        };
        // Serialising strings and string maps cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    };

    let mut bytes = serialize(status, reason.as_deref(), data);
    if bytes.len() > MAX_BODY_BYTES
        && !data.is_empty()
        && serialize(status, None, data).len() > MAX_BODY_BYTES
    {
        let data_bytes = serde_json::to_vec(data)
            .map(|d| d.len())
            .unwrap_or_default();
        status = Status::Failed;
        reason = Some(format!(
            "the resource's output Data ({} keys, {data_bytes} bytes) does not fit in \
             CloudFormation's {MAX_BODY_BYTES}-byte response; this is a bug in the provider, \
             please report it",
            data.len()
        ));
        data = &no_data;
        bytes = serialize(status, reason.as_deref(), data);
    }
    // Cut the Reason to the longest prefix that fits (binary search: JSON escaping makes the
    // body grow faster than the text, so the overflow alone does not say where to cut).
    if bytes.len() > MAX_BODY_BYTES
        && let Some(whole) = reason.take()
    {
        let with_prefix = |keep: usize| {
            let cut = truncate(&whole, keep);
            let text = if cut.is_empty() {
                String::new()
            } else {
                format!("{cut}{ELLIPSIS}")
            };
            serialize(status, Some(&text), data)
        };
        let (mut fits, mut too_long) = (0, whole.len());
        while too_long - fits > 1 {
            let mid = fits + (too_long - fits) / 2;
            if with_prefix(mid).len() <= MAX_BODY_BYTES {
                fits = mid;
            } else {
                too_long = mid;
            }
        }
        bytes = with_prefix(fits);
        // Data that fits alone can leave no room for even an empty Reason: then there is none
        // (only a SUCCESS carries Data, and a SUCCESS needs no Reason).
        if bytes.len() > MAX_BODY_BYTES {
            bytes = serialize(status, None, data);
        }
    }
    Rendered {
        status,
        body: bytes,
    }
}

/// Replace control characters (newlines included) with spaces.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn envelope() -> Envelope {
        Envelope {
            request_id: "5c1b5c5e-4c1e-4f07-8d0e-3f1c2b1a0e9d".into(),
            stack_id: "arn:aws:cloudformation:us-east-2:123456789012:stack/hopsworks-eks/\
                       0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
                .into(),
            logical_resource_id: "ClusterDiscovery".into(),
            resource_type: "Custom::ClusterDiscovery".into(),
        }
    }

    fn parse(rendered: &Rendered) -> Value {
        serde_json::from_slice(&rendered.body).expect("body is JSON")
    }

    #[test]
    fn success_body_has_the_protocol_fields() {
        let mut data = BTreeMap::new();
        data.insert("VpcId".to_owned(), "vpc-1".to_owned());
        let response = Response {
            status: Status::Success,
            reason: None,
            physical_id: "id-1".into(),
            data,
            no_echo: false,
        };
        let body = parse(&render(&envelope(), &response));
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], "id-1");
        assert_eq!(body["LogicalResourceId"], "ClusterDiscovery");
        assert_eq!(body["Data"]["VpcId"], "vpc-1");
        assert!(body.get("Reason").is_none());
        assert!(body.get("NoEcho").is_none());
    }

    #[test]
    fn oversized_data_turns_into_failed_with_a_reason() {
        let mut data = BTreeMap::new();
        data.insert("Big".to_owned(), "x".repeat(5000));
        let response = Response {
            status: Status::Success,
            reason: None,
            physical_id: "id-1".into(),
            data,
            no_echo: false,
        };
        let rendered = render(&envelope(), &response);
        let body = parse(&rendered);
        assert_eq!(rendered.status, Status::Failed);
        assert_eq!(body["Status"], "FAILED");
        assert!(body.get("Data").is_none());
        assert!(body["Reason"].as_str().unwrap().contains("does not fit"));
    }

    #[test]
    fn long_reason_is_cut_on_a_char_boundary_with_an_ellipsis() {
        let reason = "ß\"".repeat(3000);
        let rendered = render(&envelope(), &Response::failed("id", reason));
        assert!(rendered.body.len() <= MAX_BODY_BYTES);
        let body = parse(&rendered);
        let cut = body["Reason"].as_str().unwrap();
        assert!(cut.ends_with(ELLIPSIS));
        // 3 bytes of text are 4 bytes of JSON here: the body is full, not cut short.
        assert!(cut.len() > 2700, "cut far more than needed: {}", cut.len());
    }

    #[test]
    fn data_that_fills_the_body_leaves_out_the_reason_rather_than_overflow() {
        let response = |value_len: usize, reason: Option<&str>| Response {
            status: Status::Success,
            reason: reason.map(str::to_owned),
            physical_id: "id-1".into(),
            data: BTreeMap::from([("K".to_owned(), "x".repeat(value_len))]),
            no_echo: false,
        };
        // Data that leaves 5 bytes: too few for `"Reason":"",`.
        let base = render(&envelope(), &response(0, None)).body.len();
        let value_len = MAX_BODY_BYTES - 5 - base;
        assert_eq!(
            render(&envelope(), &response(value_len, None)).body.len(),
            MAX_BODY_BYTES - 5
        );
        let rendered = render(&envelope(), &response(value_len, Some("a reason")));
        assert!(
            rendered.body.len() <= MAX_BODY_BYTES,
            "{}",
            rendered.body.len()
        );
        assert_eq!(rendered.status, Status::Success);
        let body = parse(&rendered);
        assert_eq!(body["Data"]["K"].as_str().map(str::len), Some(value_len));
        assert!(body.get("Reason").is_none());
    }

    proptest! {
        #[test]
        fn any_reason_and_data_give_a_valid_body_within_limits(
            reason in ".{0,6000}",
            data in proptest::collection::btree_map("[A-Za-z]{1,20}", ".{0,400}", 0..30),
            physical_id in ".{1,1500}",
            failed in any::<bool>(),
        ) {
            let response = Response {
                status: if failed { Status::Failed } else { Status::Success },
                reason: Some(reason.clone()),
                physical_id,
                data: data.clone(),
                no_echo: false,
            };
            let rendered = render(&envelope(), &response);
            prop_assert!(rendered.body.len() <= MAX_BODY_BYTES);
            let body = parse(&rendered);
            let sent_reason = body["Reason"].as_str().unwrap_or_default();
            prop_assert!(!sent_reason.chars().any(char::is_control));
            let sent_id = body["PhysicalResourceId"].as_str().unwrap();
            prop_assert!(sent_id.len() <= MAX_PHYSICAL_ID_BYTES);
            if body["Status"] == "SUCCESS" {
                // success always carries its whole Data
                prop_assert!(!failed);
                prop_assert_eq!(body.get("Data").cloned().unwrap_or_default(),
                    if data.is_empty() { Value::Null } else { serde_json::to_value(&data).unwrap() });
            }
            if !failed && body["Status"] == "FAILED" {
                prop_assert!(sent_reason.contains("does not fit"));
            } else {
                let kept = sent_reason.trim_end_matches(ELLIPSIS);
                prop_assert!(sanitize(&reason).starts_with(kept));
            }
        }
    }
}
