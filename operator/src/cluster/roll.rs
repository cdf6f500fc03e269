//! Rolling restarts: brokers pick up a changed `spec.config`, image or pod
//! template one at a time, each only while the cluster is healthy.
//!
//! The StatefulSets use `OnDelete`, so Kubernetes never restarts a broker
//! by itself. Each StatefulSet's pod template carries the revision of what
//! its brokers should run ([`REVISION_ANNOTATION`]: a hash of the
//! ConfigMap's data, which the template does not contain, and of the
//! template itself), and a pod keeps the revision it was created with. A
//! pod whose revision differs is stale. The operator deletes one stale pod
//! (the StatefulSet then recreates it from the current template) only when
//! every broker pod exists, none is terminating, all are Ready, and every
//! partition's ISR holds all its replicas, so a restart never takes a
//! partition below its replication factor on top of a broker already
//! missing. Meanwhile the Cluster reports `RollingRestart=True`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};

use crate::admin::ClusterMetadata;

/// The pod template annotation naming the revision its pods run.
pub const REVISION_ANNOTATION: &str = "runnel.dev/revision";

/// FNV-1a, 64 bits: stable across Rust releases (unlike `DefaultHasher`),
/// so an operator upgrade does not restart every broker.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Separate the parts, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Stamps `sts`'s pod template with the revision of itself, `config` and
/// `credentials` (the version of the operator's credentials Secret, which
/// the brokers read at start-up: a new password rolls them).
pub fn stamp(sts: &mut StatefulSet, config: &ConfigMap, credentials: &str) {
    let Some(template) = sts.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    if let Some(annotations) = template
        .metadata
        .as_mut()
        .and_then(|m| m.annotations.as_mut())
    {
        annotations.remove(REVISION_ANNOTATION);
    }
    let template_json = serde_json::to_vec(template).unwrap_or_default();
    let config_json = serde_json::to_vec(&config.data).unwrap_or_default();
    let revision = format!(
        "{:016x}",
        fnv1a(&[&template_json, &config_json, credentials.as_bytes()])
    );
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_ANNOTATION.to_owned(), revision);
}

/// The revision a StatefulSet's template (or a pod) carries.
fn revision_of(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations?.get(REVISION_ANNOTATION).map(String::as_str)
}

/// The revision `sts`'s template carries.
pub fn template_revision(sts: &StatefulSet) -> Option<&str> {
    revision_of(
        sts.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref(),
    )
}

/// What the rolling restart does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every pod runs its StatefulSet's revision.
    UpToDate,
    /// Some pods are stale, but restarting one now is not safe: why.
    Wait {
        /// How many pods are stale.
        stale: usize,
        /// Why not now.
        why: String,
    },
    /// Delete this pod; `stale` pods (it included) are stale.
    Restart {
        /// The pod to delete.
        pod: String,
        /// How many pods are stale.
        stale: usize,
    },
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Decides the next step. `statefulsets` are `(name, replicas, template
/// revision)`; `pods` the cluster's pods; `meta` what the brokers say (for
/// the ISR check, only asked for when a restart is otherwise due).
pub fn plan(
    statefulsets: &[(String, i32, String)],
    pods: &[Pod],
    meta: impl FnOnce() -> Result<ClusterMetadata, String>,
) -> Step {
    let by_name: BTreeMap<&str, &Pod> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.name.as_deref()?, p)))
        .collect();
    let mut stale = Vec::new();
    let mut missing = Vec::new();
    let mut unready = Vec::new();
    for (sts, replicas, revision) in statefulsets {
        for ordinal in 0..*replicas {
            let name = format!("{sts}-{ordinal}");
            match by_name.get(name.as_str()) {
                None => missing.push(name),
                Some(pod) => {
                    if pod.metadata.deletion_timestamp.is_some() || !is_ready(pod) {
                        unready.push(name.clone());
                    }
                    if revision_of(pod.metadata.annotations.as_ref()) != Some(revision.as_str()) {
                        stale.push(name);
                    }
                }
            }
        }
    }
    if stale.is_empty() {
        return Step::UpToDate;
    }
    let count = stale.len();
    if let Some(pod) = missing.first() {
        return Step::Wait {
            stale: count,
            why: format!("pod {pod} does not exist yet"),
        };
    }
    if let Some(pod) = unready.first() {
        return Step::Wait {
            stale: count,
            why: format!("pod {pod} is not ready"),
        };
    }
    let meta = match meta() {
        Ok(meta) => meta,
        Err(e) => {
            return Step::Wait {
                stale: count,
                why: format!("the brokers do not answer, to tell whether every ISR is full: {e}"),
            }
        }
    };
    let short: Vec<String> = meta
        .topics
        .iter()
        .flat_map(|(t, ps)| {
            ps.iter()
                .filter(|(_, p)| p.isr.len() < p.replicas.len())
                .map(move |(i, p)| format!("{t}/{i} (ISR {:?} of {:?})", p.isr, p.replicas))
        })
        .collect();
    if let Some(first) = short.first() {
        return Step::Wait {
            stale: count,
            why: format!(
                "{} partitions are under-replicated, e.g. {first}",
                short.len()
            ),
        };
    }
    stale.sort();
    Step::Restart {
        pod: stale.swap_remove(0),
        stale: count,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::admin::PartitionInfo;

    fn pod(name: &str, revision: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                annotations: Some(BTreeMap::from([(
                    REVISION_ANNOTATION.to_owned(),
                    revision.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn sets(revision: &str) -> Vec<(String, i32, String)> {
        ["r-zone-a", "r-zone-b"]
            .iter()
            .map(|s| (s.to_string(), 1, revision.to_owned()))
            .collect()
    }

    fn healthy() -> Result<ClusterMetadata, String> {
        let mut meta = ClusterMetadata::default();
        meta.topics.insert(
            "t".into(),
            BTreeMap::from([(
                0,
                PartitionInfo {
                    leader: 1000,
                    replicas: vec![1000, 2000],
                    isr: vec![1000, 2000],
                },
            )]),
        );
        Ok(meta)
    }

    #[test]
    fn one_stale_pod_at_a_time_and_only_while_healthy() {
        let fresh = vec![
            pod("r-zone-a-0", "new", true),
            pod("r-zone-b-0", "new", true),
        ];
        assert_eq!(plan(&sets("new"), &fresh, healthy), Step::UpToDate);

        let old = vec![
            pod("r-zone-a-0", "old", true),
            pod("r-zone-b-0", "old", true),
        ];
        assert_eq!(
            plan(&sets("new"), &old, healthy),
            Step::Restart {
                pod: "r-zone-a-0".into(),
                stale: 2
            }
        );
        // The restarted pod is back but not ready yet: wait.
        let restarting = vec![
            pod("r-zone-a-0", "new", false),
            pod("r-zone-b-0", "old", true),
        ];
        assert!(matches!(
            plan(&sets("new"), &restarting, healthy),
            Step::Wait { stale: 1, ref why } if why.contains("r-zone-a-0 is not ready")
        ));
        // Not recreated yet.
        let gone = vec![pod("r-zone-b-0", "old", true)];
        assert!(matches!(
            plan(&sets("new"), &gone, healthy),
            Step::Wait { ref why, .. } if why.contains("does not exist")
        ));
        // Terminating.
        let mut terminating = pod("r-zone-a-0", "new", true);
        terminating.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert!(matches!(
            plan(
                &sets("new"),
                &[terminating, pod("r-zone-b-0", "old", true)],
                healthy
            ),
            Step::Wait { .. }
        ));
        // Ready, but the ISR has not caught up.
        let back = vec![
            pod("r-zone-a-0", "new", true),
            pod("r-zone-b-0", "old", true),
        ];
        let short = || {
            let mut meta = healthy()?;
            if let Some(p) = meta.topics.get_mut("t").and_then(|t| t.get_mut(&0)) {
                p.isr = vec![2000];
            }
            Ok(meta)
        };
        assert!(matches!(
            plan(&sets("new"), &back, short),
            Step::Wait { ref why, .. } if why.contains("t/0")
        ));
        assert!(matches!(
            plan(&sets("new"), &back, || Err("refused".into())),
            Step::Wait { ref why, .. } if why.contains("refused")
        ));
        assert_eq!(
            plan(&sets("new"), &back, healthy),
            Step::Restart {
                pod: "r-zone-b-0".into(),
                stale: 1
            }
        );
    }

    #[test]
    fn the_revision_follows_the_config_and_the_template() {
        let cluster = crate::cluster::tests::cluster(3, &["zone-a", "zone-b", "zone-c"]);
        let config = |settings: &str| ConfigMap {
            data: Some(BTreeMap::from([(
                "broker.settings".to_owned(),
                settings.to_owned(),
            )])),
            ..ConfigMap::default()
        };
        let stamped = |settings: &str, image: Option<&str>, credentials: &str| {
            let mut c = cluster.clone();
            if let Some(image) = image {
                c.spec.image = Some(image.to_owned());
            }
            let mut sts = super::super::statefulset::statefulset(&c, 0);
            stamp(&mut sts, &config(settings), credentials);
            template_revision(&sts).map(str::to_owned)
        };
        let base = stamped("a=1\n", None, "");
        assert!(base.is_some());
        assert_eq!(base, stamped("a=1\n", None, ""), "stable");
        assert_ne!(base, stamped("a=2\n", None, ""), "the config");
        assert_ne!(base, stamped("a=1\n", Some("runnel:next"), ""), "the image");
        assert_ne!(
            stamped("a=1\n", None, "uid/1"),
            stamped("a=1\n", None, "uid/2"),
            "the credentials Secret's version"
        );
        // Stamping twice gives the same revision (the old stamp is not hashed).
        let mut sts = super::super::statefulset::statefulset(&cluster, 0);
        stamp(&mut sts, &config("a=1\n"), "");
        let once = template_revision(&sts).map(str::to_owned);
        stamp(&mut sts, &config("a=1\n"), "");
        assert_eq!(once, template_revision(&sts).map(str::to_owned));
    }
}
