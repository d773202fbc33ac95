//! A client of the Hopsworks.ai cluster API, as `../shared/reference/hopsworks-api.md` describes
//! it: create, read, list and terminate AWS clusters with EKS and ECR enabled, and change them in
//! place (workers, autoscale, ports, upgrade and its rollback, the head's instance type).

mod backup;
mod client;
mod key;
pub mod model;

pub use backup::{Backup, BackupStarted, RestoreCluster, waiting_for_backup};
pub use client::{Client, Created, DEFAULT_BASE_URL, Error, Retry};
pub use key::{ApiKey, KeyError};
pub use model::{
    Cluster, NewCluster, Wait, compare_versions, waiting_for_gone, waiting_for_running,
    waiting_for_update,
};
