//! The headless Service (a stable DNS name per broker) and the bootstrap
//! Service (one address for clients).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use runnel_operator_api::Cluster;

use super::names::{
    bootstrap_service_name, headless_service_name, labels, selector_labels, KAFKA_PORT,
    METRICS_PORT, RPC_PORT,
};

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

fn meta(cluster: &Cluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels(cluster)),
        owner_references: cluster.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// `<cluster>-brokers`: headless, and publishing not-ready brokers, since
/// brokers must find each other to form the quorum before any is ready.
pub fn headless_service(cluster: &Cluster) -> Service {
    Service {
        metadata: meta(cluster, headless_service_name(cluster)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![
                port("kafka", KAFKA_PORT),
                port("rpc", RPC_PORT),
                port("metrics", METRICS_PORT),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<cluster>-bootstrap`: where clients connect first.
pub fn bootstrap_service(cluster: &Cluster) -> Service {
    Service {
        metadata: meta(cluster, bootstrap_service_name(cluster)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector_labels(cluster)),
            ports: Some(vec![port("kafka", KAFKA_PORT)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
