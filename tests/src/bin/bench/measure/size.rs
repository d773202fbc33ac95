//! Deployment size: each function's zip and the baseline's, deflated by the same code.

use crate::functions::BINARIES;
use crate::report::{Report, table};
use serde_json::{Value, json};
use std::process::Command;

/// `bench/baseline/package.py OUT.zip --level=<level> <args>`: the zip's size and file count.
/// Ours and the baseline's are deflated by the same code (Python's zipfile).
fn package(level: u32, args: &[String]) -> (u64, Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let zip = dir.path().join("package.zip");
    let out = Command::new(crate::functions::baseline_python())
        .arg(system_tests::workspace().join("bench/baseline/package.py"))
        .arg(&zip)
        .arg(format!("--level={level}"))
        .args(args)
        .output()
        .expect("the baseline venv's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("package.py prints JSON");
    (
        v["zip_bytes"].as_u64().unwrap_or_default(),
        v["files"].clone(),
    )
}

pub(super) fn deployment_size(level: u32, report: &mut Report) {
    let mut rows = Vec::new();
    let mut figures = serde_json::Map::new();
    let mb = |b: u64| b as f64 / 1_000_000.0;
    for bin in BINARIES {
        let path = system_tests::function_binary(bin);
        let binary = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default();
        let (zip, _) = package(level, &[format!("--file={}:bootstrap", path.display())]);
        rows.push(vec![
            format!("`{bin}`"),
            format!("{:.2}", mb(binary)),
            format!("**{:.2}**", mb(zip)),
        ]);
        figures.insert(
            bin.to_owned(),
            json!({"binary_bytes": binary, "zip_bytes": zip}),
        );
    }
    for (label, extra) in [
        (
            "baseline (crhelper + kubernetes; boto3 from the runtime)",
            vec![],
        ),
        (
            "baseline with boto3 packaged too",
            vec!["--with-boto3".to_owned()],
        ),
    ] {
        let (bytes, files) = package(level, &extra);
        rows.push(vec![
            label.to_owned(),
            "—".to_owned(),
            format!("**{:.2}**", mb(bytes)),
        ]);
        figures.insert(
            label.to_owned(),
            json!({"zip_bytes": bytes, "files": files}),
        );
    }
    let text = format!(
        "Deflated at level {level}.\n\n{}",
        table(&["package", "binary MB", "zip MB"], &rows)
    );
    report.section(
        "deployment_size",
        "Deployment size",
        &text,
        Value::Object(figures),
    );
}
