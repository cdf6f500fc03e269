//! `Cluster`: a set of brokers spread over zones.
//!
//! ```yaml
//! apiVersion: runnel.dev/v1alpha1
//! kind: Cluster
//! metadata: { name: events }
//! spec:
//!   brokers: 3
//!   zones: [zone-a, zone-b, zone-c]
//!   storage: { size: 10Gi, storageClassName: fast }
//!   config: { min.insync.replicas: "2" }
//! ```

// kube's `printcolumn(name = .., type_ = ..)` repeats keys across columns,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// The image brokers run when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = "runnel/broker:latest";

/// A Runnel cluster: brokers spread over `zones`, each broker in one zone
/// and knowing it as its rack.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    derive = "PartialEq",
    shortname = "rncluster",
    category = "runnel",
    doc = "A Runnel cluster: Kafka-compatible brokers spread over zones.",
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".spec.brokers"),
    printcolumn(
        name = "Ready Brokers",
        type_ = "integer",
        json_path = ".status.readyBrokers"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.authentication) == has(oldSelf.authentication)",
    "message": "authentication cannot be turned on or off on an existing Cluster: its brokers would disagree with the operator while they roll"
}, {
    "rule": "!has(self.authorization) || has(self.authentication)",
    "message": "authorization needs authentication: ACLs name users, and without spec.authentication no client has a name"
}, {
    "rule": "has(self.tls) == has(oldSelf.tls)",
    "message": "tls cannot be turned on or off on an existing Cluster: its brokers would disagree with the operator and the clients while they roll"
}]))]
pub struct ClusterSpec {
    /// How many brokers, spread round-robin over `zones`.
    #[schemars(range(min = 1, max = 1000))]
    pub brokers: i32,
    /// The zones (values of the nodes' `topology.kubernetes.io/zone` label)
    /// the brokers run in; each broker's rack is its zone. Zones may be
    /// appended, not removed or reordered: a broker's node id follows its
    /// zone's place in the list, and its data stays with that id.
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 63)),
        extend("x-kubernetes-list-type" = "set"),
        extend("x-kubernetes-validations" = [{
            "rule": "oldSelf.all(z, self.indexOf(z) == oldSelf.indexOf(z))",
            "message": "zones can only be appended to: removing or reordering a zone would give its brokers other node ids than their data holds"
        }])
    )]
    pub zones: Vec<String>,
    /// Each broker's persistent volume.
    pub storage: StorageSpec,
    /// Kafka-named broker settings (`min.insync.replicas`,
    /// `log.retention.ms`, ...), passed to each broker as `--set key=value`.
    /// `listener.security.protocol` is not set here: `authentication` and
    /// `tls` set it, together with what the operator needs to reach the
    /// brokers; nor are the `ssl.*` settings but `ssl.enabled.protocols`
    /// and `ssl.client.auth` (clients' certificates are then checked
    /// against the `tls` Secret's CA, and the operator presents the
    /// Secret's own): `tls` sets the keystore and the truststore.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "!('listener.security.protocol' in self) || self['listener.security.protocol'] == 'PLAINTEXT'",
        "message": "listener.security.protocol other than PLAINTEXT is set by spec.authentication and spec.tls, which also give the operator what it needs to reach the brokers"
    }, {
        "rule": "self.all(k, !k.startsWith('ssl.') || k == 'ssl.enabled.protocols' || k == 'ssl.client.auth')",
        "message": "ssl.* settings other than ssl.enabled.protocols and ssl.client.auth are set by spec.tls"
    }, {
        "rule": "!('authorizer.class.name' in self) && !('super.users' in self)",
        "message": "authorizer.class.name and super.users are set by spec.authorization, which keeps the operator a super user"
    }, {
        "rule": "!('security.inter.broker.protocol' in self)",
        "message": "security.inter.broker.protocol is set by spec.tls: with it the brokers talk to each other over TLS"
    }]))]
    pub config: BTreeMap<String, String>,
    /// The broker image; `runnel/broker:latest` when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Each broker container's resource requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Clients must authenticate on the brokers' Kafka listener
    /// (SASL_PLAINTEXT); none when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ClusterAuthentication>,
    /// TLS on the brokers' Kafka listener (SSL, or SASL_SSL with
    /// `authentication`); none when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClusterTls>,
    /// The brokers check ACLs (Kafka's StandardAuthorizer): each `User`'s
    /// `spec.authorization`, or `kafka-acls.sh`. Needs `authentication`.
    /// None when not set: every client may do everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<ClusterAuthorization>,
}

/// ACLs on the brokers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthorization {
    /// Users no ACL refuses (user names, not principals: `admin` is
    /// `User:admin`). The operator's own user is always one. Changing the
    /// list rolls the brokers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._@-]+$"))
    )]
    pub super_users: Vec<String>,
}

/// TLS on the brokers' Kafka listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterTls {
    /// A Secret in the Cluster's namespace with keys `tls.crt` (the
    /// brokers' certificate chain), `tls.key` (its private key, unencrypted
    /// PEM) and `ca.crt` (the CA that signed it, which the operator
    /// trusts), as cert-manager writes them. The certificate must name
    /// `*.<cluster>-brokers.<namespace>.svc` and
    /// `<cluster>-bootstrap.<namespace>.svc`, and allow client
    /// authentication as well as server authentication: the brokers also
    /// present it to each other (`security.inter.broker.protocol=SSL`).
    /// The brokers read a renewed certificate without restarting; naming
    /// another Secret rolls them.
    #[schemars(length(min = 1, max = 253))]
    pub certificate_secret: String,
}

/// SASL authentication on the brokers' Kafka listener.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAuthentication {
    /// The mechanism the operator itself uses; the brokers also offer
    /// SCRAM-SHA-256, and users are managed with `kafka-configs.sh
    /// --entity-type users`.
    #[serde(rename = "type")]
    pub kind: AuthenticationType,
    /// A Secret in the Cluster's namespace with keys `username` and
    /// `password`: the operator's own user, which the brokers create at
    /// start-up (`--add-scram`) and the operator authenticates as.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
}

/// A SASL mechanism.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AuthenticationType {
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

/// A broker's persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The claim's size, a Kubernetes quantity such as `10Gi`.
    #[schemars(length(min = 1))]
    pub size: String,
    /// The claim's storage class; the cluster's default when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// What the operator last saw of a Cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and its reason.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Brokers that answer (per their pods' readiness, or per the brokers'
    /// own metadata when the operator reaches them from outside).
    #[serde(default)]
    pub ready_brokers: i32,
    /// Where clients bootstrap: the bootstrap Service's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
}

impl Cluster {
    /// The broker image.
    pub fn image(&self) -> &str {
        self.spec.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }
}
