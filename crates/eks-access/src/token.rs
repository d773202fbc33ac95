//! The bearer token `aws eks get-token` makes, made in-process: a pre-signed STS
//! `GetCallerIdentity` URL whose signature covers the header `x-k8s-aws-id: <cluster name>`.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4::SigningParams;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use std::fmt;
use std::time::{Duration, SystemTime};

const PREFIX: &str = "k8s-aws-v1.";
/// What `aws eks get-token` uses; the authenticator accepts up to 900 s and a token is good for
/// about 15 minutes after signing, longer than any Lambda invocation.
const EXPIRES: Duration = Duration::from_secs(60);

/// A token for one cluster. `Debug` never shows it.
pub struct BearerToken(SecretString);

impl BearerToken {
    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// SigV4 refused to sign; the signer's error is kept as the source.
#[derive(Debug, thiserror::Error)]
#[error("could not sign the EKS token")]
pub struct TokenError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl TokenError {
    fn new(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(err.into())
    }
}

/// The STS host for a region, as the authenticator expects it.
pub fn sts_host(region: &str) -> String {
    let suffix = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("sts.{region}.{suffix}")
}

/// Sign a token for `cluster_name` with `credentials`, at `now`.
pub fn token(
    credentials: &Credentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<BearerToken, TokenError> {
    let url = format!(
        "https://{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_host(region)
    );
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(EXPIRES);
    let identity = credentials.clone().into();
    let params: aws_sigv4::http_request::SigningParams = SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(TokenError::new)?
        .into();
    let request = SignableRequest::new(
        "GET",
        url.as_str(),
        [("x-k8s-aws-id", cluster_name)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(TokenError::new)?;
    let (instructions, _) = sign(request, &params)
        .map_err(TokenError::new)?
        .into_parts();
    let mut presigned = url;
    for (name, value) in instructions.params() {
        presigned.push('&');
        presigned.push_str(name);
        presigned.push('=');
        presigned.push_str(&percent_encode(value));
    }
    Ok(BearerToken(SecretString::from(format!(
        "{PREFIX}{}",
        URL_SAFE_NO_PAD.encode(presigned)
    ))))
}

/// RFC 3986 unreserved characters pass; everything else is %XX (as SigV4 canonicalises).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn decode(token: BearerToken) -> String {
        let secret = token.into_secret();
        let text = secret.expose_secret();
        let body = text.strip_prefix(PREFIX).expect("prefix");
        String::from_utf8(URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("utf8")
    }

    #[test]
    fn token_is_a_presigned_get_caller_identity_covering_the_cluster_header() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "t");
        let url = decode(token(&creds, "us-east-2", "demo", SystemTime::now()).unwrap());
        assert!(
            url.starts_with(
                "https://sts.us-east-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "%2Fus-east-2%2Fsts%2Faws4_request",
            "X-Amz-Expires=60",
            "X-Amz-SignedHeaders=host%3Bx-k8s-aws-id",
            "X-Amz-Security-Token=session",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} missing from {url}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let creds = Credentials::new("AKID", "secret", None, None, "t");
        let token = token(&creds, "us-east-2", "demo", SystemTime::now()).unwrap();
        assert_eq!(format!("{token:?}"), "BearerToken(***)");
    }

    #[test]
    fn china_regions_use_their_own_domain() {
        assert_eq!(sts_host("cn-north-1"), "sts.cn-north-1.amazonaws.com.cn");
    }
}
