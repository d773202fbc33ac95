//! The two AWS services the resource calls: Secrets Manager for the key, ECR for the clean-up.

use custom_resource::aws::sdk_error_message;
use hopsworks_ai::ApiKey;

/// Why the API key could not be read: for good (the secret is missing or holds no key: a Create
/// could not have made anything with it), or for now (throttling, a 5xx, a timeout: retry).
#[derive(Debug, Clone, PartialEq)]
pub enum KeyError {
    Permanent(String),
    Transient(String),
}

impl KeyError {
    pub fn message(&self) -> &str {
        match self {
            KeyError::Permanent(m) | KeyError::Transient(m) => m,
        }
    }
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
            let transient = match e.as_service_error() {
                Some(s) => s
                    .meta()
                    .code()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c)),
                None => true, // no answer from the service: timeout, connection, dispatch
            };
            let why = match e.as_service_error() {
                Some(s) if s.is_resource_not_found_exception() => {
                    "it does not exist (check ApiKeySecretArn and the stack's region)".to_owned()
                }
                _ => sdk_error_message(&e),
            };
            let message =
                format!("cannot read the Hopsworks.ai API key from secret {secret_arn}: {why}");
            if transient {
                KeyError::Transient(message)
            } else {
                KeyError::Permanent(message)
            }
        })?;
    let value = out.secret_string().ok_or_else(|| {
        KeyError::Permanent(format!(
            "secret {secret_arn} holds binary data; store the API key as a string"
        ))
    })?;
    ApiKey::from_secret(value).map_err(|e| {
        KeyError::Permanent(format!(
            "secret {secret_arn} does not hold a Hopsworks.ai API key: {e}"
        ))
    })
}

/// Delete every repository named `<cluster_id>/…` in `registry` (forced: with its images).
/// Nothing outside that prefix is touched. Returns the names deleted.
pub async fn delete_cluster_repositories(
    ecr: &aws_sdk_ecr::Client,
    registry: &str,
    cluster_id: &str,
) -> Result<Vec<String>, String> {
    // An empty or odd id would widen the prefix: refuse rather than risk other repositories.
    if !crate::ownership::is_cluster_id(cluster_id) {
        return Err(format!(
            "refusing to clean ECR for cluster id {cluster_id:?}: not a Hopsworks cluster id"
        ));
    }
    let prefix = format!("{cluster_id}/");
    let mut names = Vec::new();
    let mut pages = ecr
        .describe_repositories()
        .registry_id(registry)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| format!("ecr:DescribeRepositories failed: {}", sdk_error_message(&e)))?;
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
                return Err(format!(
                    "ecr:DeleteRepository {name} failed: {}",
                    sdk_error_message(&e)
                ));
            }
        }
    }
    Ok(names)
}
