//! Runnel's Kubernetes operator: runs `Cluster`s of brokers, the `Topic`s in
//! them and observes `ConsumerGroup`s (types in `runnel-operator-api`).
//!
//! # Layout
//!
//! - [`args`]: the command line, `run` and its validation;
//! - [`cluster`]: the Cluster controller, with one module per object it
//!   builds (`statefulset`, `service`, `config_map`, `pdb`) and `status`;
//! - [`topic`]: the Topic controller; `assign` (rack-aware replica
//!   assignment) and `plan` (spec vs. brokers) are pure;
//! - [`consumer_group`]: the ConsumerGroup controller; `lag` is pure;
//! - [`user`]: the User controller (SCRAM credentials);
//! - [`admin`]: the Kafka admin client the controllers reach brokers with;
//! - [`leader`]: Lease-based leader election;
//! - [`context`], [`error`], [`metrics`], [`telemetry`], [`crdgen`].
//!
//! ```text
//!   kube-apiserver ──watch──▶ Controller (kube-runtime) ──▶ reconcile
//!        ▲                                                   │
//!        └──── server-side apply, status, events ◀───────────┤
//!                                                            ▼
//!                                  admin (Kafka protocol) ──▶ brokers
//! ```

pub mod admin;
pub mod args;
pub mod cluster;
pub mod consumer_group;
pub mod context;
pub mod crdgen;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod telemetry;
pub mod topic;
pub mod user;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "runnel-operator";

/// Now, as the API server's time type.
pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
