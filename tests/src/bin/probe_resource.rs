//! A custom resource whose behaviour its properties choose, for the framework's whole-system tests:
//! `RecordId: "id"` (recorded with `Context::record_physical_id` first), `Panic: "true"`,
//! `SleepSeconds: "N"`, `BlockSeconds: "N"` (blocks the thread: nothing but Lambda's kill ends
//! it), `FailWith: "reason"`, `DataBytes: "N"`, `PhysicalId`. Delete logs `probe delete` with the
//! id it was given and fails only with `DeleteFailWith: "reason"`.

use custom_resource::{Context, CustomResource, Failure, Outcome, Progress, Request};
use std::time::Duration;

struct Probe;

impl Probe {
    async fn act(&self, request: &Request, ctx: &Context) -> Result<Outcome, Failure> {
        let p = &request.properties;
        if let Some(id) = p.optional_str("RecordId")? {
            ctx.record_physical_id(id);
        }
        ctx.step("probing");
        let sleep: u64 = p.int("SleepSeconds", 0, 0, 900)?;
        if sleep > 0 {
            ctx.step(format!("sleeping {sleep} s"));
            tokio::time::sleep(Duration::from_secs(sleep)).await;
        }
        let block: u64 = p.int("BlockSeconds", 0, 0, 900)?;
        if block > 0 {
            ctx.step(format!("blocking the thread {block} s"));
            std::thread::sleep(Duration::from_secs(block));
        }
        if p.bool("Panic", false)? {
            ctx.step("about to panic");
            panic!("probe asked to panic");
        }
        if let Some(reason) = p.optional_str("FailWith")? {
            return Err(Failure::new(reason));
        }
        let id = p.optional_str("PhysicalId")?.unwrap_or("probe-1");
        let bytes: usize = p.int("DataBytes", 0, 0, 1_000_000)?;
        let mut outcome = Outcome::new(id).with("Echo", id);
        if bytes > 0 {
            outcome = outcome.with("Blob", "x".repeat(bytes));
        }
        Ok(outcome)
    }
}

impl CustomResource for Probe {
    async fn create(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.act(request, ctx).await.map(Progress::Done)
    }
    async fn update(&self, request: &Request, ctx: &Context) -> Result<Progress<Outcome>, Failure> {
        self.act(request, ctx).await.map(Progress::Done)
    }
    async fn delete(&self, request: &Request, ctx: &Context) -> Result<Progress<()>, Failure> {
        ctx.step(format!(
            "probe delete of [{}], known [{}]",
            request.action.physical_id().unwrap_or_default(),
            request.known_physical_id().unwrap_or_default()
        ));
        match request.properties.optional_str("DeleteFailWith")? {
            Some(reason) => Err(Failure::new(reason)),
            None => Ok(Progress::Done(())),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    custom_resource::logging::init();
    custom_resource::serve(Probe).await
}
