//! Reading the event CloudFormation sends: directly, or wrapped in an SNS notification.

use crate::lifecycle::Continued;
use crate::properties::Properties;
use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest;
use reqwest::Url;
use serde_json::Value;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The pre-signed S3 URL the response goes to. It is a credential: `Debug` and `Display` show the
/// scheme, host and path only, never the query that carries the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct ResponseUrl(Url);

impl ResponseUrl {
    pub fn parse(raw: &str) -> Option<Self> {
        let url = Url::parse(raw).ok()?;
        matches!(url.scheme(), "https" | "http").then_some(Self(url))
    }

    /// The full URL, signature included: only for sending the response.
    pub(crate) fn expose(&self) -> &Url {
        &self.0
    }
}

impl fmt::Display for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        write!(f, "{}://{}", url.scheme(), url.host_str().unwrap_or(""))?;
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())?;
        if url.query().is_some() {
            f.write_str("?***")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseUrl({self})")
    }
}

/// What every response echoes back.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub request_id: String,
    pub stack_id: String,
    pub logical_resource_id: String,
    pub resource_type: String,
}

/// The one right to answer a request. It is not `Clone`, and sending consumes it
/// ([`crate::sender::Sender::send`]), as does handing it on to a continuation, so a request can be
/// answered at most once by construction.
#[derive(Debug)]
pub struct Reply {
    pub(crate) envelope: Envelope,
    pub(crate) url: ResponseUrl,
    /// The request as CloudFormation sent it, for a continuation to carry on.
    pub(crate) raw: RawEvent,
}

/// The raw request: it holds the ResponseURL, so it is never shown.
pub(crate) struct RawEvent(pub(crate) Value);

impl fmt::Debug for RawEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawEvent(***)")
    }
}

/// The key of the payload a function sends itself to continue a request.
pub const CONTINUATION_KEY: &str = "CustomResourceContinuation";

impl Reply {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub fn url(&self) -> &ResponseUrl {
        &self.url
    }
}

/// What CloudFormation asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Create,
    Update {
        physical_id: String,
        old_properties: Properties,
    },
    Delete {
        physical_id: String,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create => "Create",
            Action::Update { .. } => "Update",
            Action::Delete { .. } => "Delete",
        }
    }

    /// The id the resource already has (Update, Delete).
    pub fn physical_id(&self) -> Option<&str> {
        match self {
            Action::Create => None,
            Action::Update { physical_id, .. } | Action::Delete { physical_id } => {
                Some(physical_id)
            }
        }
    }
}

/// A parsed custom-resource request.
#[derive(Debug, Clone)]
pub struct Request {
    pub envelope: Envelope,
    pub action: Action,
    pub properties: Properties,
    /// Set when an earlier invocation handed this request on ([`crate::Progress::Continue`]).
    pub continued: Option<Continued>,
}

impl Request {
    /// The id CloudFormation holds for the resource: none on Create, and none for the
    /// failed-create marker, which says the Create's answer knew of nothing it made. A Delete
    /// must then clean up by ownership ([`crate::Owner`]): the Create may have made something
    /// before its answer was lost.
    pub fn known_physical_id(&self) -> Option<&str> {
        self.action
            .physical_id()
            .filter(|id| !id.starts_with(crate::FAILED_CREATE_PREFIX))
    }
}

/// Why an event could not be parsed.
#[derive(Debug)]
pub enum ParseError {
    /// Not a custom-resource request at all (no usable ResponseURL): there is no one to answer.
    NotCustomResource(String),
    /// A request we can answer, but whose content is wrong: answered FAILED with this reason.
    Malformed {
        reply: Box<Reply>,
        physical_id: Option<String>,
        reason: String,
    },
}

/// Parse a Lambda payload: the custom-resource request itself, or an SNS notification carrying it.
/// Returns the request and the one [`Reply`] that answers it.
pub fn parse(payload: Value) -> Result<(Reply, Request), ParseError> {
    let (payload, continued) = unwrap_continuation(unwrap_sns(payload)?);
    let reply = reply(&payload)?;
    match typed(&payload) {
        Ok((action, properties)) => {
            let request = Request {
                envelope: reply.envelope.clone(),
                action,
                properties,
                continued,
            };
            Ok((reply, request))
        }
        Err(reason) => Err(ParseError::Malformed {
            reply: Box::new(reply),
            physical_id: str_field(&payload, "PhysicalResourceId").map(str::to_owned),
            reason,
        }),
    }
}

/// A continuation payload: `{"CustomResourceContinuation": {"Request", "State", "Round",
/// "FirstStartedMs"}}`, built by [`Reply::continuation`].
fn unwrap_continuation(payload: Value) -> (Value, Option<Continued>) {
    let Some(Value::Object(mut wrapper)) = payload.get(CONTINUATION_KEY).cloned() else {
        return (payload, None);
    };
    let request = wrapper.remove("Request").unwrap_or(Value::Null);
    let continued = Continued {
        state: wrapper.remove("State").unwrap_or(Value::Null),
        round: wrapper.get("Round").and_then(Value::as_u64).unwrap_or(1) as u32,
        first_started: UNIX_EPOCH
            + Duration::from_millis(
                wrapper
                    .get("FirstStartedMs")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            ),
    };
    (request, Some(continued))
}

impl Reply {
    /// The payload that continues this request in a new invocation with `state`.
    pub(crate) fn continuation(
        &self,
        state: Value,
        previous: Option<&Continued>,
        first_started: SystemTime,
    ) -> Vec<u8> {
        let started_ms = first_started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let wrapper = serde_json::json!({ CONTINUATION_KEY: {
            "Request": self.raw.0,
            "State": state,
            "Round": previous.map_or(1, |c| c.round + 1),
            "FirstStartedMs": started_ms,
        }});
        serde_json::to_vec(&wrapper).unwrap_or_default()
    }
}

fn typed(payload: &Value) -> Result<(Action, Properties), String> {
    let typed: CloudFormationCustomResourceRequest<Value, Value> =
        serde_json::from_value(payload.clone())
            .map_err(|e| format!("the request from CloudFormation is malformed: {e}"))?;
    let to_props = |value: Value, field: &str| match value {
        Value::Object(map) => Ok(Properties::new(map)),
        Value::Null => Ok(Properties::default()),
        _ => Err(format!("{field} is not an object")),
    };
    let (action, properties) = match typed {
        CloudFormationCustomResourceRequest::Create(r) => (
            Action::Create,
            to_props(r.resource_properties, "ResourceProperties")?,
        ),
        CloudFormationCustomResourceRequest::Update(r) => (
            Action::Update {
                physical_id: r.physical_resource_id,
                old_properties: to_props(r.old_resource_properties, "OldResourceProperties")?,
            },
            to_props(r.resource_properties, "ResourceProperties")?,
        ),
        CloudFormationCustomResourceRequest::Delete(r) => (
            Action::Delete {
                physical_id: r.physical_resource_id,
            },
            to_props(r.resource_properties, "ResourceProperties")?,
        ),
        _ => return Err("unknown RequestType".to_owned()),
    };
    Ok((action, properties))
}

fn unwrap_sns(payload: Value) -> Result<Value, ParseError> {
    let Some(message) = payload
        .get("Records")
        .and_then(|r| r.get(0))
        .and_then(|r| r.get("Sns"))
        .and_then(|s| s.get("Message"))
    else {
        return Ok(payload);
    };
    let text = message.as_str().ok_or_else(|| {
        ParseError::NotCustomResource("the SNS message is not a string".to_owned())
    })?;
    serde_json::from_str(text)
        .map_err(|e| ParseError::NotCustomResource(format!("the SNS message is not JSON: {e}")))
}

/// The fields needed to answer at all, read leniently so that a request that is wrong in any other
/// way still gets a FAILED answer instead of hanging the stack.
fn reply(payload: &Value) -> Result<Reply, ParseError> {
    let response_url = str_field(payload, "ResponseURL")
        .and_then(ResponseUrl::parse)
        .ok_or_else(|| {
            ParseError::NotCustomResource(
                "no valid ResponseURL: not a CloudFormation custom-resource request".to_owned(),
            )
        })?;
    let field = |name| str_field(payload, name).unwrap_or_default().to_owned();
    let envelope = Envelope {
        request_id: field("RequestId"),
        stack_id: field("StackId"),
        logical_resource_id: field("LogicalResourceId"),
        resource_type: field("ResourceType"),
    };
    Ok(Reply {
        envelope,
        url: response_url,
        raw: RawEvent(payload.clone()),
    })
}

fn str_field<'a>(payload: &'a Value, name: &str) -> Option<&'a str> {
    payload.get(name).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create_event() -> Value {
        json!({
            "RequestType": "Create",
            "ServiceToken": "arn:aws:lambda:us-east-2:123456789012:function:f",
            "ResponseURL": "https://cfn.s3.amazonaws.com/arn%3Astack/resp?X-Amz-Signature=SECRETSIG",
            "StackId": "arn:aws:cloudformation:us-east-2:123456789012:stack/s/1",
            "RequestId": "req-1",
            "ResourceType": "Custom::Discovery",
            "LogicalResourceId": "Discovery",
            "ResourceProperties": {"ServiceToken": "x", "ClusterName": "demo"}
        })
    }

    #[test]
    fn parses_a_direct_create() {
        let (_, req) = parse(create_event()).unwrap();
        assert_eq!(req.action, Action::Create);
        assert_eq!(req.envelope.logical_resource_id, "Discovery");
        assert_eq!(
            req.properties.required_str("ClusterName", "").unwrap(),
            "demo"
        );
    }

    #[test]
    fn parses_a_request_wrapped_in_sns() {
        let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {
            "Message": create_event().to_string()
        }}]});
        assert_eq!(parse(sns).unwrap().1.envelope.request_id, "req-1");
    }

    #[test]
    fn response_url_never_shows_its_signature() {
        let (reply, _) = parse(create_event()).unwrap();
        let shown = format!("{reply:?} {}", reply.url());
        assert!(!shown.contains("SECRETSIG"), "{shown}");
        assert!(shown.contains("RawEvent(***)"), "{shown}");
        assert!(shown.contains("cfn.s3.amazonaws.com/arn%3Astack/resp?***"));
    }

    #[test]
    fn malformed_request_with_a_response_url_can_still_be_answered() {
        let mut event = create_event();
        event["RequestType"] = json!("Update"); // Update without PhysicalResourceId
        match parse(event) {
            Err(ParseError::Malformed { reason, .. }) => {
                assert!(reason.contains("PhysicalResourceId"), "{reason}")
            }
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn a_continuation_carries_the_request_and_the_state_on() {
        let (reply, _) = parse(create_event()).unwrap();
        let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let payload = reply.continuation(json!({"phase": "waiting"}), None, started);
        let (reply2, request) = parse(serde_json::from_slice(&payload).unwrap()).unwrap();
        let continued = request.continued.expect("continued");
        assert_eq!(continued.state, json!({"phase": "waiting"}));
        assert_eq!(continued.round, 1);
        assert_eq!(continued.first_started, started);
        assert_eq!(reply2.url(), reply.url());
        let again = reply2.continuation(json!(2), Some(&continued), started);
        let (_, request) = parse(serde_json::from_slice(&again).unwrap()).unwrap();
        assert_eq!(request.continued.unwrap().round, 2);
    }

    #[test]
    fn event_without_response_url_is_not_answerable() {
        let mut event = create_event();
        event.as_object_mut().unwrap().remove("ResponseURL");
        assert!(matches!(
            parse(event),
            Err(ParseError::NotCustomResource(_))
        ));
    }
}
