//! The benchmarks' smoke pass: `bench --smoke` runs every measurement once on the debug builds,
//! the Python baseline included, so that `make bench` cannot rot between releases. The figures
//! themselves are not judged here (debug builds on a busy machine); their presence is.

use serde_json::Value;
use std::process::Command;

fn median(v: &Value) -> f64 {
    v["median"].as_f64().unwrap_or(f64::NAN)
}

fn assert_measured(section: &Value, keys: &[&str]) {
    for key in keys {
        let m = median(&section[*key]);
        assert!(m > 0.0, "{key}: no measurement in {section:#}");
    }
}

#[test]
fn the_benchmarks_measure_every_metric_for_ours_and_the_baseline() {
    // Builds the function binaries (debug) if they are missing.
    for bin in [
        "cluster-discovery",
        "eks-access",
        "security-group-ingress",
        "hopsworks-cluster",
    ] {
        assert!(system_tests::function_binary(bin).exists());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (md, json) = (
        dir.path().join("RESULTS.md"),
        dir.path().join("results.json"),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--smoke")
        .arg("--out")
        .arg(&md)
        .arg("--json")
        .arg(&json)
        .env_remove("FUNCTION_BIN_DIR")
        .output()
        .expect("the bench runs");
    assert!(
        output.status.success(),
        "bench --smoke failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report"))
        .expect("the JSON report parses");

    assert_measured(
        &r["start_up"]["ms"],
        &[
            "cluster-discovery",
            "eks-access",
            "security-group-ingress",
            "hopsworks-cluster",
            "baseline discovery.py",
            "baseline aws_auth.py",
        ],
    );
    let invocations = [
        "discovery: ours",
        "discovery: baseline",
        "aws-auth mapping: ours",
        "aws-auth mapping: baseline",
    ];
    assert_measured(&r["peak_rss"], &invocations);
    assert_measured(&r["end_to_end"]["ms"], &invocations);
    assert_eq!(
        r["end_to_end"]["attribute_mismatches"],
        serde_json::json!([]),
        "the baseline does not do the same job"
    );

    let calls = &r["api_calls"];
    assert_eq!(calls["discovery: ours"]["total"], 4, "{calls:#}");
    assert_eq!(
        calls["aws-auth mapping, no-op: ours"]["total"], 3,
        "{calls:#}"
    );
    for op in [
        "discovery: baseline",
        "aws-auth mapping: ours",
        "aws-auth mapping: baseline",
        "aws-auth unmapping: ours",
        "aws-auth unmapping: baseline",
        "Hopsworks cluster create: ours",
        "Hopsworks cluster delete: ours",
    ] {
        assert!(calls[op]["total"].as_u64() > Some(0), "{op}: {calls:#}");
    }

    for (key, lost) in r["scale"]["lost"].as_object().expect("scale ran") {
        assert_eq!(lost, &serde_json::json!([]), "{key} lost entries");
    }
    assert_measured(&r["scale"]["ms"], &["10: ours", "10: baseline"]);
    assert_eq!(r["scale"]["restored_exactly"]["10: ours"], true);
    for who in ["ours", "baseline"] {
        assert_eq!(
            r["concurrent_writers"]["lost"][who],
            serde_json::json!([]),
            "{who}: concurrent writers lost entries"
        );
    }

    let sizes = r["deployment_size"].as_object().expect("sizes measured");
    assert_eq!(sizes.len(), 6, "{sizes:#?}");
    for (name, size) in sizes {
        assert!(size["zip_bytes"].as_u64() > Some(0), "{name}");
    }

    let text = std::fs::read_to_string(&md).expect("Markdown report");
    for title in [
        "## Summary",
        "## Start-up",
        "## Peak RSS",
        "## End-to-end time",
        "## Deployment size",
        "## API calls per operation",
        "## aws-auth at scale",
        "## Concurrent writers",
    ] {
        assert!(text.contains(title), "{title} missing from the report");
    }
}
