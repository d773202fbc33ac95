//! The functions under test: ours (compiled, from `FUNCTION_BIN_DIR` or a debug build) and the
//! Python baseline (bench/baseline/ under awslambdaric, from the .venv/baseline venv).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use system_tests::aws::Seeded;
use system_tests::faults::FaultProxy;
use system_tests::lambda::{FunctionConfig, LambdaFunction};

const TIMEOUT: Duration = Duration::from_secs(60);

pub fn baseline_python() -> PathBuf {
    system_tests::workspace().join(".venv/baseline/bin/python")
}

/// A baseline handler, `module.handler` in bench/baseline/, as Lambda's Python runtime runs it.
fn baseline(name: &str, module: &str, env: &[(&str, &str)]) -> LambdaFunction {
    let mut config = FunctionConfig::new(name, baseline_python());
    config.timeout = TIMEOUT;
    config.args = vec![
        "-m".to_owned(),
        "awslambdaric".to_owned(),
        format!("{module}.handler"),
    ];
    // The handlers, and bench_site/sitecustomize.py: crhelper answers over HTTPS only, the
    // bench's ResponseURL is plain HTTP on loopback.
    let task_root = system_tests::workspace().join("bench/baseline");
    config.env.push((
        "PYTHONPATH".to_owned(),
        format!("{0}:{0}/bench_site", task_root.display()),
    ));
    config
        .env
        .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    LambdaFunction::new(config)
}

/// Every function the benchmarks run, all sending their AWS calls through `proxy`.
pub struct Functions {
    pub discovery: LambdaFunction,
    pub discovery_py: LambdaFunction,
    pub eks_access: LambdaFunction,
    pub aws_auth_py: LambdaFunction,
    pub ingress: LambdaFunction,
    pub hopsworks: Arc<LambdaFunction>,
    /// Ours again, with the system CA store as Lambda's image has it (one bundle file): this
    /// machine's /etc/ssl/certs holds ~290 files, which our TLS stack reads at start-up.
    pub one_bundle: Vec<(&'static str, LambdaFunction)>,
}

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `f` with `SSL_CERT_FILE` the system bundle and `SSL_CERT_DIR` an empty directory.
fn with_one_bundle(f: &LambdaFunction) -> LambdaFunction {
    let empty = system_tests::workspace().join("target/bench/empty-cert-dir");
    let _ = std::fs::create_dir_all(&empty);
    let mut config = f.config().clone();
    config
        .env
        .push(("SSL_CERT_FILE".to_owned(), CA_BUNDLE.to_owned()));
    config.env.push((
        "SSL_CERT_DIR".to_owned(),
        empty.to_string_lossy().into_owned(),
    ));
    LambdaFunction::new(config)
}

impl Functions {
    pub fn new(seeded: &Seeded, proxy: &FaultProxy) -> Self {
        let endpoint = proxy.endpoint();
        let id = &seeded.identities.function;
        let function_role = [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", id.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", id.secret_access_key.as_str()),
            ("AWS_SESSION_TOKEN", id.session_token.as_str()),
        ];
        let discovery = system_tests::discovery_function(endpoint, TIMEOUT);
        let eks_access = system_tests::eks_access_function(seeded, endpoint, TIMEOUT);
        let one_bundle = if std::path::Path::new(CA_BUNDLE).exists() {
            vec![
                (
                    "cluster-discovery, one CA bundle",
                    with_one_bundle(&discovery),
                ),
                ("eks-access, one CA bundle", with_one_bundle(&eks_access)),
            ]
        } else {
            Vec::new()
        };
        Self {
            discovery,
            discovery_py: baseline(
                "baseline-ClusterDiscovery",
                "discovery",
                &[("AWS_ENDPOINT_URL", endpoint)],
            ),
            eks_access,
            aws_auth_py: baseline("baseline-EksAccess", "aws_auth", &function_role),
            ingress: system_tests::ingress_function(endpoint, TIMEOUT),
            hopsworks: system_tests::hopsworks_cluster_function(seeded, proxy, TIMEOUT),
            one_bundle,
        }
    }

    /// (label, function) for start-up, ours and the baseline interleaved.
    pub fn start_up_order(&self) -> Vec<(&'static str, &LambdaFunction)> {
        let mut order = vec![
            ("cluster-discovery", &self.discovery),
            ("baseline discovery.py", &self.discovery_py),
            ("eks-access", &self.eks_access),
            ("baseline aws_auth.py", &self.aws_auth_py),
            ("security-group-ingress", &self.ingress),
            ("hopsworks-cluster", &*self.hopsworks),
        ];
        order.extend(self.one_bundle.iter().map(|(label, f)| (*label, f)));
        order
    }
}

/// The binaries behind our functions (for their zips).
pub const BINARIES: [&str; 4] = [
    "cluster-discovery",
    "eks-access",
    "security-group-ingress",
    "hopsworks-cluster",
];
