//! Talking to the bench's Kubernetes API doubles as a given AWS principal would: with the same
//! in-process EKS token the product makes, over TLS that trusts only the cluster's CA.

use crate::aws::{Identity, Seeded};
use aws_credential_types::Credentials;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::time::SystemTime;

pub fn credentials(identity: &Identity) -> Credentials {
    Credentials::new(
        identity.access_key_id.clone(),
        identity.secret_access_key.clone(),
        Some(identity.session_token.clone()),
        None,
        "bench",
    )
}

/// A client of `cluster`'s API server authenticated as `identity`.
pub struct KubeAs {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

impl KubeAs {
    pub fn new(seeded: &Seeded, cluster: &str, identity: &Identity) -> Self {
        let kube = &seeded.kube[cluster];
        Self::at(seeded, cluster, &kube.endpoint, &kube.ca_pem, identity)
    }

    /// A client of a cluster the bench did not seed (one a stack created), found as a user finds
    /// it: its endpoint and CA from `DescribeCluster`.
    pub async fn described(aws: &crate::aws::AwsBench, cluster: &str, identity: &Identity) -> Self {
        let described = aws
            .query(&format!(
                "import base64, boto3, json, os\nc = boto3.client('eks', endpoint_url=os.environ['BENCH_ENDPOINT']).describe_cluster(name={cluster:?})['cluster']\nprint(json.dumps({{'endpoint': c['endpoint'], 'ca': base64.b64decode(c['certificateAuthority']['data']).decode()}}))"
            ))
            .await;
        let text = |k: &str| described[k].as_str().unwrap_or_default().to_owned();
        Self::at(
            &aws.seeded,
            cluster,
            &text("endpoint"),
            &text("ca"),
            identity,
        )
    }

    fn at(
        seeded: &Seeded,
        cluster: &str,
        endpoint: &str,
        ca_pem: &str,
        identity: &Identity,
    ) -> Self {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM");
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .expect("client");
        let token = eks_access::token::token(
            &credentials(identity),
            &seeded.region,
            cluster,
            SystemTime::now(),
        )
        .expect("token")
        .into_secret();
        Self {
            http,
            endpoint: endpoint.to_owned(),
            token: token.expose_secret().to_owned(),
        }
    }

    /// `SelfSubjectReview`: who the API server takes the caller for. `Err(status)` when refused.
    pub async fn whoami(&self) -> Result<(String, Vec<String>), u16> {
        let response = self
            .http
            .post(format!(
                "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                self.endpoint
            ))
            .bearer_auth(&self.token)
            .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
            .send()
            .await
            .expect("API server reachable");
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(status);
        }
        let body: Value = response.json().await.unwrap_or_default();
        let user = &body["status"]["userInfo"];
        let groups = user["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            user["username"].as_str().unwrap_or_default().to_owned(),
            groups,
        ))
    }

    /// GET-modify-PUT aws-auth with resourceVersion, retrying on 409, as a well-behaved client
    /// (aws-iam-authenticator's `add role`) does: append `entry` to mapRoles.
    pub async fn append_map_role(&self, entry: &str) -> u32 {
        let url = format!(
            "{}/api/v1/namespaces/kube-system/configmaps/aws-auth",
            self.endpoint
        );
        for attempt in 1..=200 {
            let current: Value = self
                .http
                .get(&url)
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("GET aws-auth")
                .json()
                .await
                .expect("JSON");
            let mut updated = current.clone();
            let roles = current["data"]["mapRoles"].as_str().unwrap_or_default();
            updated["data"]["mapRoles"] = json!(format!("{roles}{entry}"));
            let status = self
                .http
                .put(&url)
                .bearer_auth(&self.token)
                .json(&updated)
                .send()
                .await
                .expect("PUT aws-auth")
                .status()
                .as_u16();
            match status {
                200 => return attempt,
                409 => {
                    tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..20))).await
                }
                other => panic!("PUT aws-auth answered {other}"),
            }
        }
        panic!("no write got through in 200 attempts")
    }
}

/// Other clients of aws-auth (as the cluster's creator), each appending its own role with
/// read-modify-write and retries; each task gives its number of attempts.
pub fn spawn_writers(s: &Seeded, ids: std::ops::Range<u32>) -> Vec<tokio::task::JoinHandle<u32>> {
    ids.map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            let admin = KubeAs::new(&s, &s.cluster.name, &s.identities.creator);
            let entry = format!(
                "- rolearn: arn:aws:iam::123456789012:role/writer-{i}\n  username: writer-{i}\n  groups:\n  - team\n"
            );
            admin.append_map_role(&entry).await
        })
    })
    .collect()
}
