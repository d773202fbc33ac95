//! The two AWS services the resource calls: Secrets Manager for the key, ECR for the clean-up.

use custom_resource::aws::AwsError;
use hopsworks_ai::ApiKey;

/// Why the API key could not be read: for good (the secret is missing or holds no key: a Create
/// could not have made anything with it), or for now (throttling, a 5xx, a timeout: retry); see
/// [`KeyError::is_transient`]. The text is the whole Reason.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "cannot read the Hopsworks.ai API key from secret {secret_arn}: it does not exist (check \
         ApiKeySecretArn and the stack's region)"
    )]
    Missing {
        secret_arn: String,
        #[source]
        source: AwsError,
    },

    /// Refused for good (access denied, a key that cannot decrypt it, ...).
    #[error("cannot read the Hopsworks.ai API key from secret {secret_arn}: {source}")]
    Refused {
        secret_arn: String,
        #[source]
        source: AwsError,
    },

    /// Throttled, a 5xx, or no answer from the service (timeout, connection, dispatch).
    #[error("cannot read the Hopsworks.ai API key from secret {secret_arn}: {source}")]
    Unavailable {
        secret_arn: String,
        #[source]
        source: AwsError,
    },

    #[error(
        "Secrets Manager did not answer in time when reading the Hopsworks.ai API key from \
         {secret_arn}; retry the stack operation"
    )]
    Late { secret_arn: String },

    #[error("secret {secret_arn} holds binary data; store the API key as a string")]
    Binary { secret_arn: String },

    #[error("secret {secret_arn} does not hold a Hopsworks.ai API key: {source}")]
    NotAKey {
        secret_arn: String,
        #[source]
        source: hopsworks_ai::KeyError,
    },

    /// The Hopsworks.ai client could not be made with the key.
    #[error("{}", custom_resource::error_chain(.0))]
    Client(#[source] hopsworks_ai::Error),
}

impl KeyError {
    /// A later try may read the key: the Delete of a failed Create waits for it.
    pub fn is_transient(&self) -> bool {
        matches!(self, KeyError::Unavailable { .. } | KeyError::Late { .. })
    }
}

/// Why the ECR repositories of a cluster could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum EcrError {
    #[error("refusing to clean ECR for cluster id {0:?}: not a Hopsworks cluster id")]
    NotAClusterId(String),

    #[error("ecr:DescribeRepositories failed: {0}")]
    Describe(#[source] AwsError),

    #[error("ecr:DeleteRepository {name} failed: {source}")]
    Delete {
        name: String,
        #[source]
        source: AwsError,
    },
}

/// Secrets Manager's errors that a later try may not meet.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "InternalServiceError",
    "RequestLimitExceeded",
    "ServiceUnavailable",
];

/// Read the API key from `secret_arn`. Errors name the secret, never its value.
pub async fn api_key(
    secrets: &aws_sdk_secretsmanager::Client,
    secret_arn: &str,
) -> Result<ApiKey, KeyError> {
    let out = secrets
        .get_secret_value()
        .secret_id(secret_arn)
        .send()
        .await
        .map_err(|e| {
            let secret_arn = secret_arn.to_owned();
            match e.as_service_error() {
                Some(s) if s.is_resource_not_found_exception() => KeyError::Missing {
                    secret_arn,
                    source: AwsError::new(e),
                },
                Some(s)
                    if !s
                        .meta()
                        .code()
                        .is_some_and(|c| TRANSIENT_CODES.contains(&c)) =>
                {
                    KeyError::Refused {
                        secret_arn,
                        source: AwsError::new(e),
                    }
                }
                // Throttled, or no answer from the service: timeout, connection, dispatch.
                _ => KeyError::Unavailable {
                    secret_arn,
                    source: AwsError::new(e),
                },
            }
        })?;
    let value = out.secret_string().ok_or_else(|| KeyError::Binary {
        secret_arn: secret_arn.to_owned(),
    })?;
    ApiKey::from_secret(value).map_err(|source| KeyError::NotAKey {
        secret_arn: secret_arn.to_owned(),
        source,
    })
}

/// Delete every repository named `<cluster_id>/…` in `registry` (forced: with its images).
/// Nothing outside that prefix is touched. Returns the names deleted.
pub async fn delete_cluster_repositories(
    ecr: &aws_sdk_ecr::Client,
    registry: &str,
    cluster_id: &str,
) -> Result<Vec<String>, EcrError> {
    // An empty or odd id would widen the prefix: refuse rather than risk other repositories.
    if !crate::ownership::is_cluster_id(cluster_id) {
        return Err(EcrError::NotAClusterId(cluster_id.to_owned()));
    }
    let prefix = format!("{cluster_id}/");
    let mut names = Vec::new();
    let mut pages = ecr
        .describe_repositories()
        .registry_id(registry)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| EcrError::Describe(AwsError::new(e)))?;
        names.extend(
            page.repositories()
                .iter()
                .filter_map(|r| r.repository_name())
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_owned),
        );
    }
    for name in &names {
        match ecr
            .delete_repository()
            .registry_id(registry)
            .repository_name(name)
            .force(true)
            .send()
            .await
        {
            Ok(_) => tracing::info!(repository = %name, "ECR repository deleted"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception()) => {}
            Err(e) => {
                return Err(EcrError::Delete {
                    name: name.clone(),
                    source: AwsError::new(e),
                });
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use custom_resource::aws::assert_keeps_sdk_error;

    const SECRET: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:hopsworks";

    fn unreadable(code: &str, wrap: fn(String, AwsError) -> KeyError) -> KeyError {
        assert_keeps_sdk_error(
            (code, "said AWS"),
            |source| wrap(SECRET.to_owned(), source),
            &format!("cannot read the Hopsworks.ai API key from secret {SECRET}: {code}: said AWS"),
        )
    }

    #[test]
    fn an_unreadable_key_keeps_the_sdk_error_and_only_an_unavailable_service_is_transient() {
        let throttled = unreadable("ThrottlingException", |secret_arn, source| {
            KeyError::Unavailable { secret_arn, source }
        });
        assert!(throttled.is_transient());
        let refused = unreadable("AccessDeniedException", |secret_arn, source| {
            KeyError::Refused { secret_arn, source }
        });
        assert!(!refused.is_transient());
    }

    #[test]
    fn a_failed_ecr_clean_up_keeps_the_sdk_error() {
        assert_keeps_sdk_error(
            ("RepositoryPolicyNotFoundException", "no"),
            |source| EcrError::Delete {
                name: "c-1/hopsworks".to_owned(),
                source,
            },
            "ecr:DeleteRepository c-1/hopsworks failed: RepositoryPolicyNotFoundException: no",
        );
    }
}
