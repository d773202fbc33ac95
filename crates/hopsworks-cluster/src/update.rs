//! Update: converge the cluster to the in-place properties.
//!
//! Not a diff of old and new properties: each round reads the cluster and, once it is `running`
//! with nothing under way, takes the next step from what it is to what the properties ask, in
//! this order: disable autoscale; workers (remove those that differ, then add); set autoscale;
//! ports; the head's instance type; the version (an upgrade, or the rollback of the last one).
//! So CloudFormation's rollback Update (old and new swapped) makes the reverse change, and one
//! that changes nothing calls nothing. A step that comes up again after it was sent and the
//! cluster ran again fails the Update instead of being repeated; a failed upgrade is rolled back,
//! then fails the Update with Hopsworks.ai's message. The wait hands on to new invocations as a
//! Create's does, and a Create ends here too (ports are opened once its cluster runs).

use crate::input;
use crate::{
    HAND_OVER, HopsworksCluster, SETTINGS_TAG, Settings, Stop, Waiting, bounded, outcome,
    read_state, replace, settings_fingerprint, state,
};
use custom_resource::{Action, Context, Failure, Outcome, Progress, Request};
use hopsworks_ai::model::{Autoscale, AutoscaleGroup, NodeType, Ports, Workers};
use hopsworks_ai::{Client, Cluster, Wait, compare_versions};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::time::{Duration, SystemTime};

/// The kinds of step, as the state handed on records those sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepKind {
    DisableAutoscale,
    RemoveWorkers,
    AddWorkers,
    SetAutoscale,
    Ports,
    HeadInstanceType,
    Upgrade,
    RollbackUpgrade,
}

/// Where an Update (or the end of a Create) is, handed on between invocations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Updating {
    pub id: String,
    /// The steps sent so far: planned again once the cluster runs, one means it did not work.
    #[serde(default)]
    pub applied: Vec<StepKind>,
    /// Those of `applied` whose answer was lost (Hopsworks.ai may not have applied them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unanswered: Vec<StepKind>,
    /// The upgrade that failed and is being rolled back: its message ends the Update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<FailedUpgrade>,
    /// The state last logged.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seen: String,
}

impl Updating {
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FailedUpgrade {
    pub to: String,
    pub message: String,
}

/// One change, with what it sends.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    DisableAutoscale,
    RemoveWorkers(Vec<Workers>),
    AddWorkers(Workers),
    SetAutoscale(Autoscale),
    Ports(Ports),
    HeadInstanceType(String),
    Upgrade(String),
    RollbackUpgrade(String),
}

impl Step {
    fn kind(&self) -> StepKind {
        match self {
            Step::DisableAutoscale => StepKind::DisableAutoscale,
            Step::RemoveWorkers(_) => StepKind::RemoveWorkers,
            Step::AddWorkers(_) => StepKind::AddWorkers,
            Step::SetAutoscale(_) => StepKind::SetAutoscale,
            Step::Ports(_) => StepKind::Ports,
            Step::HeadInstanceType(_) => StepKind::HeadInstanceType,
            Step::Upgrade(_) => StepKind::Upgrade,
            Step::RollbackUpgrade(_) => StepKind::RollbackUpgrade,
        }
    }

    /// What the step does, for logs and Reasons ("adding 2 m5.2xlarge workers (512 GB disks)").
    fn describe(&self) -> String {
        match self {
            Step::DisableAutoscale => "disabling autoscale".to_owned(),
            Step::RemoveWorkers(groups) => format!("removing {}", workers_text(groups)),
            Step::AddWorkers(group) => {
                format!("adding {}", workers_text(std::slice::from_ref(group)))
            }
            Step::SetAutoscale(a) => format!("setting autoscale to {}", autoscale_text(a)),
            Step::Ports(p) => format!("opening ports {}", ports_text(p)),
            Step::HeadInstanceType(t) => format!("changing the head node to {t}"),
            Step::Upgrade(v) => format!("upgrading to Hopsworks {v}"),
            Step::RollbackUpgrade(v) => format!("rolling the last upgrade back to Hopsworks {v}"),
        }
    }

    /// What the cluster shows of what the step changes.
    fn shown(&self, cluster: &Cluster) -> String {
        match self {
            Step::DisableAutoscale | Step::SetAutoscale(_) => match &cluster.autoscale {
                Some(a) if a.non_gpu.is_some() => format!("autoscale {}", autoscale_text(a)),
                _ => "no autoscale".to_owned(),
            },
            Step::RemoveWorkers(_) | Step::AddWorkers(_) => {
                workers_text(&cluster.cluster_configuration.workers)
            }
            Step::Ports(_) => format!("ports {}", ports_text(&cluster.ports)),
            Step::HeadInstanceType(_) => format!(
                "a {} head node",
                cluster.cluster_configuration.head.instance_type
            ),
            Step::Upgrade(_) | Step::RollbackUpgrade(_) => {
                format!("Hopsworks {}", cluster.version)
            }
        }
    }

    /// The properties that ask for the step, for the user to change.
    fn properties(&self) -> &'static str {
        match self {
            Step::RemoveWorkers(_) | Step::AddWorkers(_) => {
                "WorkerCount, WorkerInstanceType, WorkerDiskSize"
            }
            Step::DisableAutoscale | Step::SetAutoscale(_) => {
                "WorkerCount and the Autoscale properties"
            }
            Step::Ports(_) => "OpenPorts",
            Step::HeadInstanceType(_) => "HeadInstanceType",
            Step::Upgrade(_) | Step::RollbackUpgrade(_) => "HopsworksVersion",
        }
    }
}

fn workers_text(groups: &[Workers]) -> String {
    let groups: Vec<String> = groups
        .iter()
        .filter(|g| g.count > 0)
        .map(|g| {
            format!(
                "{} {} worker{} ({} GB disk{})",
                g.count,
                g.instance_type,
                if g.count == 1 { "" } else { "s" },
                g.disk_size,
                if g.count == 1 { "" } else { "s" },
            )
        })
        .collect();
    if groups.is_empty() {
        "no workers".to_owned()
    } else {
        groups.join(" and ")
    }
}

fn autoscale_text(a: &Autoscale) -> String {
    match &a.non_gpu {
        Some(g) => format!(
            "{} to {} {} workers ({} GB disks, standby {}, downscale after {} s)",
            g.min_workers,
            g.max_workers,
            g.instance_type,
            g.disk_size,
            g.standby_workers,
            g.downscale_wait_time
        ),
        None => "off".to_owned(),
    }
}

fn ports_text(p: &Ports) -> String {
    let open: Vec<&str> = [
        (p.feature_store, "FeatureStore"),
        (p.online_feature_store, "OnlineFeatureStore"),
        (p.kafka, "Kafka"),
        (p.ssh, "Ssh"),
    ]
    .into_iter()
    .filter_map(|(open, name)| open.then_some(name))
    .collect();
    if open.is_empty() {
        "none open".to_owned()
    } else {
        open.join(", ")
    }
}

/// What the properties ask of the cluster.
struct Desired<'a> {
    /// `None`: no fixed workers (WorkerCount 0, or autoscale).
    workers: Option<&'a Workers>,
    autoscale: Option<&'a AutoscaleGroup>,
    ports: Ports,
    head: &'a str,
    version: &'a str,
    /// The ECR registry account the properties name, for a cluster that does not show its own.
    registry: &'a str,
}

impl<'a> Desired<'a> {
    fn of(settings: &'a Settings) -> Self {
        let c = &settings.cluster;
        Self {
            workers: c.cluster_configuration.workers.iter().find(|w| w.count > 0),
            autoscale: c.autoscale.as_ref().and_then(|a| a.non_gpu.as_ref()),
            ports: settings.ports,
            head: &c.cluster_configuration.head.instance_type,
            version: &c.version,
            registry: &c.ecr_registry_account_id,
        }
    }
}

fn same_group(a: &Workers, b: &Workers) -> bool {
    a.instance_type == b.instance_type && a.disk_size == b.disk_size
}

fn same_autoscale(a: &AutoscaleGroup, b: &AutoscaleGroup) -> bool {
    a.instance_type == b.instance_type
        && a.disk_size == b.disk_size
        && a.min_workers == b.min_workers
        && a.max_workers == b.max_workers
        && a.downscale_wait_time == b.downscale_wait_time
        && (a.standby_workers - b.standby_workers).abs() < 1e-9
}

/// The next step from `actual` to `want`, in the Update's order; `None` when there is none.
/// What the cluster does not say (an empty head type or version) is taken as it should be.
fn plan(actual: &Cluster, want: &Desired) -> Option<Step> {
    let autoscaled = actual.autoscale.as_ref().and_then(|a| a.non_gpu.as_ref());
    if autoscaled.is_some() && want.autoscale.is_none() {
        return Some(Step::DisableAutoscale);
    }
    // Under autoscale the workers are autoscale's; before it, fixed workers must go (exclusive).
    if autoscaled.is_none()
        && let Some(step) = plan_workers(&actual.cluster_configuration.workers, want)
    {
        return Some(step);
    }
    if let Some(wanted) = want.autoscale
        && !autoscaled.is_some_and(|a| same_autoscale(a, wanted))
    {
        return Some(Step::SetAutoscale(Autoscale {
            non_gpu: Some(wanted.clone()),
            gpu: actual.autoscale.as_ref().and_then(|a| a.gpu.clone()),
        }));
    }
    if actual.ports != want.ports {
        return Some(Step::Ports(want.ports));
    }
    let head = &actual.cluster_configuration.head.instance_type;
    if !head.is_empty() && head != want.head {
        return Some(Step::HeadInstanceType(want.head.to_owned()));
    }
    if actual.version.is_empty() {
        return None;
    }
    match compare_versions(want.version, &actual.version) {
        Ordering::Equal => None,
        Ordering::Greater => Some(Step::Upgrade(want.version.to_owned())),
        Ordering::Less => Some(Step::RollbackUpgrade(want.version.to_owned())),
    }
}

/// Remove the groups that differ from the one wanted (and the surplus of that one), then add.
fn plan_workers(actual: &[Workers], want: &Desired) -> Option<Step> {
    let wanted = want.workers.filter(|_| want.autoscale.is_none());
    let mut remove: Vec<Workers> = actual
        .iter()
        .filter(|g| g.count > 0 && !wanted.is_some_and(|w| same_group(g, w)))
        .cloned()
        .collect();
    let have: u32 = match wanted {
        Some(w) => actual
            .iter()
            .filter(|g| same_group(g, w))
            .map(|g| g.count)
            .sum(),
        None => 0,
    };
    let wanted_count = wanted.map_or(0, |w| w.count);
    if let Some(w) = wanted
        && have > wanted_count
    {
        remove.push(Workers {
            count: have - wanted_count,
            ..w.clone()
        });
    }
    if !remove.is_empty() {
        return Some(Step::RemoveWorkers(remove));
    }
    wanted.filter(|w| have < w.count).map(|w| {
        Step::AddWorkers(Workers {
            count: w.count - have,
            ..w.clone()
        })
    })
}

/// What one reading of the cluster leads to.
enum Round {
    Done,
    Wait,
}

impl HopsworksCluster {
    /// The Update: refuse what cannot change in place (unless `AllowReplacement`), then converge.
    pub(crate) async fn update(
        &self,
        request: &Request,
        ctx: &Context,
    ) -> Result<Progress<Outcome>, Failure> {
        let Action::Update {
            physical_id,
            old_properties,
        } = &request.action
        else {
            unreachable!("update is called for Update requests")
        };
        // A replacement (AllowReplacement) handed on while its new cluster starts: a Create's.
        if replace::is_replacing(ctx)? {
            return self.replace(request, ctx, None, &[]).await;
        }
        let settings = Settings::parse(&request.properties, &self.region)?;
        let continued = match read_state(ctx)? {
            Some(Waiting::Updating(progress)) => Some(progress),
            None | Some(Waiting::Start) => None,
            Some(_) => {
                return Err(Failure::new(
                    "internal error: an Update was handed on as another request",
                ));
            }
        };
        let client = self.client(&settings.secret_arn, ctx).await?;
        let deadline = ctx.first_started() + Duration::from_secs(settings.timeout_minutes * 60);
        if let Some(progress) = continued {
            // A replacement's new cluster, whose in-place settings are being applied: failures
            // answer with its id.
            let replacement = (progress.id != *physical_id).then(|| progress.id.clone());
            if let Some(id) = &replacement {
                ctx.record_physical_id(id.clone());
            }
            return self
                .converge(&client, &settings, progress, None, deadline, ctx)
                .await
                .map_err(|f| match replacement {
                    Some(id) => f.with_physical_id(id),
                    None => f,
                });
        }
        ctx.step(format!("reading Hopsworks cluster {physical_id}"));
        let cluster = match bounded(&client, ctx).get_cluster(physical_id).await {
            Ok(Some(cluster)) => cluster,
            Ok(None) => return Err(no_longer_exists(physical_id)),
            // Nothing done yet: the next invocation starts over.
            Err(e) if e.is_out_of_time() && SystemTime::now() < deadline => {
                return Ok(Progress::Continue(state(Waiting::Start)));
            }
            Err(e) => return Err(e.into()),
        };
        let changed = input::replacing_changes(old_properties, &request.properties);
        // CloudFormation rolls a failed update back with old and new swapped: properties that
        // are the cluster's own (its fingerprint) replace nothing, whatever the old ones said.
        let as_created =
            cluster.tag(SETTINGS_TAG) == Some(settings_fingerprint(&request.properties).as_str());
        if !changed.is_empty() && !as_created {
            // Refused, unless AllowReplacement: then the Update is a Create of a new cluster with
            // a new physical id, and CloudFormation deletes the old one ([`replace`]).
            return self.replace(request, ctx, Some(&cluster), &changed).await;
        }
        self.converge(
            &client,
            &settings,
            Updating::new(physical_id.clone()),
            Some(cluster),
            deadline,
            ctx,
        )
        .await
    }

    /// Read the cluster, wait, take the next step, until there is none; `first` is a reading
    /// made just before (not read again).
    pub(crate) async fn converge(
        &self,
        client: &Client,
        settings: &Settings,
        mut progress: Updating,
        mut first: Option<Cluster>,
        deadline: SystemTime,
        ctx: &Context,
    ) -> Result<Progress<Outcome>, Failure> {
        let id = progress.id.clone();
        let poll = Duration::from_secs(settings.poll_seconds);
        let want = Desired::of(settings);
        loop {
            let cluster = match first.take() {
                Some(cluster) => cluster,
                None => {
                    if SystemTime::now() > deadline {
                        return Err(late(&id, &progress.seen, settings));
                    }
                    ctx.step(format!("waiting for Hopsworks cluster {id} to run"));
                    match bounded(client, ctx).get_cluster(&id).await {
                        Ok(Some(cluster)) => cluster,
                        Ok(None) => return Err(no_longer_exists(&id)),
                        Err(e) if e.is_out_of_time() => {
                            tracing::info!(cluster_id = %id, error = %e, "no answer in the time left: handing on");
                            return Ok(Progress::Continue(state(Waiting::Updating(progress))));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            crate::progress("update", &cluster, &mut progress.seen);
            match self
                .round(client, &cluster, &want, &mut progress, ctx)
                .await
            {
                Ok(Round::Done) => return Ok(Progress::Done(outcome(&cluster))),
                Ok(Round::Wait) => {}
                Err(Stop::OutOfTime) => {
                    return Ok(Progress::Continue(state(Waiting::Updating(progress))));
                }
                Err(Stop::KeyRefused(failure) | Stop::Failed(failure)) => return Err(failure),
            }
            if SystemTime::now() + poll > deadline {
                return Err(late(&id, &cluster.state, settings));
            }
            if ctx.remaining() < poll + HAND_OVER {
                return Ok(Progress::Continue(state(Waiting::Updating(progress))));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One reading of the cluster: wait, fail, send the next step, or done.
    async fn round(
        &self,
        client: &Client,
        cluster: &Cluster,
        want: &Desired<'_>,
        progress: &mut Updating,
        ctx: &Context,
    ) -> Result<Round, Stop> {
        let name = format!("Hopsworks cluster {} ({})", cluster.name, cluster.id);
        if let Some(failed) = &progress.upgrade {
            return rolled_back(&name, cluster, failed);
        }
        if cluster.state == "error"
            && let Some(upgrade) = &cluster.upgrade_in_progress
        {
            let message = error_message(cluster).to_owned();
            tracing::warn!(cluster_id = %cluster.id, state = %cluster.state, url = %cluster.url, error = %message, "the upgrade failed: rolling it back");
            ctx.step(format!("rolling back the failed upgrade of {name}"));
            match bounded(client, ctx).rollback_upgrade(&cluster.id).await {
                Ok(()) => {}
                Err(e) if e.is_unanswered() => {
                    tracing::warn!(cluster_id = %cluster.id, error = %e, "no clear answer to the rollback: the next reading tells");
                }
                Err(e) if e.is_out_of_time() || e.is_key_refused() => return Err(e.into()),
                Err(e) => {
                    return Err(Failure::new(format!(
                        "the upgrade of {name} to Hopsworks {} failed: {message}; and \
                         Hopsworks.ai refused to roll it back ({e}): roll it back in \
                         Hopsworks.ai, then retry the update",
                        upgrade.to
                    ))
                    .into());
                }
            }
            progress.applied.push(StepKind::RollbackUpgrade);
            progress.upgrade = Some(FailedUpgrade {
                to: upgrade.to.clone(),
                message,
            });
            return Ok(Round::Wait);
        }
        match hopsworks_ai::waiting_for_update(&cluster.state) {
            Wait::Failed => {
                return Err(Failure::new(format!(
                    "{name} is {}: {}; check it in Hopsworks.ai, then retry the update",
                    cluster.state,
                    error_message(cluster)
                ))
                .into());
            }
            Wait::Pending if cluster.state == "stopped" && !restarting(progress, cluster) => {
                return Err(Failure::new(format!(
                    "{name} is stopped, and this update did not stop it; start it in \
                     Hopsworks.ai (or wait until what stopped it is over), then retry the update"
                ))
                .into());
            }
            Wait::Pending => return Ok(Round::Wait),
            Wait::Reached => {}
        }
        // Running, but an upgrade or a backup is under way: the API takes no change now.
        if cluster.upgrade_in_progress.is_some() || cluster.backup_pipeline_in_progress {
            return Ok(Round::Wait);
        }
        let Some(step) = plan(cluster, want) else {
            return Ok(Round::Done);
        };
        if progress.applied.contains(&step.kind()) {
            let asked = if progress.unanswered.contains(&step.kind()) {
                "was asked for"
            } else {
                "accepted"
            };
            return Err(Failure::new(format!(
                "Hopsworks.ai {asked} {} but {name} still shows {} now that it runs again; \
                 check the cluster in Hopsworks.ai, then retry the update (or set {} back)",
                step.describe(),
                step.shown(cluster),
                step.properties()
            ))
            .into());
        }
        check_version(client, cluster, &step, ctx).await?;
        ctx.step(format!("{} on {name}", step.describe()));
        match send(&bounded(client, ctx), cluster, &step, want.registry).await {
            Ok(()) => {
                tracing::info!(cluster_id = %cluster.id, step = %step.describe(), "change accepted");
            }
            Err(e) if e.is_unanswered() => {
                tracing::warn!(cluster_id = %cluster.id, step = %step.describe(), error = %e, "no clear answer: the next reading of the cluster tells");
                progress.unanswered.push(step.kind());
            }
            Err(e) if e.is_out_of_time() || e.is_key_refused() => return Err(e.into()),
            Err(e) => {
                return Err(Failure::new(format!(
                    "Hopsworks.ai refused {} on {name}: {e}; change {} and update the stack \
                     again, or put the old values back",
                    step.describe(),
                    step.properties()
                ))
                .into());
            }
        }
        progress.applied.push(step.kind());
        Ok(Round::Wait)
    }
}

/// While the rollback of a failed upgrade runs: wait; once it is over, fail with the upgrade's
/// message.
fn rolled_back(name: &str, cluster: &Cluster, failed: &FailedUpgrade) -> Result<Round, Stop> {
    let upgrading = cluster.upgrade_in_progress.is_some();
    match hopsworks_ai::waiting_for_update(&cluster.state) {
        Wait::Reached if !upgrading => Err(Failure::new(format!(
            "the upgrade of {name} to Hopsworks {} failed: {}; it was rolled back to Hopsworks \
             {}: fix the cause (see the cluster in Hopsworks.ai), then update the stack again",
            failed.to, failed.message, cluster.version
        ))
        .into()),
        // Still the failed upgrade's error: the rollback has not begun yet.
        Wait::Failed if cluster.state == "error" && upgrading => Ok(Round::Wait),
        Wait::Failed => Err(Failure::new(format!(
            "the upgrade of {name} to Hopsworks {} failed: {}; and its rollback failed too \
             (the cluster is {}: {}): check the cluster in Hopsworks.ai",
            failed.to,
            failed.message,
            cluster.state,
            error_message(cluster)
        ))
        .into()),
        Wait::Reached | Wait::Pending => Ok(Round::Wait),
    }
}

/// Whether a stop belongs to this update: an upgrade, its rollback or an instance-type change
/// stops the cluster and starts it again.
fn restarting(progress: &Updating, cluster: &Cluster) -> bool {
    cluster.upgrade_in_progress.is_some()
        || progress.upgrade.is_some()
        || progress.applied.iter().any(|k| {
            matches!(
                k,
                StepKind::Upgrade | StepKind::RollbackUpgrade | StepKind::HeadInstanceType
            )
        })
}

/// Before a version step, what the catalogue says of it: a version Hopsworks.ai offers, reached
/// from the cluster's own; a rollback only to the version the cluster's came from.
async fn check_version(
    client: &Client,
    cluster: &Cluster,
    step: &Step,
    ctx: &Context,
) -> Result<(), Stop> {
    if !matches!(step, Step::Upgrade(_) | Step::RollbackUpgrade(_)) {
        return Ok(());
    }
    ctx.step("reading the Hopsworks versions Hopsworks.ai offers");
    let catalogue = bounded(client, ctx).versions().await?;
    let entry = |v: &str| catalogue.iter().find(|e| e.version == v);
    let actual = &cluster.version;
    let name = format!("Hopsworks cluster {} ({})", cluster.name, cluster.id);
    match step {
        Step::Upgrade(target) => {
            let Some(offered) = entry(target) else {
                let versions: Vec<&str> = catalogue.iter().map(|e| e.version.as_str()).collect();
                return Err(Failure::new(format!(
                    "HopsworksVersion {target} is not a version Hopsworks.ai offers ({}); set \
                     one of them",
                    versions.join(", ")
                ))
                .into());
            };
            let from = &offered.upgradable_from_version;
            if !from.is_empty() && from != actual {
                return Err(Failure::new(format!(
                    "HopsworksVersion {target} can only be upgraded to from {from}, and {name} \
                     runs {actual}: upgrade to {from} first (one stack update), then to {target}"
                ))
                .into());
            }
        }
        Step::RollbackUpgrade(target) => {
            // A catalogue that does not list the cluster's version cannot tell: the API decides.
            if let Some(current) = entry(actual)
                && current.upgradable_from_version != *target
            {
                return Err(Failure::new(format!(
                    "HopsworksVersion {target} is older than the {actual} {name} runs; \
                     Hopsworks.ai cannot downgrade, only roll an upgrade back to the version it \
                     came from ({}): set HopsworksVersion back to {actual}",
                    if current.upgradable_from_version.is_empty() {
                        "none for this version"
                    } else {
                        &current.upgradable_from_version
                    }
                ))
                .into());
            }
        }
        _ => {}
    }
    Ok(())
}

async fn send(
    client: &Client,
    cluster: &Cluster,
    step: &Step,
    registry: &str,
) -> Result<(), hopsworks_ai::Error> {
    let id = &cluster.id;
    match step {
        Step::DisableAutoscale => client.disable_autoscale(id).await,
        Step::RemoveWorkers(groups) => client.remove_workers(id, groups).await,
        Step::AddWorkers(group) => client.add_workers(id, std::slice::from_ref(group)).await,
        Step::SetAutoscale(autoscale) => client.set_autoscale(id, autoscale).await,
        Step::Ports(ports) => client.set_ports(id, ports).await,
        Step::HeadInstanceType(t) => client.modify_instance_type(id, NodeType::Head, t).await,
        Step::Upgrade(version) => {
            // The cluster's registry account cannot change: the one it was made with.
            let account = match cluster.aws.ecr_registry_account_id.as_str() {
                "" => registry,
                own => own,
            };
            client.upgrade(id, version, account).await
        }
        Step::RollbackUpgrade(_) => client.rollback_upgrade(id).await,
    }
}

fn error_message(cluster: &Cluster) -> &str {
    if cluster.error_message.is_empty() {
        "no error message from Hopsworks.ai"
    } else {
        &cluster.error_message
    }
}

fn no_longer_exists(id: &str) -> Failure {
    Failure::new(format!(
        "Hopsworks cluster {id} no longer exists; delete this stack and create it again"
    ))
}

fn late(id: &str, state: &str, settings: &Settings) -> Failure {
    Failure::new(format!(
        "Hopsworks cluster {id} did not finish changing within {} minutes (it is {}); raise \
         TimeoutMinutes, or check it in Hopsworks.ai, then retry the update",
        settings.timeout_minutes,
        if state.is_empty() {
            "not answering"
        } else {
            state
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custom_resource::Properties;
    use hopsworks_ai::model::{ClusterConfiguration, Node};
    use serde_json::{Value, json};

    fn settings(changes: Value) -> Settings {
        let mut v = json!({
            "ApiKeySecretArn": "arn:aws:secretsmanager:us-east-2:111122223333:secret:k",
            "ClusterName": "fs-demo",
            "InstanceProfileArn": "arn:aws:iam::111122223333:instance-profile/hopsworks",
            "EksClusterName": "demo-eks",
            "BucketName": "hops-demo-bucket",
        });
        for (k, value) in changes.as_object().into_iter().flatten() {
            v[k] = value.clone();
        }
        let Value::Object(map) = v else {
            unreachable!()
        };
        Settings::parse(&Properties::new(map), "us-east-2").unwrap()
    }

    fn group(t: &str, count: u32) -> Workers {
        Workers {
            instance_type: t.into(),
            disk_size: 512,
            count,
        }
    }

    /// A running cluster as the default properties make it.
    fn running() -> Cluster {
        Cluster {
            id: "c-1".into(),
            state: "running".into(),
            version: "3.9.0".into(),
            cluster_configuration: ClusterConfiguration {
                head: Node {
                    instance_type: "m5.2xlarge".into(),
                    disk_size: 512,
                    ha_enabled: false,
                },
                workers: vec![group("m5.2xlarge", 1)],
            },
            ..Cluster::default()
        }
    }

    fn next(cluster: &Cluster, changes: Value) -> Option<Step> {
        let s = settings(changes);
        plan(cluster, &Desired::of(&s))
    }

    #[test]
    fn nothing_to_do_when_the_cluster_is_as_asked() {
        assert_eq!(next(&running(), json!({})), None);
        // What the cluster does not say is not changed.
        let mut c = running();
        c.version.clear();
        c.cluster_configuration.head.instance_type.clear();
        assert_eq!(
            next(
                &c,
                json!({"HopsworksVersion": "4.0.0", "HeadInstanceType": "m5.4xlarge"})
            ),
            None
        );
    }

    #[test]
    fn workers_are_added_or_removed_by_the_difference() {
        assert_eq!(
            next(&running(), json!({"WorkerCount": "3"})),
            Some(Step::AddWorkers(group("m5.2xlarge", 2)))
        );
        let mut c = running();
        c.cluster_configuration.workers = vec![group("m5.2xlarge", 4)];
        assert_eq!(
            next(&c, json!({"WorkerCount": "1"})),
            Some(Step::RemoveWorkers(vec![group("m5.2xlarge", 3)]))
        );
        assert_eq!(
            next(&c, json!({"WorkerCount": "0"})),
            Some(Step::RemoveWorkers(vec![group("m5.2xlarge", 4)]))
        );
    }

    #[test]
    fn a_new_worker_type_removes_the_old_group_then_adds() {
        let change = json!({"WorkerInstanceType": "m5.4xlarge", "WorkerCount": "2"});
        assert_eq!(
            next(&running(), change.clone()),
            Some(Step::RemoveWorkers(vec![group("m5.2xlarge", 1)]))
        );
        let mut c = running();
        c.cluster_configuration.workers.clear();
        assert_eq!(
            next(&c, change),
            Some(Step::AddWorkers(group("m5.4xlarge", 2)))
        );
    }

    #[test]
    fn autoscale_replaces_the_workers_and_gives_them_back() {
        let on = json!({"WorkerCount": "0", "AutoscaleMaxWorkers": "4"});
        // The fixed workers first (exclusive), then autoscale.
        assert_eq!(
            next(&running(), on.clone()),
            Some(Step::RemoveWorkers(vec![group("m5.2xlarge", 1)]))
        );
        let mut c = running();
        c.cluster_configuration.workers.clear();
        let Some(Step::SetAutoscale(autoscale)) = next(&c, on.clone()) else {
            panic!("autoscale expected")
        };
        assert_eq!(autoscale.non_gpu.as_ref().map(|g| g.max_workers), Some(4));
        // On, with workers it made: nothing to do; another maximum: set again.
        c.autoscale = Some(autoscale);
        c.cluster_configuration.workers = vec![group("m5.2xlarge", 3)];
        assert_eq!(next(&c, on), None);
        assert!(matches!(
            next(&c, json!({"WorkerCount": "0", "AutoscaleMaxWorkers": "6"})),
            Some(Step::SetAutoscale(_))
        ));
        // Off again: disabled first, then the fixed workers.
        assert_eq!(next(&c, json!({})), Some(Step::DisableAutoscale));
    }

    #[test]
    fn ports_then_head_then_version() {
        let all = json!({"OpenPorts": "Kafka", "HeadInstanceType": "m5.4xlarge", "HopsworksVersion": "4.0.0"});
        let mut c = running();
        let Some(Step::Ports(ports)) = next(&c, all.clone()) else {
            panic!("ports first")
        };
        assert!(ports.kafka && !ports.ssh);
        c.ports = ports;
        assert_eq!(
            next(&c, all.clone()),
            Some(Step::HeadInstanceType("m5.4xlarge".into()))
        );
        c.cluster_configuration.head.instance_type = "m5.4xlarge".into();
        assert_eq!(next(&c, all.clone()), Some(Step::Upgrade("4.0.0".into())));
        c.version = "4.0.0".into();
        assert_eq!(next(&c, all.clone()), None);
        // Back: the rollback of that upgrade.
        assert_eq!(
            next(
                &c,
                json!({"HopsworksVersion": "3.9.0", "OpenPorts": "Kafka", "HeadInstanceType": "m5.4xlarge"})
            ),
            Some(Step::RollbackUpgrade("3.9.0".into()))
        );
    }

    #[test]
    fn reasons_say_what_was_asked_and_what_the_cluster_shows() {
        let step = Step::AddWorkers(group("m5.2xlarge", 2));
        assert_eq!(
            step.describe(),
            "adding 2 m5.2xlarge workers (512 GB disks)"
        );
        assert_eq!(step.shown(&running()), "1 m5.2xlarge worker (512 GB disk)");
        let mut c = running();
        c.cluster_configuration.workers.clear();
        assert_eq!(step.shown(&c), "no workers");
        assert_eq!(
            Step::Ports(Ports {
                kafka: true,
                ssh: true,
                ..Ports::default()
            })
            .describe(),
            "opening ports Kafka, Ssh"
        );
    }

    #[test]
    fn the_update_state_round_trips() {
        let progress = Updating {
            applied: vec![StepKind::AddWorkers, StepKind::Upgrade],
            unanswered: vec![StepKind::AddWorkers],
            upgrade: Some(FailedUpgrade {
                to: "4.0.0".into(),
                message: "disk full".into(),
            }),
            seen: "updating".into(),
            ..Updating::new("c-1")
        };
        let s = state(Waiting::Updating(progress.clone()));
        assert_eq!(s["waiting_for"], "updating");
        assert_eq!(s["applied"], json!(["add_workers", "upgrade"]));
        match serde_json::from_value::<Waiting>(s) {
            Ok(Waiting::Updating(read)) => assert_eq!(read, progress),
            other => panic!("{other:?}"),
        }
    }
}
