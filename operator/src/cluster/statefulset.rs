//! One StatefulSet per zone: the brokers of that zone, pinned to it by node
//! affinity, each knowing the zone as its rack from its own pod spec.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    EnvVarSource, HTTPGetAction, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, SecretKeySelector,
    SecretVolumeSource, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use runnel_operator_api::Cluster;

use super::config_map::{SETTINGS_KEY, VOTERS_KEY};
use super::names::{
    brokers_in_zone, config_map_name, headless_service_name, labels, namespace, selector_labels,
    statefulset_name, KAFKA_PORT, METRICS_PORT, NODE_ID_BASE, RPC_PORT, ZONE_LABEL,
};

/// Where the broker keeps its data (the claim `data` is mounted here).
pub const DATA_DIR: &str = "/var/lib/runnel";

/// Where the ConfigMap is mounted.
const CONFIG_DIR: &str = "/etc/runnel";

/// Where the `spec.tls` Secret is mounted (beside the ConfigMap's
/// directory, not in it: that one is read-only).
pub const TLS_DIR: &str = "/etc/runnel-tls";

/// The container's start-up: the node id from the pod's ordinal and its
/// zone's base, then one `--set` per line of the settings file. Needs
/// `/bin/sh` in the image.
const START_SCRIPT: &str = r#"set -eu
export RUNNEL_NODE_ID=$((RUNNEL_NODE_ID_BASE + ${POD_NAME##*-}))
set --
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    ''|'#'*) ;;
    *) set -- "$@" --set "$line" ;;
  esac
done < /etc/runnel/broker.settings
if [ -n "${RUNNEL_SUPER_USERS:-}" ]; then
  set -- "$@" --set "super.users=$RUNNEL_SUPER_USERS"
fi
exec runnel-broker "$@"
"#;

/// With `spec.authentication`, the operator's user from its Secret, made by
/// each broker at start-up (`--add-scram`, through `RUNNEL_ADD_SCRAM`).
fn authentication_env(cluster: &Cluster) -> Vec<EnvVar> {
    let Some(auth) = &cluster.spec.authentication else {
        return Vec::new();
    };
    let from_secret = |name: &str, key: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: auth.credentials_secret.clone(),
                key: key.to_owned(),
                ..SecretKeySelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut vars = vec![
        from_secret("RUNNEL_OPERATOR_USERNAME", "username"),
        from_secret("RUNNEL_OPERATOR_PASSWORD", "password"),
        env(
            "RUNNEL_ADD_SCRAM",
            "SCRAM-SHA-512=[name=$(RUNNEL_OPERATOR_USERNAME),password=$(RUNNEL_OPERATOR_PASSWORD)]",
        ),
    ];
    // With ACLs checked, the operator's own user and spec.authorization's
    // super users (the start script passes them as `super.users`).
    if let Some(authorization) = &cluster.spec.authorization {
        let super_users: String = std::iter::once("User:$(RUNNEL_OPERATOR_USERNAME)".to_owned())
            .chain(
                authorization
                    .super_users
                    .iter()
                    .map(|u| format!("User:{u}")),
            )
            .collect::<Vec<_>>()
            .join(";");
        vars.push(env("RUNNEL_SUPER_USERS", super_users));
    }
    vars
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// The StatefulSet of zone `index` (0-based, in `spec.zones` order).
pub fn statefulset(cluster: &Cluster, index: usize) -> StatefulSet {
    let zone = cluster.spec.zones.get(index).cloned().unwrap_or_default();
    let name = statefulset_name(cluster, index);
    let mut pod_labels = labels(cluster);
    pod_labels.insert("runnel.dev/zone".to_owned(), zone.clone());
    let mut selector = selector_labels(cluster);
    selector.insert("runnel.dev/zone".to_owned(), zone.clone());
    let node_id_base = NODE_ID_BASE * (i32::try_from(index).unwrap_or(0) + 1);

    let container = Container {
        name: "broker".to_owned(),
        image: Some(cluster.image().to_owned()),
        command: Some(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            START_SCRIPT.to_owned(),
        ]),
        env: Some(
            vec![
                EnvVar {
                    name: "POD_NAME".to_owned(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".to_owned(),
                            ..ObjectFieldSelector::default()
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                },
                env("RUNNEL_NODE_ID_BASE", node_id_base.to_string()),
                env("RUNNEL_RACK", zone.clone()),
                env("RUNNEL_DATA_DIR", DATA_DIR),
                env("RUNNEL_LISTEN", format!("0.0.0.0:{KAFKA_PORT}")),
                env(
                    "RUNNEL_ADVERTISE",
                    format!(
                        "$(POD_NAME).{}.{}.svc:{KAFKA_PORT}",
                        headless_service_name(cluster),
                        namespace(cluster)
                    ),
                ),
                env("RUNNEL_RPC_LISTEN", format!("0.0.0.0:{RPC_PORT}")),
                env("RUNNEL_METRICS_LISTEN", format!("0.0.0.0:{METRICS_PORT}")),
                // Dependent variables: `$(NAME)` refers to one defined before.
                EnvVar {
                    name: "RUNNEL_CONTROLLER_VOTERS".to_owned(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: config_map_name(cluster),
                            key: VOTERS_KEY.to_owned(),
                            ..ConfigMapKeySelector::default()
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                },
            ]
            .into_iter()
            .chain(authentication_env(cluster))
            .collect(),
        ),
        ports: Some(vec![
            port("kafka", KAFKA_PORT),
            port("rpc", RPC_PORT),
            port("metrics", METRICS_PORT),
        ]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".to_owned()),
                port: IntOrString::Int(METRICS_PORT),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        resources: cluster.spec.resources.clone(),
        volume_mounts: Some(
            vec![
                VolumeMount {
                    name: "data".to_owned(),
                    mount_path: DATA_DIR.to_owned(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "config".to_owned(),
                    mount_path: CONFIG_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(cluster.spec.tls.as_ref().map(|_| VolumeMount {
                name: "tls".to_owned(),
                mount_path: TLS_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            }))
            .collect(),
        ),
        ..Container::default()
    };

    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: ZONE_LABEL.to_owned(),
                        operator: "In".to_owned(),
                        values: Some(vec![zone.clone()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(cluster)),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    };

    let mut requests = BTreeMap::new();
    requests.insert(
        "storage".to_owned(),
        Quantity(cluster.spec.storage.size.clone()),
    );
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(selector.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: cluster.spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(requests),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };

    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(pod_labels.clone()),
            owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(brokers_in_zone(cluster, index)),
            service_name: Some(headless_service_name(cluster)),
            // Brokers of a quorum must start together, not one after another.
            pod_management_policy: Some("Parallel".to_owned()),
            // The operator decides when a broker restarts.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    // For annotation-based scrape configs; the chart's
                    // PodMonitor finds the `metrics` port instead.
                    annotations: Some(BTreeMap::from([
                        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
                        ("prometheus.io/port".to_owned(), METRICS_PORT.to_string()),
                        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    affinity: Some(affinity),
                    containers: vec![container],
                    termination_grace_period_seconds: Some(60),
                    volumes: Some(
                        [Volume {
                            name: "config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: config_map_name(cluster),
                                items: None,
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        }]
                        .into_iter()
                        .chain(cluster.spec.tls.as_ref().map(|tls| Volume {
                            name: "tls".to_owned(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(tls.certificate_secret.clone()),
                                ..SecretVolumeSource::default()
                            }),
                            ..Volume::default()
                        }))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The settings file the start-up script reads, as mounted.
pub fn settings_path() -> String {
    format!("{CONFIG_DIR}/{SETTINGS_KEY}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::cluster;

    #[test]
    fn tls_mounts_the_certificate_secret() {
        let plain = cluster(1, &["zone-a"]);
        let pod = |c: &Cluster| {
            statefulset(c, 0)
                .spec
                .and_then(|s| s.template.spec)
                .expect("pod")
        };
        assert!(pod(&plain)
            .volumes
            .unwrap_or_default()
            .iter()
            .all(|v| v.name != "tls"));
        let mut tls = plain.clone();
        tls.spec.tls = Some(runnel_operator_api::ClusterTls {
            certificate_secret: "events-tls".into(),
        });
        let spec = pod(&tls);
        let volume = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "tls")
            .expect("a tls volume");
        assert_eq!(
            volume.secret.and_then(|s| s.secret_name).as_deref(),
            Some("events-tls")
        );
        let mount = spec.containers[0]
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|m| m.name == "tls")
            .expect("mounted");
        assert_eq!(mount.mount_path, TLS_DIR);
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn authentication_gives_the_brokers_the_operators_user() {
        let plain = cluster(1, &["zone-a"]);
        let env_of = |c: &Cluster| -> Vec<EnvVar> {
            statefulset(c, 0)
                .spec
                .and_then(|s| s.template.spec)
                .map(|p| p.containers[0].env.clone().unwrap_or_default())
                .unwrap_or_default()
        };
        assert!(env_of(&plain).iter().all(|e| e.name != "RUNNEL_ADD_SCRAM"));
        let mut secure = plain.clone();
        secure.spec.authentication = Some(runnel_operator_api::ClusterAuthentication {
            kind: runnel_operator_api::AuthenticationType::ScramSha512,
            credentials_secret: "events-operator".into(),
        });
        let env = env_of(&secure);
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        let user = names.iter().position(|n| *n == "RUNNEL_OPERATOR_USERNAME");
        let add = names.iter().position(|n| *n == "RUNNEL_ADD_SCRAM");
        assert!(user.is_some() && add.is_some() && user < add, "{names:?}");
        let secret = env
            .iter()
            .find(|e| e.name == "RUNNEL_OPERATOR_PASSWORD")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from the Secret");
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("events-operator", "password")
        );
        let settings = super::super::config_map::config_map(&secure, "")
            .data
            .expect("data");
        assert!(settings[super::super::config_map::SETTINGS_KEY]
            .contains("listener.security.protocol=SASL_PLAINTEXT\n"));
        // The operator's mechanism stays offered.
        secure
            .spec
            .config
            .insert("sasl.enabled.mechanisms".into(), "PLAIN".into());
        let settings = super::super::config_map::config_map(&secure, "")
            .data
            .expect("data");
        assert!(settings[super::super::config_map::SETTINGS_KEY]
            .ends_with("sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512\n"));
        assert!(env.iter().all(|e| e.name != "RUNNEL_SUPER_USERS"));
        // With ACLs, the operator's user and the spec's are super users.
        secure.spec.authorization = Some(runnel_operator_api::ClusterAuthorization {
            super_users: vec!["admin".into()],
        });
        let env = env_of(&secure);
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        let supers = names.iter().position(|n| *n == "RUNNEL_SUPER_USERS");
        assert!(supers.is_some() && user < supers, "{names:?}");
        let value = env
            .iter()
            .find(|e| e.name == "RUNNEL_SUPER_USERS")
            .and_then(|e| e.value.clone());
        assert_eq!(
            value.as_deref(),
            Some("User:$(RUNNEL_OPERATOR_USERNAME);User:admin")
        );
        let settings = super::super::config_map::config_map(&secure, "")
            .data
            .expect("data");
        assert!(settings[super::super::config_map::SETTINGS_KEY].contains(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n"
        ));
    }

    #[test]
    fn each_zone_gets_its_own_pinned_statefulset() {
        let c = cluster(5, &["zone-a", "zone-b", "zone-c"]);
        let replicas: Vec<i32> = (0..3)
            .map(|i| {
                statefulset(&c, i)
                    .spec
                    .and_then(|s| s.replicas)
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(replicas, vec![2, 2, 1]);

        let sts = statefulset(&c, 1);
        assert_eq!(sts.metadata.name.as_deref(), Some("events-zone-b"));
        let spec = sts.spec.expect("a spec");
        assert_eq!(
            spec.update_strategy.and_then(|u| u.type_).as_deref(),
            Some("OnDelete")
        );
        assert_eq!(spec.service_name.as_deref(), Some("events-brokers"));
        let pod = spec.template.spec.expect("a pod spec");
        let term = &pod
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .expect("required node affinity")
            .node_selector_terms[0];
        let req = &term.match_expressions.as_ref().expect("expressions")[0];
        assert_eq!(req.key, "topology.kubernetes.io/zone");
        assert_eq!(req.values, Some(vec!["zone-b".to_owned()]));
        let env: BTreeMap<String, Option<String>> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(env["RUNNEL_RACK"].as_deref(), Some("zone-b"));
        assert_eq!(env["RUNNEL_NODE_ID_BASE"].as_deref(), Some("2000"));
        assert_eq!(
            env["RUNNEL_ADVERTISE"].as_deref(),
            Some("$(POD_NAME).events-brokers.streams.svc:9092")
        );
        let claims = spec.volume_claim_templates.expect("claims");
        let storage = claims[0]
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone());
        assert_eq!(storage.as_deref(), Some("10Gi"));
        assert_eq!(
            claims[0]
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref()),
            Some("fast")
        );
        assert_eq!(settings_path(), "/etc/runnel/broker.settings");
    }
}
