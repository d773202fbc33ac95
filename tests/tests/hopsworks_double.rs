//! The Hopsworks.ai double's day-2, backup and restore endpoints, driven over HTTP as a client
//! would: the states each operation goes through, what it refuses (with a 400 naming the
//! field or the reason), and that faults and the request log cover them as they cover create.

use serde_json::{Value, json};
use system_tests::aws::AwsBench;
use system_tests::control::Control;

/// The double's API, with the bench's key.
struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Api {
    /// `(code, envelope)`; the HTTP status equals the envelope's code.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key)
            .header("hopsai-api-version", "v1")
            .header("Content-Type", "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("the double answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_eq!(
            doc["code"],
            json!(status),
            "HTTP status and code differ: {text}"
        );
        (status, doc)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, body).await
    }

    /// 200 expected.
    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, doc) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{path}: {doc}");
        doc
    }

    /// 400 expected, with a message containing `text`.
    async fn refused(&self, method: reqwest::Method, path: &str, body: Option<Value>, text: &str) {
        let (status, doc) = self.call(method, path, body).await;
        assert_eq!(status, 400, "{path} should be refused: {doc}");
        let message = doc["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(text),
            "{path}: {message:?} should say {text:?}"
        );
    }

    /// `payload.cluster` of one GET (a poll: it may move the state on).
    async fn cluster(&self, id: &str) -> Value {
        let (status, doc) = self.get(&format!("/api/clusters/{id}")).await;
        assert_eq!(status, 200, "GET cluster {id}: {doc}");
        doc["payload"]["cluster"].clone()
    }

    /// The states `n` GETs of the cluster show, `+upgrade` where upgradeInProgress is shown.
    async fn states(&self, id: &str, n: usize) -> Vec<String> {
        let mut states = Vec::new();
        for _ in 0..n {
            let c = self.cluster(id).await;
            let upgrading = if c.get("upgradeInProgress").is_some() {
                "+upgrade"
            } else {
                ""
            };
            states.push(format!("{}{upgrading}", c["state"].as_str().unwrap_or("?")));
        }
        states
    }

    /// `payload.backup` of one GET (a poll).
    async fn backup(&self, id: &str) -> Value {
        let (status, doc) = self.get(&format!("/api/backups/{id}")).await;
        assert_eq!(status, 200, "GET backup {id}: {doc}");
        doc["payload"]["backup"].clone()
    }
}

struct Bench {
    _aws: AwsBench,
    api: Api,
    control: Control,
}

async fn bench() -> Bench {
    let aws = AwsBench::start().await;
    let api = Api {
        base: aws.seeded.hopsworks_ai.api_url.clone(),
        key: aws.seeded.hopsworks_ai.api_key.clone(),
        http: reqwest::Client::new(),
    };
    let control = Control::new(&aws.seeded.control_endpoint);
    Bench {
        _aws: aws,
        api,
        control,
    }
}

impl Bench {
    /// A running cluster on an EKS cluster (so it has an ECR registry account); its id.
    async fn running(&self, name: &str) -> String {
        let c = self
            .control
            .create_hopsworks_cluster(
                json!({ "name": name, "eksClusterName": format!("{name}-eks") }),
            )
            .await;
        c["id"].as_str().expect("the cluster's id").to_owned()
    }
}

const POST: reqwest::Method = reqwest::Method::POST;
const PUT: reqwest::Method = reqwest::Method::PUT;
const DELETE: reqwest::Method = reqwest::Method::DELETE;

fn workers(instance_type: &str, count: u64) -> Value {
    json!({ "workers": [{ "instanceType": instance_type, "diskSize": 512, "count": count }] })
}

fn autoscale(max: u64) -> Value {
    json!({ "autoscale": { "nonGpu": {
        "instanceType": "m5.2xlarge", "diskSize": 512, "minWorkers": 0, "maxWorkers": max,
        "standbyWorkers": 0.5, "downscaleWaitTime": 300 } } })
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_autoscale_and_ports_go_through_updating_and_show_once_running() {
    let b = bench().await;
    let api = &b.api;
    let id = b.running("day2").await;
    let path = |suffix: &str| format!("/api/clusters/{id}/{suffix}");

    // Bodies are checked field by field.
    let bad = json!({ "workers": [{ "instanceType": "m5.xlarge", "diskSize": 512 }] });
    api.refused(
        POST,
        &path("workers"),
        Some(bad),
        "workers[0].count is required",
    )
    .await;
    let bad = json!({ "workers": [{
        "instanceType": "m5.xlarge", "diskSize": 512, "count": 1, "spot": 1 }] });
    api.refused(
        POST,
        &path("workers"),
        Some(bad),
        "unexpected field workers[0].spot",
    )
    .await;
    let mut bad = autoscale(2);
    bad["autoscale"]["nonGpu"]["minWorkers"] = json!(3);
    api.refused(
        POST,
        &path("autoscale"),
        Some(bad),
        "nonGpu.maxWorkers (2) must be at least minWorkers (3)",
    )
    .await;
    let bad =
        json!({ "ports": { "featureStore": true, "onlineFeatureStore": false, "kafka": false } });
    api.refused(POST, &path("ports"), Some(bad), "ports.ssh is required")
        .await;

    // Workers: updating, then running with them; nothing else meanwhile.
    api.ok(POST, &path("workers"), Some(workers("m5.xlarge", 2)))
        .await;
    api.refused(
        POST,
        &path("workers"),
        Some(workers("m5.xlarge", 1)),
        "is updating, not running",
    )
    .await;
    assert_eq!(api.states(&id, 1).await, ["updating"]);
    let c = api.cluster(&id).await;
    assert_eq!(c["state"], "running");
    assert_eq!(c["clusterConfiguration"]["workers"][0]["count"], 2);
    assert_eq!(
        c["clusterConfiguration"]["workers"][0]["privateIps"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Exclusive with autoscale; a DELETE names a group that has that many.
    api.refused(
        POST,
        &path("autoscale"),
        Some(autoscale(3)),
        "workers and autoscale are exclusive",
    )
    .await;
    api.refused(
        DELETE,
        &path("workers"),
        Some(workers("m5.xlarge", 3)),
        "has 2 workers of type m5.xlarge",
    )
    .await;
    api.refused(
        DELETE,
        &path("workers"),
        Some(workers("m5.4xlarge", 1)),
        "has 0 workers of type m5.4xlarge",
    )
    .await;
    api.ok(DELETE, &path("workers"), Some(workers("m5.xlarge", 1)))
        .await;
    let c = api.cluster(&id).await;
    assert_eq!(
        (
            c["state"].clone(),
            c["clusterConfiguration"]["workers"][0]["count"].clone()
        ),
        (json!("updating"), json!(2))
    );
    let c = api.cluster(&id).await;
    assert_eq!(
        (
            c["state"].clone(),
            c["clusterConfiguration"]["workers"][0]["count"].clone()
        ),
        (json!("running"), json!(1))
    );
    api.ok(DELETE, &path("workers"), Some(workers("m5.xlarge", 1)))
        .await;
    assert_eq!(api.states(&id, 2).await, ["updating", "running"]);
    assert_eq!(
        api.cluster(&id).await["clusterConfiguration"]["workers"],
        json!([])
    );

    // Autoscale on, then workers refused, then off.
    api.refused(
        DELETE,
        &path("autoscale"),
        None,
        "has no autoscale to disable",
    )
    .await;
    api.ok(POST, &path("autoscale"), Some(autoscale(3))).await;
    assert_eq!(api.states(&id, 2).await, ["updating", "running"]);
    assert_eq!(
        api.cluster(&id).await["autoscale"]["nonGpu"]["maxWorkers"],
        3
    );
    api.refused(
        POST,
        &path("workers"),
        Some(workers("m5.xlarge", 1)),
        "has autoscale enabled",
    )
    .await;
    api.ok(DELETE, &path("autoscale"), None).await;
    assert_eq!(api.states(&id, 2).await, ["updating", "running"]);
    assert!(api.cluster(&id).await.get("autoscale").is_none());

    // Ports.
    let ports =
        json!({ "featureStore": true, "onlineFeatureStore": false, "kafka": true, "ssh": false });
    api.ok(POST, &path("ports"), Some(json!({ "ports": ports })))
        .await;
    let c = api.cluster(&id).await;
    assert_eq!(
        (c["state"].clone(), c["ports"]["kafka"].clone()),
        (json!("updating"), json!(false))
    );
    assert_eq!(api.cluster(&id).await["ports"], ports);

    // A cluster that is not there: 404, which a client reads as success.
    let (status, _) = api
        .post(
            "/api/clusters/no-such-cluster/workers",
            workers("m5.xlarge", 1),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_goes_through_stopped_and_a_failed_one_is_rolled_back() {
    let b = bench().await;
    let api = &b.api;
    let id = b.running("upgrades").await;
    let path = |suffix: &str| format!("/api/clusters/{id}/{suffix}");
    let account = api.cluster(&id).await["aws"]["ecrRegistryAccountId"].clone();
    let to = |version: &str| json!({ "version": version, "dockerRegistryAccount": account });

    let (_, doc) = api.get("/api/clusters/hopsworks/versions/AWS").await;
    let versions: Vec<(Value, Value, Value)> = doc["payload"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            (
                v["version"].clone(),
                v["upgradableFromVersion"].clone(),
                v["default"].clone(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            (json!("3.8.0"), json!(""), json!(false)),
            (json!("3.9.0"), json!("3.8.0"), json!(true)),
            (json!("4.0.0"), json!("3.9.0"), json!(false)),
            (json!("4.1.0"), json!("4.0.0"), json!(false)),
        ]
    );

    api.refused(
        PUT,
        &path("upgrade/rollback"),
        None,
        "has no upgrade to roll back",
    )
    .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(to("4.1.0")),
        "can only be upgraded to from 4.0.0",
    )
    .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(to("9.9.9")),
        "not a supported Hopsworks version",
    )
    .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(json!({ "version": "4.0.0" })),
        "dockerRegistryAccount is required",
    )
    .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(json!({ "version": "4.0.0", "dockerRegistryAccount": "999999999999" })),
        "differs from the cluster's ecrRegistryAccountId",
    )
    .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(json!({ "versions": "4.0.0" })),
        "unexpected field versions",
    )
    .await;

    // A good upgrade: through stopped, running while still upgrading, then the new version.
    api.ok(POST, &path("upgrade"), Some(to("4.0.0"))).await;
    assert_eq!(
        api.states(&id, 5).await,
        [
            "stopping+upgrade",
            "stopped+upgrade",
            "starting+upgrade",
            "running+upgrade",
            "running"
        ]
    );
    assert_eq!(api.cluster(&id).await["version"], "4.0.0");

    // A failed one: error after stopped, upgradeInProgress still shown; only a rollback helps.
    b.control
        .hopsworks_behaviour(
            json!({ "fail_upgrade_with": "the upgrade's database migration failed" }),
        )
        .await;
    api.ok(POST, &path("upgrade"), Some(to("4.1.0"))).await;
    assert_eq!(
        api.states(&id, 4).await,
        [
            "stopping+upgrade",
            "stopped+upgrade",
            "error+upgrade",
            "error+upgrade"
        ]
    );
    let c = api.cluster(&id).await;
    assert_eq!(c["errorMessage"], "the upgrade's database migration failed");
    assert_eq!(
        c["upgradeInProgress"],
        json!({ "from": "4.0.0", "to": "4.1.0" })
    );
    assert_eq!(c["version"], "4.0.0");
    api.refused(
        POST,
        &path("workers"),
        Some(workers("m5.xlarge", 1)),
        "is upgrading, not running",
    )
    .await;
    api.ok(PUT, &path("upgrade/rollback"), None).await;
    assert_eq!(
        api.states(&id, 4).await,
        [
            "stopping+upgrade",
            "stopped+upgrade",
            "starting+upgrade",
            "running"
        ]
    );
    let c = api.cluster(&id).await;
    assert_eq!(c["version"], "4.0.0");
    assert!(c.get("errorMessage").is_none(), "{c}");
    api.refused(
        PUT,
        &path("upgrade/rollback"),
        None,
        "has no upgrade to roll back",
    )
    .await;

    // The knob stays set until cleared; a replaced catalogue is what the upgrade checks.
    api.ok(POST, &path("upgrade"), Some(to("4.1.0"))).await;
    assert_eq!(
        api.states(&id, 3).await.last().map(String::as_str),
        Some("error+upgrade")
    );
    api.ok(PUT, &path("upgrade/rollback"), None).await;
    assert_eq!(
        api.states(&id, 4).await.last().map(String::as_str),
        Some("running")
    );
    b.control
        .hopsworks_behaviour(json!({ "fail_upgrade_with": null, "versions": [
            { "version": "4.0.0", "upgradableFromVersion": "3.9.0" },
            { "version": "4.2.0", "upgradableFromVersion": "4.0.0" } ] }))
        .await;
    api.refused(
        POST,
        &path("upgrade"),
        Some(to("4.1.0")),
        "supported: 4.0.0, 4.2.0",
    )
    .await;
    api.ok(POST, &path("upgrade"), Some(to("4.2.0"))).await;
    assert_eq!(
        api.states(&id, 5).await.last().map(String::as_str),
        Some("running")
    );
    assert_eq!(api.cluster(&id).await["version"], "4.2.0");
    // A finished upgrade can be rolled back too (CloudFormation's rollback of an Update).
    api.ok(PUT, &path("upgrade/rollback"), None).await;
    assert_eq!(
        api.states(&id, 4).await,
        ["stopping", "stopped", "starting", "running"]
    );
    assert_eq!(api.cluster(&id).await["version"], "4.0.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn head_instance_type_and_stop_start_restart_the_cluster() {
    let b = bench().await;
    let api = &b.api;
    let id = b.running("nodes").await;
    let path = |suffix: &str| format!("/api/clusters/{id}/{suffix}");
    fn node(node_type: &str, instance_type: &str) -> Value {
        json!({ "nodeInfo": { "nodeType": node_type, "instanceType": instance_type } })
    }

    api.refused(
        PUT,
        &path("nodes/modify-instance-type"),
        Some(node("head", "m5.2xlarge")),
        "is already m5.2xlarge",
    )
    .await;
    api.refused(
        PUT,
        &path("nodes/modify-instance-type"),
        Some(node("worker", "m5.4xlarge")),
        "nodeInfo.nodeType must be one of",
    )
    .await;
    api.refused(
        PUT,
        &path("nodes/modify-instance-type"),
        Some(node("rondb_data", "r5.xlarge")),
        "has no RonDB configuration",
    )
    .await;
    api.refused(
        PUT,
        &path("nodes/modify-instance-type"),
        Some(json!({ "nodeInfo": { "nodeType": "head" } })),
        "nodeInfo.instanceType is required",
    )
    .await;
    api.ok(
        PUT,
        &path("nodes/modify-instance-type"),
        Some(node("head", "m5.4xlarge")),
    )
    .await;
    let c = api.cluster(&id).await;
    assert_eq!(
        (
            c["state"].clone(),
            c["clusterConfiguration"]["head"]["instanceType"].clone()
        ),
        (json!("stopping"), json!("m5.2xlarge"))
    );
    assert_eq!(api.states(&id, 3).await, ["stopped", "starting", "running"]);
    assert_eq!(
        api.cluster(&id).await["clusterConfiguration"]["head"]["instanceType"],
        "m5.4xlarge"
    );

    api.refused(PUT, &path("start"), None, "is running, not stopped")
        .await;
    api.ok(PUT, &path("stop"), None).await;
    assert_eq!(api.states(&id, 3).await, ["stopping", "stopped", "stopped"]);
    assert_eq!(api.cluster(&id).await["activationState"], "startable");
    api.refused(
        POST,
        "/api/backups",
        Some(json!({ "backup": { "clusterId": id, "backupName": "b" } })),
        "is stopped, not running",
    )
    .await;
    api.ok(PUT, &path("start"), None).await;
    assert_eq!(api.states(&id, 2).await, ["starting", "running"]);
    assert_eq!(api.cluster(&id).await["activationState"], "stoppable");
}

#[tokio::test(flavor = "multi_thread")]
async fn backups_have_their_own_states_and_outlive_their_cluster() {
    let b = bench().await;
    let api = &b.api;
    let id = b.running("backed-up").await;
    let backup = |name: &str| json!({ "backup": { "clusterId": id, "backupName": name } });
    b.control
        .hopsworks_behaviour(json!({ "polls_per_state": 2 }))
        .await;

    api.refused(
        POST,
        "/api/backups",
        Some(json!({ "backup": { "clusterId": id } })),
        "backup.backupName is required",
    )
    .await;
    api.refused(
        POST,
        "/api/backups",
        Some(json!({ "backup": { "clusterId": "nope", "backupName": "b" } })),
        "no cluster nope",
    )
    .await;
    let (status, doc) = api.post("/api/backups", backup("first")).await;
    assert_eq!(status, 200, "{doc}");
    let first = doc["payload"]["backupId"]
        .as_str()
        .expect("backupId")
        .to_owned();

    // While it is pending the cluster shows it and refuses what would disturb it.
    assert_eq!(api.cluster(&id).await["backupPipelineInProgress"], true);
    api.refused(
        DELETE,
        &format!("/api/clusters/{id}"),
        None,
        "has a backup in progress",
    )
    .await;
    api.refused(
        POST,
        &format!("/api/clusters/{id}/workers"),
        Some(workers("m5.xlarge", 1)),
        "has a backup in progress",
    )
    .await;
    api.refused(
        POST,
        "/api/backups",
        Some(backup("first")),
        "already has a backup named first",
    )
    .await;
    api.refused(
        DELETE,
        &format!("/api/backups/{first}"),
        None,
        "is still pending",
    )
    .await;
    api.refused(
        POST,
        &format!("/api/clusters/restore/{first}"),
        Some(json!({ "cluster": { "name": "r" } })),
        "is pending",
    )
    .await;

    // pending for polls_per_state GETs of it, then succeed; listing does not move it.
    let (_, doc) = api.get(&format!("/api/backups?clusterId={id}")).await;
    assert_eq!(doc["payload"]["backups"][0]["state"], "pending");
    let states: Vec<Value> = [
        api.backup(&first).await,
        api.backup(&first).await,
        api.backup(&first).await,
    ]
    .iter()
    .map(|b| b["state"].clone())
    .collect();
    assert_eq!(
        states,
        [json!("pending"), json!("pending"), json!("succeed")]
    );
    let done = api.backup(&first).await;
    assert_eq!(
        (
            done["backupName"].clone(),
            done["clusterId"].clone(),
            done["cloudProvider"].clone(),
            done["stateMessage"].clone()
        ),
        (json!("first"), json!(id), json!("AWS"), json!(""))
    );
    assert_eq!(api.cluster(&id).await["backupPipelineInProgress"], false);

    // A failing one (one-shot knob): failed with stateMessage.
    b.control
        .hopsworks_behaviour(json!({
            "fail_next_backup_with": "snapshot of the RonDB volume failed",
            "polls_per_state": 1 }))
        .await;
    let (_, doc) = api.post("/api/backups", backup("second")).await;
    let second = doc["payload"]["backupId"]
        .as_str()
        .expect("backupId")
        .to_owned();
    assert_eq!(api.backup(&second).await["state"], "pending");
    let failed = api.backup(&second).await;
    assert_eq!(
        (failed["state"].clone(), failed["stateMessage"].clone()),
        (
            json!("failed"),
            json!("snapshot of the RonDB volume failed")
        )
    );
    let (_, doc) = api.post("/api/backups", backup("third")).await;
    let third = doc["payload"]["backupId"]
        .as_str()
        .expect("backupId")
        .to_owned();
    api.backup(&third).await;
    assert_eq!(api.backup(&third).await["state"], "succeed");

    // A deleted backup is gone: 404 "no backup" (a client reads 404 as success).
    api.ok(DELETE, &format!("/api/backups/{second}"), None)
        .await;
    let (status, doc) = api.get(&format!("/api/backups/{second}")).await;
    assert_eq!((status, doc["message"].clone()), (404, json!("no backup")));
    let (status, _) = api.delete(&format!("/api/backups/{second}"), None).await;
    assert_eq!(status, 404);

    // Backups outlive their cluster.
    api.ok(DELETE, &format!("/api/clusters/{id}"), None).await;
    assert_eq!(api.states(&id, 1).await, ["shutting-down"]);
    let (status, _) = api.get(&format!("/api/clusters/{id}")).await;
    assert_eq!(status, 404);
    let (_, doc) = api.get(&format!("/api/backups?clusterId={id}")).await;
    let names: Vec<Value> = doc["payload"]["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .map(|b| b["backupName"].clone())
        .collect();
    assert_eq!(names, [json!("first"), json!("third")]);
    let (_, doc) = api.get("/api/backups?clusterId=someone-else").await;
    assert_eq!(doc["payload"]["backups"], json!([]));
    let all = b.control.hopsworks_backups().await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[1]["bench"]["deleted"], true);
    assert_eq!(all[0]["bench"]["snapshot"]["spec"]["name"], "backed-up");
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_makes_a_new_cluster_from_the_snapshot_with_the_requests_overrides() {
    let b = bench().await;
    let api = &b.api;
    let backup = b
        .control
        .create_hopsworks_backup(json!({
            "name": "original", "version": "4.0.0", "eksClusterName": "restored-eks",
            "clusterConfiguration": {
                "head": { "instanceType": "m5.4xlarge", "diskSize": 512, "haEnabled": false },
                "workers": [{ "instanceType": "m5.xlarge", "diskSize": 512, "count": 2 }] },
            "tags": [{ "name": "team", "value": "old" }] }))
        .await;
    assert_eq!(backup["state"], "succeed");
    let backup_id = backup["backupId"].as_str().expect("backupId").to_owned();
    let restore = format!("/api/clusters/restore/{backup_id}");

    let (status, doc) = api
        .post(
            "/api/clusters/restore/no-such-backup",
            json!({ "cluster": {} }),
        )
        .await;
    assert_eq!((status, doc["message"].clone()), (404, json!("no backup")));
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "bucketName": "b" } })),
        "unexpected field cluster.bucketName",
    )
    .await;
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "instanceProfileArn": "arn:aws:iam::1:role/x" } })),
        "invalid cluster.instanceProfileArn",
    )
    .await;
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "tags": [{ "name": "a" }] } })),
        "cluster.tags[0].value is required",
    )
    .await;
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "autoscale": autoscale(2)["autoscale"] } })),
        "workers and autoscale cannot both be set",
    )
    .await;
    let other = b.running("taken").await;
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "name": "taken" } })),
        "a cluster named taken already exists",
    )
    .await;

    let tags = json!([{ "name": "team", "value": "new" }]);
    let (status, doc) = api
        .post(
            &restore,
            json!({ "cluster": { "name": "restored", "tags": tags, "sshKeyName": "key" } }),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    let id = doc["payload"]["id"].as_str().expect("id").to_owned();
    assert_ne!(id, other);
    assert_eq!(
        api.states(&id, 4).await,
        ["pending", "initializing", "starting-hopsworks", "running"]
    );
    let c = api.cluster(&id).await;
    assert_eq!(
        (
            c["name"].clone(),
            c["tags"].clone(),
            c["sshKeyName"].clone(),
            c["version"].clone()
        ),
        (json!("restored"), tags, json!("key"), json!("4.0.0"))
    );
    assert_eq!(
        c["clusterConfiguration"]["head"]["instanceType"],
        "m5.4xlarge"
    );
    assert_eq!(c["clusterConfiguration"]["workers"][0]["count"], 2);
    assert_eq!(c["aws"]["eksClusterName"], "restored-eks");
    assert_eq!(
        b.control.hopsworks_cluster(&id).await["bench"]["restored_from"],
        json!(backup_id)
    );

    // One Hopsworks cluster per EKS cluster: a second restore of it is refused.
    api.refused(
        POST,
        &restore,
        Some(json!({ "cluster": { "name": "again" } })),
        "EKS cluster restored-eks is already used",
    )
    .await;

    // A restore boots as a create does, failure knob included.
    let (_, doc) = api
        .post(
            "/api/backups",
            json!({ "backup": { "clusterId": id, "backupName": "of-restored" } }),
        )
        .await;
    let again = doc["payload"]["backupId"]
        .as_str()
        .expect("backupId")
        .to_owned();
    api.backup(&again).await;
    assert_eq!(api.backup(&again).await["state"], "succeed");
    api.ok(DELETE, &format!("/api/clusters/{id}"), None).await;
    assert_eq!(api.states(&id, 1).await, ["shutting-down"]);
    assert_eq!(api.get(&format!("/api/clusters/{id}")).await.0, 404);
    b.control
        .hopsworks_behaviour(json!({ "fail_next_with": "no capacity" }))
        .await;
    let (_, doc) = api
        .post(
            &format!("/api/clusters/restore/{again}"),
            json!({ "cluster": {} }),
        )
        .await;
    let failing = doc["payload"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.states(&failing, 3).await,
        ["pending", "initializing", "error"]
    );
    assert_eq!(api.cluster(&failing).await["name"], "restored");
}

#[tokio::test(flavor = "multi_thread")]
async fn new_endpoints_meet_faults_and_the_request_log_without_the_key() {
    let b = bench().await;
    let api = &b.api;
    let id = b.running("faulty").await;

    // A status fault before applying: nothing changes.
    b.control
        .hopsworks_fault(json!({
            "kind": "status", "status": 503, "method": "POST", "path_contains": "/workers" }))
        .await;
    let (status, _) = api
        .post(
            &format!("/api/clusters/{id}/workers"),
            workers("m5.xlarge", 1),
        )
        .await;
    assert_eq!(status, 503);
    assert_eq!(api.cluster(&id).await["state"], "running");

    // A dropped answer after applying: the backup exists though the caller heard nothing.
    b.control
        .hopsworks_fault(json!({
            "kind": "drop", "after": true, "method": "POST", "path_contains": "/api/backups" }))
        .await;
    let sent = api
        .http
        .post(format!("{}/api/backups", api.base))
        .header("x-api-key", &api.key)
        .header("hopsai-api-version", "v1")
        .header("Content-Type", "application/json")
        .body(json!({ "backup": { "clusterId": id, "backupName": "dropped" } }).to_string())
        .send()
        .await;
    assert!(sent.is_err(), "the answer should have been dropped");
    let (_, doc) = api.get(&format!("/api/backups?clusterId={id}")).await;
    assert_eq!(doc["payload"]["backups"][0]["backupName"], "dropped");

    // skip: the first matching GET of a backup passes, the second is refused.
    let backup_id = doc["payload"]["backups"][0]["backupId"]
        .as_str()
        .expect("id")
        .to_owned();
    b.control
        .hopsworks_fault(
            json!({ "kind": "status", "status": 429, "skip": 1, "path_contains": "/api/backups/" }),
        )
        .await;
    assert_eq!(api.backup(&backup_id).await["state"], "pending");
    let (status, _) = api.get(&format!("/api/backups/{backup_id}")).await;
    assert_eq!(status, 429);

    // Without the key: 403 in plain text, on the new endpoints too.
    let response = api
        .http
        .get(format!("{}/api/clusters/hopsworks/versions/AWS", api.base))
        .header("hopsai-api-version", "v1")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(response.text().await.unwrap_or_default(), "Unauthorized");

    let log = b.control.hopsworks_requests().await;
    let seen: Vec<(String, String, u64)> = log
        .iter()
        .filter(|r| r["path"] != format!("/api/clusters/{id}"))
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (
                text("method"),
                text("path"),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "POST".to_owned(),
                format!("/api/clusters/{id}/workers"),
                503
            ),
            ("POST".to_owned(), "/api/backups".to_owned(), 200),
            ("GET".to_owned(), "/api/backups".to_owned(), 200),
            ("GET".to_owned(), format!("/api/backups/{backup_id}"), 200),
            ("GET".to_owned(), format!("/api/backups/{backup_id}"), 429),
            (
                "GET".to_owned(),
                "/api/clusters/hopsworks/versions/AWS".to_owned(),
                403
            ),
        ]
    );
    let dropped = &log
        .iter()
        .find(|r| r["path"] == "/api/backups")
        .expect("logged");
    assert_eq!(dropped["answered"], false);
    assert!(
        dropped["body"]
            .as_str()
            .unwrap_or_default()
            .contains("\"dropped\"")
    );
    let text = serde_json::to_string(&log).unwrap_or_default();
    assert!(
        !text.contains(&api.key),
        "the request log holds the API key"
    );
}
