//! The measurements, one section of the report each: start-up, the invocations (peak RSS,
//! end-to-end time, API calls), aws-auth at scale and under concurrent writers, deployment size.

mod invocations;
mod scale;
mod size;
mod start_up;

use crate::Options;
use crate::report::Report;
use crate::runs::{Bench, EKS_ACCESS, Invocation, Op};
use crate::stats::Samples;
use serde_json::Value;
use system_tests::lambda::LambdaFunction;

const MIB: f64 = 1024.0;

pub async fn all(o: &Options) -> Report {
    let mut report = Report::default();
    report.header(o);
    let bench = Bench::start().await;
    let run = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    if run("start-up") {
        start_up::start_up(&bench, o, &mut report).await;
    }
    if run("invocations") {
        let first = invocations::invocations(&bench, o, &mut report).await;
        invocations::api_calls(&bench, first, &mut report).await;
    }
    if run("scale") {
        let sizes: &[usize] = if o.smoke { &[10] } else { &[10, 1000, 5000] };
        scale::scale(&bench, sizes, o.iterations.min(3), &mut report).await;
        let writers = if o.smoke { 5 } else { 50 };
        scale::concurrent(&bench, writers, o.iterations.min(3), &mut report).await;
    }
    if run("size") {
        // The smoke pass compresses fast: its debug binaries are big and its figures moot.
        size::deployment_size(if o.smoke { 1 } else { 9 }, &mut report);
    }
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
