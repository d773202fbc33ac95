//! The bench's control API: what a test needs to set up or inspect that no AWS or Kubernetes API
//! offers (faults, the raw stored ConfigMap, request logs, a cluster's authentication mode).

use serde_json::{Value, json};

#[derive(Clone)]
pub struct Control {
    base: String,
    http: reqwest::Client,
}

impl Control {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control API reachable");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "control {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn set_auth_mode(&self, cluster: &str, mode: Option<&str>) {
        self.call(
            reqwest::Method::PUT,
            &format!("/clusters/{cluster}/auth-mode"),
            Some(json!({ "mode": mode })),
        )
        .await;
    }

    pub async fn set_certificate_authority(&self, cluster: &str, pem: &str) {
        self.call(
            reqwest::Method::PUT,
            &format!("/clusters/{cluster}/certificate-authority"),
            Some(json!({ "pem": pem })),
        )
        .await;
    }

    /// The aws-auth object exactly as the API server double stores it.
    pub async fn aws_auth(&self, cluster: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/kube/{cluster}/configmaps/kube-system/aws-auth"),
            None,
        )
        .await
    }

    pub async fn put_aws_auth(&self, cluster: &str, object: Value) {
        self.call(
            reqwest::Method::PUT,
            &format!("/kube/{cluster}/configmaps/kube-system/aws-auth"),
            Some(object),
        )
        .await;
    }

    /// Set `data.mapRoles`, keeping the rest of the stored object.
    pub async fn set_map_roles(&self, cluster: &str, map_roles: &str) {
        let mut object = self.aws_auth(cluster).await;
        object["data"]["mapRoles"] = json!(map_roles);
        self.put_aws_auth(cluster, object).await;
    }

    pub async fn fault(&self, cluster: &str, fault: Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/kube/{cluster}/faults"),
            Some(fault),
        )
        .await;
    }

    /// The API server double's faults that have not fired yet.
    pub async fn kube_faults(&self, cluster: &str) -> Vec<Value> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/kube/{cluster}/faults"),
                None,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_kube_faults(&self, cluster: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/kube/{cluster}/faults"),
            None,
        )
        .await;
    }

    /// `[{method, path, username, status}]` of the API server double since the last clear.
    pub async fn kube_requests(&self, cluster: &str) -> Vec<Value> {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/kube/{cluster}/requests"),
                None,
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_kube_requests(&self, cluster: &str) {
        self.call(
            reqwest::Method::DELETE,
            &format!("/kube/{cluster}/requests"),
            None,
        )
        .await;
    }

    /// `{"polls_per_state"?, "fail_next_with"?, "leave_ecr_repos"?, "delete_lag_polls"?,
    /// "fail_upgrade_with"?, "fail_next_backup_with"?, "versions"?}` of the Hopsworks.ai double
    /// (a partial update; `null` clears a failure knob, and `versions: null` restores the
    /// default catalogue).
    pub async fn hopsworks_behaviour(&self, behaviour: Value) {
        self.call(
            reqwest::Method::PUT,
            "/hopsworks/behaviour",
            Some(behaviour),
        )
        .await;
    }

    pub async fn hopsworks_fault(&self, fault: Value) {
        self.call(reqwest::Method::POST, "/hopsworks/faults", Some(fault))
            .await;
    }

    /// The Hopsworks.ai double's faults that have not fired yet.
    pub async fn hopsworks_faults(&self) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, "/hopsworks/faults", None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    pub async fn clear_hopsworks_faults(&self) {
        self.call(reqwest::Method::DELETE, "/hopsworks/faults", None)
            .await;
    }

    /// `[{method, path, status, …}]` the Hopsworks.ai double received.
    pub async fn hopsworks_requests(&self) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, "/hopsworks/requests", None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Every cluster the double ever had, with its state ("terminated" once gone).
    pub async fn hopsworks_clusters(&self) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, "/hopsworks/clusters", None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// One cluster the double has or had, as `hopsworks_clusters` shows it.
    pub async fn hopsworks_cluster(&self, id: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/hopsworks/clusters/{id}"),
            None,
        )
        .await
    }

    /// Every backup the double ever had (deleted ones with `bench.deleted`), each with the
    /// snapshot of its cluster in `bench.snapshot`.
    pub async fn hopsworks_backups(&self) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, "/hopsworks/backups", None)
            .await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// One backup, as `hopsworks_backups` shows it.
    pub async fn hopsworks_backup(&self, id: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/hopsworks/backups/{id}"),
            None,
        )
        .await
    }

    /// A backup already `succeed`, of a cluster that is not in the double: `snapshot` holds
    /// that cluster's flat create fields (`name` required; the rest default as
    /// `create_hopsworks_cluster`'s). Returns the backup (its id in `backupId`).
    pub async fn create_hopsworks_backup(&self, snapshot: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/hopsworks/backups",
            Some(json!({ "cluster": snapshot })),
        )
        .await
    }

    /// A cluster made directly in `running` (someone else's).
    pub async fn create_hopsworks_cluster(&self, cluster: Value) -> Value {
        self.call(reqwest::Method::POST, "/hopsworks/clusters", Some(cluster))
            .await
    }
}
