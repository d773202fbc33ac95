//! TCP_NODELAY: where each local server sets it.

use crate::report::{Report, table};
use serde_json::json;

pub(super) fn tcp_nodelay(report: &mut Report) {
    let rows = [
        ("Lambda Runtime API, ResponseURL receiver, fault proxy (Rust, axum)", "tests/src/server.rs: `set_nodelay(true)` on every accepted connection"),
        ("moto (werkzeug) with the EKS shim", "tests/bench/aws_bench.py: `NoDelayRequestHandler.disable_nagle_algorithm`"),
        ("Kubernetes API doubles, control API, Hopsworks.ai double", "tests/bench/kube_double.py: `LoopbackHTTPServer.get_request` sets `TCP_NODELAY`; `JsonHandler.disable_nagle_algorithm`"),
    ]
    .map(|(s, w)| vec![s.to_owned(), w.to_owned()]);
    let text = format!(
        "Every local server sets `TCP_NODELAY`, as Lambda's Runtime API does (else delayed ACKs \
         add ~40 ms per request that belong to no function).\n\n{}",
        table(&["server", "where"], &rows)
    );
    report.section("tcp_nodelay", "TCP_NODELAY", &text, json!(true));
}
