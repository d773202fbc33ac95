//! Backups of a cluster (`/api/backups`) and clusters restored from one
//! (`/api/clusters/restore/{backupId}`).
//!
//! Taking a backup and restoring one are not idempotent, like creating a cluster: a POST whose
//! answer is lost (a dropped connection, a 5xx, a timeout after Hopsworks.ai applied it) is never
//! simply repeated. A backup is found again by its name among its cluster's backups (the caller
//! names it so that a second try or a second delivery chooses the same name); a restored cluster
//! by `is_ours`, as a created one ([`Client::create_cluster`]).

use crate::client::{Client, Created, Envelope, Error, created_id};
use crate::model::{Cluster, Tag, Wait};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::future::Future;
use tracing::{info, warn};

/// `GET /api/backups/{id}` → `payload.backup`. Absent fields read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Backup {
    pub backup_id: String,
    pub backup_name: String,
    pub cluster_id: String,
    /// Unix seconds.
    pub created_on: i64,
    pub state: String,
    pub state_message: String,
}

/// What [`Client::create_backup`] got: the backup it asked for, or the one asked for before.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupStarted {
    /// The id of a backup this call asked for.
    Made(String),
    /// A backup of that name asked for earlier: by an attempt whose answer was lost, or by a
    /// concurrent caller.
    Found(Box<Backup>),
}

impl BackupStarted {
    pub fn id(&self) -> &str {
        match self {
            BackupStarted::Made(id) => id,
            BackupStarted::Found(backup) => &backup.backup_id,
        }
    }
}

/// `POST /api/clusters/restore/{backupId}` → `cluster`: what the new cluster changes from the
/// backup's (every field optional; empty ones are not sent and the backup's own apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreCluster {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ssh_key_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub instance_profile_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub head_instance_profile_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vpc_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subnet_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub security_group_id: String,
}

/// What waiting for a backup to complete means for its `state` (the Terraform provider's states:
/// pending, initializing, processing, then succeed or failed). Anything else, `deleting` say, is
/// no backup that will complete.
pub fn waiting_for_backup(state: &str) -> Wait {
    match state {
        "succeed" => Wait::Reached,
        "pending" | "initializing" | "processing" => Wait::Pending,
        _ => Wait::Failed,
    }
}

/// A POST's outcome: the id in its answer, or what `find` found after an unclear answer or a
/// refusal.
enum Posted<T> {
    Made(String),
    Found(T),
}

impl Client {
    /// Ask for a backup of `cluster_id` named `backup_name`, unless one of that name exists
    /// already (the cluster's backups are listed first, and again after an unclear answer or a
    /// refusal): then that one is returned ([`BackupStarted::Found`]).
    pub async fn create_backup(
        &self,
        cluster_id: &str,
        backup_name: &str,
    ) -> Result<BackupStarted, Error> {
        let find = || self.find_backup(cluster_id, backup_name);
        if let Some(found) = find().await? {
            info!(cluster_id, backup_id = %found.backup_id, "the backup was asked for already: adopting");
            return Ok(BackupStarted::Found(Box::new(found)));
        }
        let body = json!({"backup": {"clusterId": cluster_id, "backupName": backup_name}});
        let posted = self
            .post_adopting("backup", "/api/backups", &body, backup_id, find)
            .await?;
        Ok(match posted {
            Posted::Made(id) => BackupStarted::Made(id),
            Posted::Found(found) => BackupStarted::Found(Box::new(found)),
        })
    }

    async fn find_backup(&self, cluster_id: &str, name: &str) -> Result<Option<Backup>, Error> {
        Ok(self
            .list_backups(Some(cluster_id))
            .await?
            .into_iter()
            .find(|b| b.backup_name == name && b.cluster_id == cluster_id))
    }

    /// The backup, or `None` when Hopsworks.ai says 404 (no such backup).
    pub async fn get_backup(&self, id: &str) -> Result<Option<Backup>, Error> {
        let envelope = self
            .call(Method::GET, &format!("/api/backups/{}", encode(id)), None)
            .await?;
        if envelope.code == 404 {
            return Ok(None);
        }
        read(envelope, "backup", "the backup in the answer").map(Some)
    }

    /// The account's backups, or those of one cluster.
    pub async fn list_backups(&self, cluster_id: Option<&str>) -> Result<Vec<Backup>, Error> {
        let path = match cluster_id {
            Some(id) => format!("/api/backups?clusterId={}", encode(id)),
            None => "/api/backups".to_owned(),
        };
        let envelope = self.call(Method::GET, &path, None).await?;
        if envelope.payload.is_none() {
            return Ok(Vec::new());
        }
        read(envelope, "backups", "the backup list")
    }

    /// Delete a backup (404: already gone, which is fine).
    pub async fn delete_backup(&self, id: &str) -> Result<(), Error> {
        self.call(
            Method::DELETE,
            &format!("/api/backups/{}", encode(id)),
            None,
        )
        .await
        .map(drop)
    }

    /// Create a cluster from backup `backup_id`. Like [`Client::create_cluster`], a POST without
    /// a clear answer, or refused, is followed by a look at the account's clusters, and one that
    /// `is_ours` accepts is returned ([`Created::Found`]) instead of a second cluster or an error.
    pub async fn restore_cluster(
        &self,
        backup_id: &str,
        cluster: &RestoreCluster,
        is_ours: impl Fn(&Cluster) -> bool,
    ) -> Result<Created, Error> {
        let body = json!({"cluster": cluster});
        let is_ours = &is_ours;
        let find =
            move || async move { Ok(self.list_clusters().await?.into_iter().find(|c| is_ours(c))) };
        let path = format!("/api/clusters/restore/{}", encode(backup_id));
        Ok(
            match self
                .post_adopting("restore", &path, &body, created_id, find)
                .await?
            {
                Posted::Made(id) => Created::Made(id),
                Posted::Found(cluster) => Created::Found(Box::new(cluster)),
            },
        )
    }

    /// POST `body` once per attempt, never blind: after an answer that does not say whether it
    /// was applied, `find` looks for what it would have made before the next attempt; after a
    /// refusal (an error code, a 404 included), `find` decides between adopting and the error.
    async fn post_adopting<T, F, Fut>(
        &self,
        what: &str,
        path: &str,
        body: &Value,
        id_of: fn(&Envelope) -> Option<String>,
        find: F,
    ) -> Result<Posted<T>, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>, Error>>,
    {
        let mut once = self.clone();
        once.retry.attempts = 1;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            let refused = match once.call(Method::POST, path, Some(body)).await {
                Ok(envelope) if envelope.code == 404 => Error::Api {
                    code: 404,
                    message: envelope.message,
                },
                Ok(envelope) => match id_of(&envelope) {
                    Some(id) => return Ok(Posted::Made(id)),
                    None => {
                        return Err(Error::Api {
                            code: envelope.code,
                            message: format!("the answer to {what} has no id"),
                        });
                    }
                },
                Err(e @ Error::Api { .. }) => e,
                Err(Error::Exhausted { last: why, .. }) => {
                    warn!(attempt, what, error = %why, "no clear answer; looking before trying again");
                    last = why;
                    if attempt < self.retry.attempts {
                        self.pause(self.backoff(attempt), &last).await?;
                    }
                    if let Some(found) = find().await? {
                        info!(what, "the POST was applied after all: adopting");
                        return Ok(Posted::Found(found));
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            return match find().await? {
                Some(found) => {
                    info!(what, error = %refused, "refused, but what it would make is there: adopting");
                    Ok(Posted::Found(found))
                }
                None => Err(refused),
            };
        }
        Err(Error::Exhausted {
            attempts: self.retry.attempts,
            last,
        })
    }
}

fn backup_id(envelope: &Envelope) -> Option<String> {
    envelope
        .payload
        .as_ref()
        .and_then(|p| p.get("backupId"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// `payload[field]` of an answer, read as a `T`.
fn read<T: serde::de::DeserializeOwned>(
    envelope: Envelope,
    field: &str,
    what: &str,
) -> Result<T, Error> {
    let value = envelope
        .payload
        .and_then(|mut p| p.get_mut(field).map(Value::take))
        .unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| Error::Api {
        code: envelope.code,
        message: format!("{what} does not read: {e}"),
    })
}

/// `text` safe in a URL path segment or query value: unreserved characters kept, the rest
/// percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiKey, Retry};
    use axum::Router;
    use axum::body::Bytes;
    use axum::http::{Method as HttpMethod, Uri};
    use axum::routing::any;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// What the server saw of one request: `METHOD path` and its body.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A server answering `script` in turn (HTTP status, body), recording what it saw.
    async fn server(script: Vec<(u16, &'static str)>) -> (Client, Seen) {
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let record = seen.clone();
        let app = Router::new().fallback(any(move |method: HttpMethod, uri: Uri, body: Bytes| {
            let (record, script) = (record.clone(), script.clone());
            async move {
                let body = String::from_utf8_lossy(&body).into_owned();
                record
                    .lock()
                    .unwrap()
                    .push((format!("{method} {uri}"), body));
                let (status, body) = script.lock().unwrap().next().unwrap_or((500, "{}"));
                (axum::http::StatusCode::from_u16(status).unwrap(), body)
            }
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let retry = Retry {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(4),
        };
        let key = ApiKey::from_secret("KEY123").unwrap();
        let client = Client::new(&format!("http://{addr}"), key, retry).unwrap();
        (client, seen)
    }

    fn calls(seen: &Seen) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }

    const NO_BACKUPS: &str = r#"{"code":200,"payload":{"backups":[]}}"#;
    const OURS_LISTED: &str = r#"{"code":200,"payload":{"backups":[{"backupId":"other","backupName":"nightly","clusterId":"c-1","state":"succeed"},{"backupId":"b-1","backupName":"stack-delete-r1","clusterId":"c-1","state":"pending"}]}}"#;
    const TAKEN: &str = r#"{"code":200,"payload":{"backupId":"b-1"}}"#;

    #[tokio::test]
    async fn a_backup_is_asked_for_once_with_the_contracts_body() {
        let (client, seen) = server(vec![(200, NO_BACKUPS), (200, TAKEN)]).await;
        let started = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap();
        assert_eq!(started, BackupStarted::Made("b-1".into()));
        assert_eq!(
            calls(&seen),
            ["GET /api/backups?clusterId=c-1", "POST /api/backups"]
        );
        let body: Value = serde_json::from_str(&seen.lock().unwrap()[1].1).unwrap();
        assert_eq!(
            body,
            json!({"backup": {"clusterId": "c-1", "backupName": "stack-delete-r1"}})
        );
    }

    #[tokio::test]
    async fn a_backup_of_that_name_is_adopted_without_a_post() {
        let (client, seen) = server(vec![(200, OURS_LISTED)]).await;
        let started = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap();
        assert_eq!(started.id(), "b-1");
        assert!(matches!(started, BackupStarted::Found(_)));
        assert_eq!(calls(&seen), ["GET /api/backups?clusterId=c-1"]);
    }

    #[tokio::test]
    async fn a_backup_post_without_a_clear_answer_looks_before_posting_again() {
        // Applied, then a 5xx: the lookup finds it; no second POST.
        let (client, seen) = server(vec![
            (200, NO_BACKUPS),
            (503, "Service Unavailable"),
            (200, OURS_LISTED),
        ])
        .await;
        let started = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap();
        assert_eq!(started.id(), "b-1");
        assert_eq!(
            calls(&seen),
            [
                "GET /api/backups?clusterId=c-1",
                "POST /api/backups",
                "GET /api/backups?clusterId=c-1"
            ]
        );
        // Not applied: nothing found, so the POST is tried again.
        let (client, seen) = server(vec![
            (200, NO_BACKUPS),
            (500, r#"{"code":500,"message":"oops"}"#),
            (200, NO_BACKUPS),
            (200, TAKEN),
        ])
        .await;
        let started = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap();
        assert_eq!(started, BackupStarted::Made("b-1".into()));
        assert_eq!(calls(&seen).len(), 4);
    }

    #[tokio::test]
    async fn a_refused_backup_is_an_error_with_the_message_unless_ours_is_there() {
        let refused = r#"{"code":400,"message":"cluster c-1 is not running"}"#;
        let (client, seen) =
            server(vec![(200, NO_BACKUPS), (400, refused), (200, NO_BACKUPS)]).await;
        let err = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(400), "{err}");
        assert!(err.to_string().contains("is not running"), "{err}");
        assert_eq!(calls(&seen).len(), 3, "a refusal is not retried");
        // A concurrent delivery asked first: the name is taken, by the backup we want.
        let taken = r#"{"code":400,"message":"a backup named stack-delete-r1 exists"}"#;
        let (client, _) = server(vec![(200, NO_BACKUPS), (400, taken), (200, OURS_LISTED)]).await;
        let started = client
            .create_backup("c-1", "stack-delete-r1")
            .await
            .unwrap();
        assert_eq!(started.id(), "b-1");
    }

    #[tokio::test]
    async fn a_backup_reads_its_state_and_a_404_is_none() {
        let (client, seen) = server(vec![
            (
                200,
                r#"{"code":200,"payload":{"backup":{"backupId":"b-1","backupName":"n","clusterId":"c-1","createdOn":1718000000,"cloudProvider":"AWS","state":"failed","stateMessage":"snapshot of the head failed"}}}"#,
            ),
            (404, r#"{"code":404,"message":"no backup"}"#),
            (200, r#"{"code":200}"#),
        ])
        .await;
        let backup = client.get_backup("b-1").await.unwrap().unwrap();
        assert_eq!(backup.state, "failed");
        assert_eq!(backup.state_message, "snapshot of the head failed");
        assert_eq!(backup.created_on, 1_718_000_000);
        assert_eq!(client.get_backup("b/2").await.unwrap(), None);
        client.delete_backup("b-1").await.unwrap();
        assert_eq!(
            calls(&seen),
            [
                "GET /api/backups/b-1",
                "GET /api/backups/b%2F2",
                "DELETE /api/backups/b-1"
            ]
        );
    }

    #[tokio::test]
    async fn all_backups_or_one_clusters() {
        let (client, seen) = server(vec![(200, OURS_LISTED), (200, r#"{"code":200}"#)]).await;
        assert_eq!(client.list_backups(None).await.unwrap().len(), 2);
        assert!(client.list_backups(Some("c 1")).await.unwrap().is_empty());
        assert_eq!(
            calls(&seen),
            ["GET /api/backups", "GET /api/backups?clusterId=c%201"]
        );
    }

    #[test]
    fn backup_states_follow_the_provider() {
        for pending in ["pending", "initializing", "processing"] {
            assert_eq!(waiting_for_backup(pending), Wait::Pending, "{pending}");
        }
        assert_eq!(waiting_for_backup("succeed"), Wait::Reached);
        for failed in ["failed", "deleting", ""] {
            assert_eq!(waiting_for_backup(failed), Wait::Failed, "{failed:?}");
        }
    }

    fn restore() -> RestoreCluster {
        RestoreCluster {
            name: "fs".into(),
            tags: vec![Tag {
                name: "owner".into(),
                value: "me".into(),
            }],
            instance_profile_arn: "arn:aws:iam::111122223333:instance-profile/hopsworks".into(),
            ..RestoreCluster::default()
        }
    }

    fn ours(c: &Cluster) -> bool {
        c.name == "fs" && c.tag("owner") == Some("me")
    }

    const OURS: &str = r#"{"code":200,"payload":{"clusters":[{"id":"c-2","name":"fs","tags":[{"name":"owner","value":"me"}]}]}}"#;

    #[tokio::test]
    async fn a_restore_sends_only_what_it_changes() {
        let (client, seen) = server(vec![(200, r#"{"code":200,"payload":{"id":"c-2"}}"#)]).await;
        let created = client
            .restore_cluster("b-1", &restore(), ours)
            .await
            .unwrap();
        assert_eq!(created, Created::Made("c-2".into()));
        let (call, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(call, "POST /api/clusters/restore/b-1");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"cluster": {
                "name": "fs",
                "tags": [{"name": "owner", "value": "me"}],
                "instanceProfileArn": "arn:aws:iam::111122223333:instance-profile/hopsworks",
            }})
        );
    }

    #[tokio::test]
    async fn a_restore_whose_answer_was_lost_adopts_its_cluster() {
        let (client, seen) = server(vec![(502, "Bad Gateway"), (200, OURS)]).await;
        let created = client
            .restore_cluster("b-1", &restore(), ours)
            .await
            .unwrap();
        assert_eq!(created.id(), "c-2");
        assert!(matches!(created, Created::Found(_)));
        assert_eq!(
            calls(&seen),
            [
                "POST /api/clusters/restore/b-1",
                "GET /api/clusters?cloud=AWS"
            ]
        );
    }

    #[tokio::test]
    async fn a_restore_from_a_missing_backup_is_an_error_not_a_success() {
        let (client, _) = server(vec![
            (404, r#"{"code":404,"message":"no backup"}"#),
            (200, r#"{"code":200,"payload":{"clusters":[]}}"#),
        ])
        .await;
        let err = client
            .restore_cluster("b-9", &restore(), ours)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(404), "{err}");
        assert!(err.to_string().contains("no backup"), "{err}");
    }
}
