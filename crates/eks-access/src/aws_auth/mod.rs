//! The aws-auth ConfigMap: a read-modify-write that keeps everything it does not own.
//!
//! GET, plan the change ([`plan_map`] / [`plan_unmap`], pure), PUT with the `resourceVersion` just
//! read; on 409 Conflict read again and re-plan (bounded, jittered). What this stack added is
//! recorded in an annotation on the ConfigMap, written in the same PUT, so Delete removes exactly
//! that and a mapping that was there before the stack stays.
//!
//! Every call is bounded by the time the invocation has left ([`Context::call_budget`]). A write
//! whose answer is lost (the connection drops, or the answer comes too late) may have been
//! applied: it is read back and planned again, and a plan with nothing left to do means it was.

pub mod map_roles;
mod plan;

pub use plan::{OWNERS_ANNOTATION, Owned, Plan, Restore, plan_map, plan_unmap};

use crate::error::{AccessError, Unreached};
use custom_resource::{Context, Owner};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use map_roles::RoleMapping;
use secrecy::SecretString;
use std::future::Future;
use std::time::Duration;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "aws-auth";
const MAX_ATTEMPTS: u32 = 8;
/// The longest one Kubernetes call may take (less when the invocation has less left): an API
/// server answers a ConfigMap call in milliseconds, so this leaves time to read back a write
/// whose answer never came.
const CALL_CAP: Duration = Duration::from_secs(10);

/// How one call ended, when not with its answer.
enum CallError {
    Kube(kube::Error),
    /// No answer within the budget.
    Late(Duration),
}

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
        let unreachable = |source: Unreached| AccessError::Unreachable {
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            source,
        };
        let url: http::Uri = endpoint
            .parse()
            .map_err(|e| unreachable(Unreached::Url(e)))?;
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(ca_pem)
            .filter_map(Result::ok)
            .map(|der| der.to_vec())
            .collect();
        if roots.is_empty() {
            return Err(unreachable(Unreached::NoAuthority));
        }
        let mut config = kube::Config::new(url);
        config.root_cert = Some(roots);
        config.auth_info.token = Some(token);
        config.default_namespace = NAMESPACE.to_owned();
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        let client = kube::Client::try_from(config).map_err(|e| unreachable(Unreached::Kube(e)))?;
        Ok(Self {
            api: Api::namespaced(client, NAMESPACE),
            cluster: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            identity,
        })
    }

    /// Add (or move) `owner`'s mapping. `physical_id` is recorded in `ctx` before the first
    /// write, so that however the invocation ends from then on, the answer names it.
    pub async fn map(
        &self,
        owner: &Owner,
        mapping: &RoleMapping,
        dry_run: bool,
        ctx: &Context,
        physical_id: &str,
    ) -> Result<Applied, AccessError> {
        let plan = |current: Option<&ConfigMap>| plan_map(current, owner, mapping);
        self.apply(plan, dry_run, ctx, Some(physical_id)).await
    }

    /// Remove what `owner` added, and nothing else.
    pub async fn unmap(
        &self,
        owner: &Owner,
        dry_run: bool,
        ctx: &Context,
    ) -> Result<Applied, AccessError> {
        self.apply(|current| plan_unmap(current, owner), dry_run, ctx, None)
            .await
    }

    async fn apply(
        &self,
        plan: impl Fn(Option<&ConfigMap>) -> Result<Plan, AccessError>,
        dry_run: bool,
        ctx: &Context,
        physical_id: Option<&str>,
    ) -> Result<Applied, AccessError> {
        // The summary of a write whose answer was lost: if the next read finds nothing left to
        // do, it was applied.
        let mut unanswered: Option<String> = None;
        for attempt in 1..=MAX_ATTEMPTS {
            let current = self
                .bounded(ctx, self.api.get_opt(NAME))
                .await
                .map_err(|e| self.call_error(e, "GET"))?;
            let (written, summary) = match plan(current.as_ref())? {
                Plan::NoChange(summary) => {
                    return Ok(match unanswered {
                        Some(planned) => {
                            tracing::info!("the unanswered write was applied");
                            Applied {
                                changed: true,
                                summary: planned,
                            }
                        }
                        None => Applied {
                            changed: false,
                            summary,
                        },
                    });
                }
                plan if dry_run => {
                    let summary = match plan {
                        Plan::Write { summary, .. } | Plan::Delete { summary, .. } => summary,
                        Plan::NoChange(summary) => summary,
                    };
                    tracing::info!(attempt, dry_run, change = %summary, "aws-auth change planned");
                    return Ok(Applied {
                        changed: false,
                        summary,
                    });
                }
                plan => {
                    if let Some(id) = physical_id {
                        ctx.record_physical_id(id);
                    }
                    self.write(ctx, current.is_some(), plan).await
                }
            };
            match written {
                Ok(()) => {
                    return Ok(Applied {
                        changed: true,
                        summary,
                    });
                }
                // Someone wrote in between (409 Conflict on PUT, AlreadyExists on POST, a stale
                // precondition on DELETE): re-read.
                Err(CallError::Kube(kube::Error::Api(status))) if status.code == 409 => {
                    let pause = fastrand::u64(20..=(50 * u64::from(attempt)).min(1000));
                    tracing::info!(
                        attempt,
                        pause_ms = pause,
                        "aws-auth changed meanwhile; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(CallError::Kube(kube::Error::Api(status))) => {
                    return Err(self.error(kube::Error::Api(status)));
                }
                // Sent, but no answer: it may have been applied. Read back and see.
                Err(lost) => {
                    let why = match &lost {
                        CallError::Late(after) => {
                            format!("no answer within {:.1} s", after.as_secs_f64())
                        }
                        CallError::Kube(e) => custom_resource::error_chain(e),
                    };
                    tracing::warn!(attempt, %why, "the answer to the write of aws-auth was lost; reading it back");
                    unanswered = Some(summary);
                }
            }
        }
        Err(AccessError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Send one planned write; `(result, summary)`.
    async fn write(
        &self,
        ctx: &Context,
        exists: bool,
        plan: Plan,
    ) -> (Result<(), CallError>, String) {
        let params = PostParams::default();
        match plan {
            Plan::Write {
                config_map,
                summary,
            } => {
                tracing::info!(change = %summary, "writing aws-auth");
                let result = if exists {
                    self.bounded(ctx, self.api.replace(NAME, &params, &config_map))
                        .await
                        .map(drop)
                } else {
                    self.bounded(ctx, self.api.create(&params, &config_map))
                        .await
                        .map(drop)
                };
                (result, summary)
            }
            Plan::Delete {
                resource_version,
                summary,
            } => {
                tracing::info!(change = %summary, "deleting aws-auth");
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version,
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                let result = match self.bounded(ctx, self.api.delete(NAME, &params)).await {
                    Err(CallError::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(()),
                    other => other.map(drop),
                };
                (result, summary)
            }
            Plan::NoChange(summary) => (Ok(()), summary),
        }
    }

    /// `call`, given at most what the invocation has left (and at most [`CALL_CAP`]).
    async fn bounded<T>(
        &self,
        ctx: &Context,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CallError> {
        let budget = ctx.call_budget(CALL_CAP);
        match tokio::time::timeout(budget, call).await {
            Ok(answer) => answer.map_err(CallError::Kube),
            Err(_) => Err(CallError::Late(budget)),
        }
    }

    fn call_error(&self, err: CallError, method: &'static str) -> AccessError {
        match err {
            CallError::Kube(e) => self.error(e),
            CallError::Late(after) => AccessError::Slow {
                cluster: self.cluster.clone(),
                call: method,
                seconds: after.as_secs_f64(),
            },
        }
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
                source: Unreached::Kube(other),
            },
        }
    }
}
