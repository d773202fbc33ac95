//! `make bench`: our functions against the Python stack a user would otherwise write (crhelper +
//! boto3 + the kubernetes client under awslambdaric), side by side in one run on the local bench.
//!
//! Start-up, peak RSS, end-to-end time and its emulator share, deployment size, API calls per
//! operation, aws-auth at scale and under 50 concurrent writers. Runs of ours and the baseline
//! are interleaved (A, B, A, B); figures are min / median / max over the runs, and ratios are
//! taken pair by pair. Writes a Markdown report and the same figures as JSON.
//!
//! ```text
//! bench [--iterations N] [--smoke] [--out bench/RESULTS.md] [--json target/bench/results.json]
//!       [--binaries "how they were built"] [--only start-up|invocations|scale|size]
//! ```
//! `FUNCTION_BIN_DIR` names the directory of our (release) binaries; without it, debug builds.
//! `--smoke` is one quick pass of every measurement (the test suite runs it).

mod functions;
mod measure;
mod report;
mod runs;
mod stats;

use std::path::PathBuf;

pub struct Options {
    pub iterations: usize,
    pub smoke: bool,
    pub out: PathBuf,
    pub json: PathBuf,
    pub binaries: String,
    /// One section only: start-up, invocations, scale or size.
    pub only: Option<String>,
}

fn options() -> Result<Options, String> {
    let workspace = system_tests::workspace();
    let mut o = Options {
        iterations: 10,
        smoke: false,
        out: workspace.join("bench/RESULTS.md"),
        json: workspace.join("target/bench/results.json"),
        binaries: match std::env::var("FUNCTION_BIN_DIR") {
            Ok(dir) => format!("prebuilt, from {dir}"),
            Err(_) => "debug builds (cargo build)".to_owned(),
        },
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--iterations" => {
                o.iterations = value()?.parse().map_err(|e| format!("--iterations: {e}"))?
            }
            "--smoke" => o.smoke = true,
            "--out" => o.out = PathBuf::from(value()?),
            "--json" => o.json = PathBuf::from(value()?),
            "--binaries" => o.binaries = value()?,
            "--only" => o.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.smoke {
        o.iterations = 1;
    }
    if o.iterations == 0 {
        return Err("--iterations must be at least 1".to_owned());
    }
    Ok(o)
}

fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(2);
        }
    };
    let python = functions::baseline_python();
    if !python.exists() {
        eprintln!(
            "bench: {} is missing: run `make bench-venv` (make bench does)",
            python.display()
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(measure::all(&options));
    report.write(&options);
}
