//! Cluster metadata: the image the controller quorum agrees on, the commands
//! that change it, and rack-aware replica placement. Pure data and functions;
//! the quorum itself (openraft over gRPC) is in `controller`.
//!
//! # Layout
//! - `image`: `ClusterImage` (brokers, topics, partitions with leader/ISR/epochs).
//! - `command`: `MetadataCommand`, and `ClusterImage::apply` (deterministic).
//! - `assign`: rack-aware replica placement.

mod assign;
mod command;
mod image;
#[cfg(test)]
mod tests;

pub use assign::{assign_replicas, AssignError};
pub use command::{Assignment, CommandResult, MetadataCommand};
pub use image::{BrokerRegistration, ClusterImage, PartitionImage, ScramCredential, TopicImage};
