//! The PodDisruptionBudget: voluntary disruptions (drains) take one broker
//! at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use runnel_operator_api::Cluster;

use super::names::{labels, pdb_name, selector_labels};

/// `<cluster>`: at most one broker unavailable.
pub fn pdb(cluster: &Cluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(pdb_name(cluster)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(labels(cluster)),
            owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}
