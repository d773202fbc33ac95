//! One cold invocation of each operation, ours and the baseline: peak RSS, end-to-end time and
//! the emulators' share of it, and the API calls each operation makes.

use super::{MIB, Series, cold_create};
use crate::Options;
use crate::report::{Report, table};
use crate::runs::{Bench, DISCOVERY, EKS_ACCESS, HOPSWORKS, Invocation, Op, ms, summarize};
use crate::stats::Samples;
use serde_json::{Value, json};
use std::collections::BTreeMap;

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

pub(super) async fn invocations(b: &Bench, o: &Options, report: &mut Report) -> First {
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
            let unmapped = super::unmap(b, function, &id).await;
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
    let rss_text = table(
        &[
            "operation",
            "ours MiB",
            "baseline MiB",
            "ours / baseline (per pair)",
        ],
        &rss_rows,
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
    let mut text = table(
        &[
            "operation",
            "end-to-end ms",
            "start-up ms",
            "moto ms",
            "Kubernetes double ms",
            "rest ms",
            "emulators' share %",
        ],
        &rows,
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

fn differences(
    ours: &serde_json::Map<String, Value>,
    theirs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    ours.iter()
        .filter(|(k, v)| theirs.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

pub(super) async fn api_calls(b: &Bench, mut first: First, report: &mut Report) {
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
    let text = table(
        &["operation", "calls", "AWS", "Kubernetes / Hopsworks.ai"],
        &rows,
    );
    report.section(
        "api_calls",
        "API calls per operation",
        &text,
        Value::Object(figures),
    );
}
