//! Start-up: exec to the first `/next` poll, ours against the baseline, and the VmHWM then.

use super::{MIB, Series};
use crate::Options;
use crate::report::{Report, table};
use crate::runs::{Bench, ms};
use serde_json::json;

pub(super) async fn start_up(b: &Bench, o: &Options, report: &mut Report) {
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
    let text = table(
        &[
            "function",
            "start-up ms",
            "× faster (baseline / ours, per pair)",
            "VmHWM at first /next, MiB",
        ],
        &rows,
    );
    report.section(
        "start_up",
        "Start-up",
        &text,
        json!({"ms": time.json(), "times_faster": ratios.json(), "vm_hwm_mib": rss.json()}),
    );
}
