//! The aws-auth ConfigMap: a read-modify-write that keeps everything it does not own.
//!
//! GET, plan the change ([`plan_map`] / [`plan_unmap`], pure), PUT with the `resourceVersion` just
//! read; on 409 Conflict read again and re-plan (bounded, jittered). What this stack added is
//! recorded in an annotation on the ConfigMap, written in the same PUT, so Delete removes exactly
//! that and a mapping that was there before the stack stays.

pub mod map_roles;
mod plan;

pub use plan::{OWNERS_ANNOTATION, Owner, Plan, plan_map, plan_unmap};

use crate::error::AccessError;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use map_roles::RoleMapping;
use secrecy::SecretString;
use std::time::Duration;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "aws-auth";
const MAX_ATTEMPTS: u32 = 8;

/// What a change did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub changed: bool,
    pub summary: String,
}

/// A connection to one cluster's Kubernetes API.
pub struct AwsAuth {
    api: Api<ConfigMap>,
    cluster: String,
    endpoint: String,
    /// Who this function is in AWS, for 401/403 messages.
    identity: String,
}

impl AwsAuth {
    /// A client for `endpoint`, trusting only the cluster's CA, authenticating with `token`.
    pub fn connect(
        cluster: &str,
        endpoint: &str,
        ca_pem: &[u8],
        token: SecretString,
        identity: String,
    ) -> Result<Self, AccessError> {
        let unreachable = |message: String| AccessError::Unreachable {
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            message,
        };
        let url: http::Uri = endpoint
            .parse()
            .map_err(|e| unreachable(format!("the endpoint is not a URL: {e}")))?;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(ca_pem)
            .filter_map(Result::ok)
            .map(|der| der.to_vec())
            .collect();
        if roots.is_empty() {
            return Err(unreachable(
                "DescribeCluster gave no usable certificate authority".to_owned(),
            ));
        }
        let mut config = kube::Config::new(url);
        config.root_cert = Some(roots);
        config.auth_info.token = Some(token);
        config.default_namespace = NAMESPACE.to_owned();
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config).map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            api: Api::namespaced(client, NAMESPACE),
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            identity,
        })
    }

    /// Add (or move) `owner`'s mapping.
    pub async fn map(
        &self,
        owner: &Owner,
        mapping: &RoleMapping,
        dry_run: bool,
    ) -> Result<Applied, AccessError> {
        self.apply(|current| plan_map(current, owner, mapping), dry_run)
            .await
    }

    /// Remove what `owner` added, and nothing else.
    pub async fn unmap(&self, owner: &Owner, dry_run: bool) -> Result<Applied, AccessError> {
        self.apply(|current| plan_unmap(current, owner), dry_run)
            .await
    }

    async fn apply(
        &self,
        plan: impl Fn(Option<&ConfigMap>) -> Result<Plan, AccessError>,
        dry_run: bool,
    ) -> Result<Applied, AccessError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let current = self.api.get_opt(NAME).await.map_err(|e| self.error(e))?;
            let (config_map, summary) = match plan(current.as_ref())? {
                Plan::NoChange(summary) => {
                    return Ok(Applied {
                        changed: false,
                        summary,
                    });
                }
                Plan::Write {
                    config_map,
                    summary,
                } => (config_map, summary),
            };
            tracing::info!(attempt, dry_run, change = %summary, "aws-auth change planned");
            if dry_run {
                return Ok(Applied {
                    changed: false,
                    summary,
                });
            }
            let params = PostParams::default();
            let written = match current {
                None => self.api.create(&params, &config_map).await,
                Some(_) => self.api.replace(NAME, &params, &config_map).await,
            };
            match written {
                Ok(_) => {
                    return Ok(Applied {
                        changed: true,
                        summary,
                    });
                }
                // Someone wrote in between (409 Conflict on PUT, AlreadyExists on POST): re-read.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let pause = fastrand::u64(20..=(50 * u64::from(attempt)).min(1000));
                    tracing::info!(
                        attempt,
                        pause_ms = pause,
                        "aws-auth changed meanwhile; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(e) => return Err(self.error(e)),
            }
        }
        Err(AccessError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn error(&self, err: kube::Error) -> AccessError {
        match err {
            kube::Error::Api(status) => match status.code {
                401 => AccessError::Unauthorized {
                    cluster: self.cluster.clone(),
                    identity: self.identity.clone(),
                },
                403 => AccessError::Forbidden {
                    cluster: self.cluster.clone(),
                    identity: self.identity.clone(),
                    message: status.message.clone(),
                },
                422 => AccessError::Kubernetes {
                    cluster: self.cluster.clone(),
                    message: format!("aws-auth was refused as invalid: {}", status.message),
                },
                code => AccessError::Kubernetes {
                    cluster: self.cluster.clone(),
                    message: format!("HTTP {code} {}: {}", status.reason, status.message),
                },
            },
            other => AccessError::Unreachable {
                cluster: self.cluster.clone(),
                endpoint: self.endpoint.clone(),
                message: error_chain(&other),
            },
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}
