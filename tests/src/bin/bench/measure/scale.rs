//! aws-auth at scale (N other entries) and under concurrent writers: time, memory, entries lost.

use super::{MIB, Series, cold_create, unmap};
use crate::report::{Report, table};
use crate::runs::{Bench, EKS_ACCESS, ms};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Instant;
use system_tests::kube::spawn_writers;

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

pub(super) async fn scale(b: &Bench, sizes: &[usize], reps: usize, report: &mut Report) {
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
        "{reps} runs each.\n\n{}",
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

pub(super) async fn concurrent(b: &Bench, writers: u32, reps: usize, report: &mut Report) {
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
        "{reps} runs.\n\n{}",
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
