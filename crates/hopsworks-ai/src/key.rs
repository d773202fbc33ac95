//! The Hopsworks.ai API key: shown nowhere.

use secrecy::{ExposeSecret, SecretString};
use std::fmt;

/// An API key. `Debug` and `Display` print `***`; the only way out is the request header.
#[derive(Clone)]
pub struct ApiKey(SecretString);

/// Why a secret's value is not an API key (the value itself is never quoted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is JSON but has no string field \"apiKey\"")]
    NoApiKeyField,
    /// A line break or another control character inside the key: no HTTP header can carry it,
    /// so no request could ever be sent with it.
    #[error(
        "the key holds a line break or another character an HTTP header cannot carry; store \
         the key alone, on one line"
    )]
    NotAHeaderValue,
}

impl ApiKey {
    /// From a secret's value: the key itself, or JSON `{"apiKey": "…"}`.
    pub fn from_secret(value: &str) -> Result<Self, KeyError> {
        let trimmed = value.trim();
        let key = if trimmed.starts_with('{') {
            let parsed: serde_json::Value =
                serde_json::from_str(trimmed).map_err(|_| KeyError::NoApiKeyField)?;
            parsed
                .get("apiKey")
                .and_then(serde_json::Value::as_str)
                .ok_or(KeyError::NoApiKeyField)?
                .trim()
                .to_owned()
        } else {
            trimmed.to_owned()
        };
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if reqwest::header::HeaderValue::from_str(&key).is_err() {
            return Err(KeyError::NotAHeaderValue);
        }
        Ok(Self(SecretString::from(key)))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// `text` with any occurrence of the key replaced by `***` (for error bodies we quote).
    pub(crate) fn scrub(&self, text: &str) -> String {
        text.replace(self.expose(), "***")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_json_secrets() {
        assert_eq!(ApiKey::from_secret(" abc \n").unwrap().expose(), "abc");
        assert_eq!(
            ApiKey::from_secret(r#"{"apiKey": "abc"}"#)
                .unwrap()
                .expose(),
            "abc"
        );
        assert_eq!(
            ApiKey::from_secret(r#"{"key": "abc"}"#).unwrap_err(),
            KeyError::NoApiKeyField
        );
        assert_eq!(ApiKey::from_secret("  ").unwrap_err(), KeyError::Empty);
    }

    #[test]
    fn a_key_no_header_can_carry_is_refused_without_quoting_it() {
        for value in [
            "abc\ndef",
            "abc\rdef",
            r#"{"apiKey": "abc\ndef"}"#,
            "abc\u{7f}",
        ] {
            let err = ApiKey::from_secret(value).unwrap_err();
            assert_eq!(err, KeyError::NotAHeaderValue, "{value:?}");
            assert!(!err.to_string().contains("abc"), "{err}");
        }
        // Surrounding whitespace (a trailing newline from `echo`) is trimmed, not refused.
        assert_eq!(ApiKey::from_secret("abc\n").unwrap().expose(), "abc");
    }

    #[test]
    fn never_shows_itself() {
        let key = ApiKey::from_secret("s3cr3t").unwrap();
        assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
        assert_eq!(key.scrub("bad key s3cr3t"), "bad key ***");
    }
}
