//! The ConfigMap every broker reads: its Kafka-named settings (one
//! `key=value` per line, each passed as `--set`) and the controller voters.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use runnel_operator_api::Cluster;

use super::names::{config_map_name, labels};
use super::statefulset::TLS_DIR;

/// The key of the settings file.
pub const SETTINGS_KEY: &str = "broker.settings";
/// The key of `ID@HOST:PORT,...`.
pub const VOTERS_KEY: &str = "controller.voters";

/// `<cluster>-config` naming `voters` (`ID@HOST:PORT,...`): the voter set is
/// fixed when the Cluster is created ([`super::names::controller_voters`], the first
/// brokers zone by zone) and kept after, so brokers added later join as
/// non-voters.
pub fn config_map(cluster: &Cluster, voters: &str) -> ConfigMap {
    let mut settings: String = cluster
        .spec
        .config
        .iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    let protocol = match (&cluster.spec.authentication, &cluster.spec.tls) {
        (None, None) => None,
        (Some(_), None) => Some("SASL_PLAINTEXT"),
        (None, Some(_)) => Some("SSL"),
        (Some(_), Some(_)) => Some("SASL_SSL"),
    };
    if let Some(protocol) = protocol {
        settings.push_str(&format!("listener.security.protocol={protocol}\n"));
    }
    if cluster.spec.tls.is_some() {
        // The Secret's files, as the StatefulSet mounts them; the brokers
        // read them again when a renewed certificate lands.
        settings.push_str(&format!(
            "ssl.keystore.location={TLS_DIR}/tls.crt\nssl.keystore.key.location={TLS_DIR}/tls.key\n"
        ));
        // Brokers talk to each other over TLS too, each presenting its
        // certificate and trusting the Secret's CA.
        settings.push_str(&format!(
            "security.inter.broker.protocol=SSL\nssl.truststore.location={TLS_DIR}/ca.crt\n"
        ));
    }
    if cluster.spec.authorization.is_some() {
        // ACLs in the cluster metadata; the super users come from the
        // StatefulSet's environment (the operator's user is in a Secret).
        settings.push_str(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n",
        );
    }
    if cluster.spec.authentication.is_some() {
        // The operator's own mechanism stays offered.
        if let Some(mechanisms) = cluster.spec.config.get("sasl.enabled.mechanisms") {
            if !mechanisms.split(',').any(|m| m.trim() == "SCRAM-SHA-512") {
                settings.push_str(&format!(
                    "sasl.enabled.mechanisms={mechanisms},SCRAM-SHA-512\n"
                ));
            }
        }
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(cluster)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(labels(cluster)),
            owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (SETTINGS_KEY.to_owned(), settings),
            (VOTERS_KEY.to_owned(), voters.to_owned()),
        ])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::names::controller_voters;
    use super::*;
    use crate::cluster::tests::cluster;

    #[test]
    fn the_voters_stay_as_first_written() {
        let grown = cluster(3, &["zone-a", "zone-b", "zone-c"]);
        let first = "1000@events-zone-a-0.events-brokers.streams.svc:9093";
        let data = config_map(&grown, first).data.expect("data");
        assert_eq!(data[VOTERS_KEY], first);
    }

    #[test]
    fn settings_and_voters_in_distinct_zones() {
        let mut c = cluster(4, &["zone-a", "zone-b", "zone-c"]);
        c.spec
            .config
            .insert("min.insync.replicas".to_owned(), "2".to_owned());
        let data = config_map(&c, &controller_voters(&c)).data.expect("data");
        assert_eq!(data[SETTINGS_KEY], "min.insync.replicas=2\n");
        let mut tls = c.clone();
        tls.spec.tls = Some(runnel_operator_api::ClusterTls {
            certificate_secret: "events-tls".to_owned(),
        });
        let settings = &config_map(&tls, "").data.expect("data")[SETTINGS_KEY];
        assert_eq!(
            settings,
            "min.insync.replicas=2\nlistener.security.protocol=SSL\n\
             ssl.keystore.location=/etc/runnel-tls/tls.crt\n\
             ssl.keystore.key.location=/etc/runnel-tls/tls.key\n\
             security.inter.broker.protocol=SSL\n\
             ssl.truststore.location=/etc/runnel-tls/ca.crt\n"
        );
        tls.spec.authentication = Some(runnel_operator_api::ClusterAuthentication {
            kind: runnel_operator_api::AuthenticationType::ScramSha512,
            credentials_secret: "events-operator".to_owned(),
        });
        let settings = &config_map(&tls, "").data.expect("data")[SETTINGS_KEY];
        assert!(settings.contains("listener.security.protocol=SASL_SSL\n"));
        assert_eq!(
            data[VOTERS_KEY],
            "1000@events-zone-a-0.events-brokers.streams.svc:9093,\
             2000@events-zone-b-0.events-brokers.streams.svc:9093,\
             3000@events-zone-c-0.events-brokers.streams.svc:9093"
        );
        let small = cluster(1, &["zone-a", "zone-b"]);
        assert_eq!(
            config_map(&small, &controller_voters(&small))
                .data
                .expect("data")[VOTERS_KEY],
            "1000@events-zone-a-0.events-brokers.streams.svc:9093"
        );
    }
}
