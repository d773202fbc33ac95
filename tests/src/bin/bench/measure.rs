//! The measurements, one section of the report each.

use crate::Options;
use crate::functions::BINARIES;
use crate::report::{Report, table};
use crate::runs::{Bench, DISCOVERY, EKS_ACCESS, HOPSWORKS, Invocation, Op, ms, summarize};
use crate::stats::Samples;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;
use system_tests::kube::spawn_writers;
use system_tests::lambda::LambdaFunction;

const MIB: f64 = 1024.0;

pub async fn all(o: &Options) -> Report {
    let mut report = Report::default();
    report.header(o);
    let bench = Bench::start().await;
    let run = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    if run("start-up") {
        start_up(&bench, o, &mut report).await;
    }
    if run("invocations") {
        let first = invocations(&bench, o, &mut report).await;
        api_calls(&bench, first, &mut report).await;
    }
    if run("scale") {
        let sizes: &[usize] = if o.smoke { &[10] } else { &[10, 1000, 5000] };
        scale(&bench, sizes, o.iterations.min(3), &mut report).await;
        let writers = if o.smoke { 5 } else { 50 };
        concurrent(&bench, writers, o.iterations.min(3), &mut report).await;
    }
    if run("size") {
        // The smoke pass compresses fast: its debug binaries are big and its figures moot.
        deployment_size(if o.smoke { 1 } else { 9 }, &mut report);
    }
    tcp_nodelay(&mut report);
    report
}

/// Samples by label, in first-seen order.
#[derive(Default)]
struct Series(Vec<(String, Samples)>);

impl Series {
    fn push(&mut self, label: &str, v: f64) {
        match self.0.iter_mut().find(|(l, _)| l == label) {
            Some((_, s)) => s.push(v),
            None => self.0.push((label.to_owned(), Samples(vec![v]))),
        }
    }

    fn get(&self, label: &str) -> Samples {
        self.0
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        Value::Object(self.0.iter().map(|(l, s)| (l.clone(), s.json())).collect())
    }
}

async fn start_up(b: &Bench, o: &Options, report: &mut Report) {
    let (mut time, mut rss) = (Series::default(), Series::default());
    for _ in 0..o.iterations {
        for (label, f) in b.functions.start_up_order() {
            let (d, kib) = b.start_up(f).await;
            if o.smoke {
                eprintln!("bench: start-up of {label}: {:.1} ms", ms(d));
            }
            time.push(label, ms(d));
            rss.push(label, kib as f64 / MIB);
        }
    }
    // Each of ours against the baseline doing its job; ingress and Hopsworks against the
    // discovery baseline (crhelper + boto3: what a Python version of them would import).
    let against = |label: &str| {
        if label.starts_with("eks-access") {
            "baseline aws_auth.py"
        } else {
            "baseline discovery.py"
        }
    };
    let mut rows = Vec::new();
    let mut ratios = Series::default();
    for (label, samples) in &time.0 {
        let ratio = if label.starts_with("baseline") {
            "—".to_owned()
        } else {
            let r = samples.ratios_from(&time.get(against(label)));
            for v in &r.0 {
                ratios.push(label, *v);
            }
            format!("**{}** (vs {})", r.text(0), against(label))
        };
        rows.push(vec![
            format!("`{label}`"),
            samples.text(1),
            ratio,
            rss.get(label).text(1),
        ]);
    }
    let text = format!(
        "Exec to the first Runtime API `/next` poll, nothing invoked (goal: at least 50× faster). \
         \"one CA bundle\": the same binary with the system CA store as Lambda's image has it, one \
         bundle file (`SSL_CERT_FILE`, an empty `SSL_CERT_DIR`), where this Debian machine's \
         /etc/ssl/certs holds ~290 files that our TLS stack reads before the first poll; the \
         baseline reads certifi's one bundle either way.\n\n{}",
        table(
            &[
                "function",
                "start-up ms",
                "× faster (baseline / ours, per pair)",
                "VmHWM at first /next, MiB"
            ],
            &rows
        )
    );
    report.section(
        "start_up",
        "Start-up",
        &text,
        json!({"ms": time.json(), "times_faster": ratios.json(), "vm_hwm_mib": rss.json()}),
    );
}

/// The invocations of the first iteration, for the API-call table.
pub struct First {
    runs: BTreeMap<&'static str, Invocation>,
}

/// What the invocations cost, by operation.
#[derive(Default)]
struct Costs {
    e2e: Series,
    rss: Series,
    moto: Series,
    kube: Series,
    start: Series,
    rest: Series,
}

impl Costs {
    fn record(&mut self, key: &str, run: &Invocation) {
        let up = run.start_up.unwrap_or_default();
        self.e2e.push(key, ms(run.end_to_end));
        self.rss.push(key, run.vm_hwm_kib as f64 / MIB);
        self.moto.push(key, ms(run.moto));
        self.kube.push(key, ms(run.kube));
        self.start.push(key, ms(up));
        self.rest.push(
            key,
            ms(run.end_to_end) - ms(up) - ms(run.moto) - ms(run.kube),
        );
    }
}

async fn invocations(b: &Bench, o: &Options, report: &mut Report) -> First {
    let f = &b.functions;
    let mut costs = Costs::default();
    let mut first = First {
        runs: BTreeMap::new(),
    };
    let keep = |first: &mut First, i: usize, key: &'static str, run: Invocation| {
        if i == 0 {
            first.runs.insert(key, run);
        }
    };
    let mut mismatches = Vec::new();
    for i in 0..o.iterations {
        let ours = cold_create(b, &f.discovery, DISCOVERY, b.discovery_props()).await;
        let theirs = cold_create(b, &f.discovery_py, DISCOVERY, b.discovery_props()).await;
        if i == 0 {
            mismatches = differences(&ours.answer.data, &theirs.answer.data);
        }
        costs.record("discovery: ours", &ours);
        costs.record("discovery: baseline", &theirs);
        keep(&mut first, i, "discovery: ours", ours);
        keep(&mut first, i, "discovery: baseline", theirs);
        for (key, unmap_key, function) in [
            (
                "aws-auth mapping: ours",
                "aws-auth unmapping: ours",
                &f.eks_access,
            ),
            (
                "aws-auth mapping: baseline",
                "aws-auth unmapping: baseline",
                &f.aws_auth_py,
            ),
        ] {
            let mapped = cold_create(b, function, EKS_ACCESS, b.eks_access_props()).await;
            let id = mapped.answer.physical_id.clone();
            costs.record(key, &mapped);
            keep(&mut first, i, key, mapped);
            let unmapped = unmap(b, function, &id).await;
            keep(&mut first, i, unmap_key, unmapped);
        }
    }
    let Costs {
        e2e,
        rss,
        moto,
        kube,
        start,
        rest,
    } = costs;
    let pairs = [
        ("discovery", "discovery: ours", "discovery: baseline"),
        (
            "aws-auth mapping",
            "aws-auth mapping: ours",
            "aws-auth mapping: baseline",
        ),
    ];
    let mut rss_rows = Vec::new();
    for (op, ours, theirs) in pairs {
        // ours / baseline, pair by pair: the goal is at most a fifth
        let fraction = rss.get(theirs).ratios_from(&rss.get(ours));
        rss_rows.push(vec![
            op.to_owned(),
            rss.get(ours).text(1),
            rss.get(theirs).text(1),
            format!("**{}**", fraction.text(3)),
        ]);
    }
    let rss_text = format!(
        "Peak resident set (`VmHWM` from the process's own `/proc/<pid>/status`, read while it is \
         parked at `/next` after answering) of one cold invocation: start-up and the whole \
         Create (goal: ours at most a fifth of the baseline).\n\n{}",
        table(
            &[
                "operation",
                "ours MiB",
                "baseline MiB",
                "ours / baseline (per pair)"
            ],
            &rss_rows
        )
    );
    report.section("peak_rss", "Peak RSS", &rss_text, rss.json());

    let mut rows = Vec::new();
    for (_, ours, theirs) in pairs {
        for key in [ours, theirs] {
            let share = Samples(
                e2e.get(key)
                    .0
                    .iter()
                    .zip(moto.get(key).0.iter().zip(&kube.get(key).0))
                    .map(|(e, (m, k))| 100.0 * (m + k) / e)
                    .collect(),
            );
            rows.push(vec![
                key.to_owned(),
                format!("**{}**", e2e.get(key).text(0)),
                start.get(key).text(1),
                moto.get(key).text(0),
                kube.get(key).text(0),
                rest.get(key).text(0),
                share.text(0),
            ]);
        }
    }
    let mut text = format!(
        "One cold Create, exec to the ResponseURL PUT. moto and the Kubernetes double are \
         Python: their time is how long at least one request was waiting for them (moto: \
         measured at the proxy in front of it, concurrent requests counted once; the double: \
         its own handling time, summed). \"rest\" is end-to-end less start-up and the \
         emulators: the function's own work, TLS, the proxy and loopback.\n\n{}",
        table(
            &[
                "operation",
                "end-to-end ms",
                "start-up ms",
                "moto ms",
                "Kubernetes double ms",
                "rest ms",
                "emulators' share %",
            ],
            &rows
        )
    );
    let _ = std::fmt::Write::write_fmt(
        &mut text,
        format_args!(
            "\nSame job: the baseline's discovery attributes {}.\n",
            if mismatches.is_empty() {
                "equal ours".to_owned()
            } else {
                format!("differ from ours in {}", mismatches.join(", "))
            }
        ),
    );
    report.section(
        "end_to_end",
        "End-to-end time of one invocation",
        &text,
        json!({"ms": e2e.json(), "start_up_ms": start.json(), "moto_ms": moto.json(),
               "kube_ms": kube.json(), "rest_ms": rest.json(), "attribute_mismatches": mismatches}),
    );
    first
}

async fn cold_create(
    b: &Bench,
    f: &LambdaFunction,
    kind: (&str, &str),
    props: Value,
) -> Invocation {
    let run = b.invoke(f, kind, Op::Create(props), true).await;
    assert!(
        run.answer.is_success(),
        "{} failed: {}",
        f.config().name,
        run.answer.reason
    );
    run
}

/// The Delete of the mapping `id` made (warm), which must succeed.
async fn unmap(b: &Bench, f: &LambdaFunction, id: &str) -> Invocation {
    let run = b
        .invoke(f, EKS_ACCESS, Op::Delete(id, b.eks_access_props()), false)
        .await;
    assert!(run.answer.is_success(), "{}", run.answer.reason);
    run
}

fn differences(
    ours: &serde_json::Map<String, Value>,
    theirs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    ours.iter()
        .filter(|(k, v)| theirs.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

async fn api_calls(b: &Bench, mut first: First, report: &mut Report) {
    let f = &b.functions;
    // No-op: the role already mapped as we would map it.
    let original = b.map_roles().await;
    let entry = format!(
        "- rolearn: {}\n  username: hopsworks\n  groups:\n  - system:masters\n",
        b.aws.seeded.hopsworks.role_arn_without_path
    );
    for (key, function) in [
        ("aws-auth mapping, no-op: ours", &f.eks_access),
        ("aws-auth mapping, no-op: baseline", &f.aws_auth_py),
    ] {
        b.control
            .set_map_roles(b.cluster(), &format!("{original}{entry}"))
            .await;
        let run = cold_create(b, function, EKS_ACCESS, b.eks_access_props()).await;
        first.runs.insert(key, run);
    }
    b.control.set_map_roles(b.cluster(), &original).await;
    let created = cold_create(b, &f.hopsworks, HOPSWORKS, b.hopsworks_props()).await;
    let id = created.answer.physical_id.clone();
    first.runs.insert("Hopsworks cluster create: ours", created);
    let deleted = b
        .invoke(
            &f.hopsworks,
            HOPSWORKS,
            Op::Delete(&id, b.hopsworks_props()),
            false,
        )
        .await;
    assert!(deleted.answer.is_success(), "{}", deleted.answer.reason);
    first.runs.insert("Hopsworks cluster delete: ours", deleted);

    let order = [
        "discovery: ours",
        "discovery: baseline",
        "aws-auth mapping: ours",
        "aws-auth mapping: baseline",
        "aws-auth mapping, no-op: ours",
        "aws-auth mapping, no-op: baseline",
        "aws-auth unmapping: ours",
        "aws-auth unmapping: baseline",
        "Hopsworks cluster create: ours",
        "Hopsworks cluster delete: ours",
    ];
    let mut rows = Vec::new();
    let mut figures = serde_json::Map::new();
    for key in order {
        let Some(run) = first.runs.get(key) else {
            continue;
        };
        let other: Vec<String> = run
            .kube_calls
            .iter()
            .map(|c| format!("kube {c}"))
            .chain(
                run.hopsworks_calls
                    .iter()
                    .map(|c| format!("hopsworks.ai {c}")),
            )
            .collect();
        let total = run.aws_calls.len() + other.len();
        rows.push(vec![
            key.to_owned(),
            format!("**{total}**"),
            summarize(&run.aws_calls),
            summarize(&other),
        ]);
        figures.insert(
            key.to_owned(),
            json!({"total": total, "aws": run.aws_calls, "other": other}),
        );
    }
    let text = format!(
        "Counted where they arrive: AWS calls at the proxy in front of moto, Kubernetes calls at \
         the API server double, Hopsworks.ai calls at its double (its clusters move one state per \
         poll here, with PollIntervalSeconds 1). \
         Each call is needed: the no-op reads aws-auth and writes nothing.\n\n{}",
        table(
            &["operation", "calls", "AWS", "Kubernetes / Hopsworks.ai"],
            &rows
        )
    );
    report.section(
        "api_calls",
        "API calls per operation",
        &text,
        Value::Object(figures),
    );
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `n` aws-auth entries of other roles, as a big cluster's map has them.
fn entries(n: usize, tag: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "- rolearn: arn:aws:iam::123456789012:role/{tag}-{i:05}\n  username: {tag}-{i:05}\n  groups:\n  - team\n"
            )
        })
        .collect()
}

/// Every role ARN in a mapRoles text.
fn role_arns(map_roles: &str) -> Vec<String> {
    map_roles
        .lines()
        .filter_map(|l| l.trim_start_matches([' ', '-']).strip_prefix("rolearn:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
        .collect()
}

/// Those of `expected` missing from `map_roles`.
fn lost(expected: &[String], map_roles: &str) -> Vec<String> {
    let present = role_arns(map_roles);
    expected
        .iter()
        .filter(|a| !present.contains(a))
        .cloned()
        .collect()
}

async fn scale(b: &Bench, sizes: &[usize], reps: usize, report: &mut Report) {
    let f = &b.functions;
    let original = b.map_roles().await;
    let ours_arn = b.aws.seeded.hopsworks.role_arn_without_path.clone();
    let (mut time, mut rss) = (Series::default(), Series::default());
    let mut lost_total: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    // Whether aws-auth was byte-for-byte as before after each Delete.
    let mut restored_exactly: BTreeMap<String, bool> = BTreeMap::new();
    for &n in sizes {
        let map = format!("{original}{}", entries(n, "bench-role"));
        bytes.insert(n, map.len());
        let expected = role_arns(&map);
        let mut with_ours = expected.clone();
        with_ours.push(ours_arn.clone());
        for _ in 0..reps {
            for (who, function) in [("ours", &f.eks_access), ("baseline", &f.aws_auth_py)] {
                b.control.set_map_roles(b.cluster(), &map).await;
                let run = cold_create(b, function, EKS_ACCESS, b.eks_access_props()).await;
                let after = b.map_roles().await;
                let mut missing = lost(&with_ours, &after);
                let key = format!("{n}: {who}");
                time.push(&key, ms(run.end_to_end));
                rss.push(&key, run.vm_hwm_kib as f64 / MIB);
                let id = run.answer.physical_id.clone();
                unmap(b, function, &id).await;
                let restored = b.map_roles().await;
                let exact = restored_exactly.entry(key.clone()).or_insert(true);
                *exact &= restored == map;
                missing.extend(
                    lost(&expected, &restored)
                        .into_iter()
                        .map(|a| format!("{a} (after the Delete)")),
                );
                if role_arns(&restored).contains(&ours_arn) {
                    missing.push(format!("{ours_arn} still mapped after the Delete"));
                }
                lost_total.entry(key).or_default().extend(missing);
            }
        }
    }
    b.control.set_map_roles(b.cluster(), &original).await;
    let mut rows = Vec::new();
    for &n in sizes {
        let (o, t) = (format!("{n}: ours"), format!("{n}: baseline"));
        rows.push(vec![
            n.to_string(),
            format!("{:.0}", bytes[&n] as f64 / 1024.0),
            time.get(&o).text(0),
            rss.get(&o).text(1),
            time.get(&t).text(0),
            rss.get(&t).text(1),
            format!("{} / {}", lost_total[&o].len(), lost_total[&t].len()),
            format!(
                "{} / {}",
                yes_no(restored_exactly[&o]),
                yes_no(restored_exactly[&t])
            ),
        ]);
    }
    let text = format!(
        "A cold Create mapping our role into an aws-auth that already has N other entries, then \
         the Delete; {reps} runs each. Lost: entries (the others, or ours) missing after the \
         Create or the Delete, ours / the baseline's. The baseline re-emits the whole list \
         with PyYAML (comments and formatting go); ours appends and removes its own text.\n\n{}",
        table(
            &[
                "existing entries",
                "aws-auth KiB",
                "ours ms",
                "ours VmHWM MiB",
                "baseline ms",
                "baseline VmHWM MiB",
                "lost",
                "byte-for-byte as before after the Delete",
            ],
            &rows
        )
    );
    report.section(
        "scale",
        "aws-auth at scale",
        &text,
        json!({"ms": time.json(), "vm_hwm_mib": rss.json(), "lost": lost_total, "bytes": bytes,
               "restored_exactly": restored_exactly}),
    );
}

async fn concurrent(b: &Bench, writers: u32, reps: usize, report: &mut Report) {
    let f = &b.functions;
    let s = b.aws.seeded.clone();
    let original = b.map_roles().await;
    let ours_arn = s.hopsworks.role_arn_without_path.clone();
    let (mut time, mut retries) = (Series::default(), Series::default());
    let mut lost_total: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..reps {
        for (who, function) in [("ours", &f.eks_access), ("baseline", &f.aws_auth_py)] {
            b.control.set_map_roles(b.cluster(), &original).await;
            function.stop().await;
            let started = Instant::now();
            let tasks = spawn_writers(&s, 0..writers);
            let run = cold_create(b, function, EKS_ACCESS, b.eks_access_props()).await;
            let mut attempts = 0;
            for t in tasks {
                attempts += t.await.expect("a writer");
            }
            let converged = started.elapsed();
            let after = b.map_roles().await;
            let mut expected = role_arns(&original);
            expected
                .extend((0..writers).map(|i| format!("arn:aws:iam::123456789012:role/writer-{i}")));
            expected.push(ours_arn.clone());
            let missing = lost(&expected, &after);
            time.push(who, converged.as_secs_f64());
            retries.push(who, f64::from(attempts - writers));
            lost_total
                .entry(who.to_owned())
                .or_default()
                .extend(missing);
            let id = run.answer.physical_id.clone();
            unmap(b, function, &id).await;
        }
    }
    b.control.set_map_roles(b.cluster(), &original).await;
    let rows: Vec<Vec<String>> = ["ours", "baseline"]
        .iter()
        .map(|who| {
            vec![
                (*who).to_owned(),
                writers.to_string(),
                time.get(who).text(2),
                retries.get(who).text(0),
                format!("**{}**", lost_total[*who].len()),
            ]
        })
        .collect();
    let text = format!(
        "A cold Create of our mapping while {writers} other clients append their own roles to \
         aws-auth at the same moment (read-modify-write with resourceVersion, retrying on 409, \
         as aws-iam-authenticator does); {reps} runs. Converged: from the start until every \
         writer and the function are done.\n\n{}",
        table(
            &[
                "function",
                "other writers",
                "converged s",
                "their 409 retries",
                "entries lost"
            ],
            &rows
        )
    );
    report.section(
        "concurrent_writers",
        "Concurrent writers",
        &text,
        json!({"writers": writers, "converged_s": time.json(), "retries": retries.json(), "lost": lost_total}),
    );
}

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

fn deployment_size(level: u32, report: &mut Report) {
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
        "Each function's upload: the binary as `bootstrap`, deflated at level {level} \
         (goal: at most 6 MB). The baseline's: both handlers and every file of its dependencies \
         as `pip install -t` lays them out, deflated the same way (bench/baseline/package.py \
         does both). MB = 10^6 bytes.\n\n{}",
        table(&["package", "binary MB", "zip MB"], &rows)
    );
    report.section(
        "deployment_size",
        "Deployment size",
        &text,
        Value::Object(figures),
    );
}

fn tcp_nodelay(report: &mut Report) {
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
