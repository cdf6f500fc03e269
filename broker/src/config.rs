//! The broker's command line and its Kafka-named settings.
//!
//! Broker settings come from repeatable `--set key=value` flags, named as in
//! Kafka's `server.properties`. Topic configs (`retention.ms`, ...) default to
//! the broker setting Kafka derives them from (`log.retention.ms`, ...); a
//! topic's own overrides are validated by [`TopicConfigs::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use runnel_storage::LogConfig;

use crate::error::ConfigError;

/// How a config value is typed and checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A 64-bit integer with a minimum.
    Long(i64),
    /// A 32-bit integer with a minimum.
    Int(i64),
    /// A 32-bit integer with a minimum, or -1 for "the operating system's
    /// default".
    IntOrDefault(i64),
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// A comma-separated, non-empty list of words from a fixed set.
    List(&'static [&'static str]),
    /// A number from 0 to 1.
    Ratio,
    /// Free text, such as a file path (may be empty).
    Text,
    /// A replication throttle's replicas (KIP-73): empty, `*`, or a list of
    /// `partition:broker`.
    Replicas,
}

impl Kind {
    /// Kafka's `ConfigType` code for DescribeConfigs v3+.
    pub(crate) fn type_code(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Choice(_) | Kind::Text => 2,
            Kind::Int(_) | Kind::IntOrDefault(_) => 3,
            Kind::Long(_) => 5,
            Kind::Ratio => 6,
            Kind::List(_) | Kind::Replicas => 7,
        }
    }

    fn check(self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |why: String| ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            why,
        };
        match self {
            Kind::IntOrDefault(min) => {
                if value.trim() == "-1" {
                    return Ok(());
                }
                Kind::Int(min).check(name, value).map_err(|_| {
                    bad(format!(
                        "must be -1 (the system's default) or at least {min}"
                    ))
                })
            }
            Kind::Long(min) | Kind::Int(min) => {
                let parsed: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("not an integer".into()))?;
                if matches!(self, Kind::Int(_)) && i32::try_from(parsed).is_err() {
                    return Err(bad("out of the 32-bit integer range".into()));
                }
                if parsed < min {
                    return Err(bad(format!("must be at least {min}")));
                }
                Ok(())
            }
            Kind::Bool => match value.trim() {
                "true" | "false" => Ok(()),
                _ => Err(bad("must be true or false".into())),
            },
            Kind::Choice(words) => {
                if words.contains(&value.trim()) {
                    Ok(())
                } else {
                    Err(bad(format!("must be one of {}", words.join(", "))))
                }
            }
            Kind::List(words) => {
                let items: Vec<&str> = value.split(',').map(str::trim).collect();
                if items.iter().all(|item| words.contains(item)) {
                    Ok(())
                } else {
                    Err(bad(format!(
                        "must be a comma-separated list of {}",
                        words.join(", ")
                    )))
                }
            }
            Kind::Ratio => match value.trim().parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
                _ => Err(bad("must be a number from 0 to 1".into())),
            },
            Kind::Text => Ok(()),
            Kind::Replicas => crate::replication::throttle::validate_replicas(value).map_err(bad),
        }
    }
}

/// The words of `cleanup.policy`: `delete` (retention deletes old
/// segments) and `compact` (the cleaner keeps the latest record per key).
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];

/// A topic config Runnel understands, and the broker setting it defaults to.
#[derive(Debug)]
pub(crate) struct TopicConfigDef {
    /// The topic config name.
    pub(crate) name: &'static str,
    /// The broker setting that gives its default.
    pub(crate) broker_key: &'static str,
    /// Its type and bounds.
    pub(crate) kind: Kind,
}

/// Every topic config accepted by CreateTopics and IncrementalAlterConfigs.
pub(crate) const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        kind: Kind::List(CLEANUP_POLICIES),
    },
    TopicConfigDef {
        name: "compression.type",
        broker_key: "compression.type",
        kind: Kind::Choice(&["producer"]),
    },
    TopicConfigDef {
        name: "delete.retention.ms",
        broker_key: "log.cleaner.delete.retention.ms",
        kind: Kind::Long(0),
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_key: "log.flush.interval.messages",
        kind: Kind::Long(1),
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_key: "log.flush.interval.ms",
        kind: Kind::Long(0),
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        kind: Kind::Int(0),
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_key: "message.max.bytes",
        kind: Kind::Int(0),
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        kind: Kind::Choice(&["CreateTime"]),
    },
    TopicConfigDef {
        name: "max.compaction.lag.ms",
        broker_key: "log.cleaner.max.compaction.lag.ms",
        kind: Kind::Long(1),
    },
    TopicConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_key: "log.cleaner.min.cleanable.ratio",
        kind: Kind::Ratio,
    },
    TopicConfigDef {
        name: "min.compaction.lag.ms",
        broker_key: "log.cleaner.min.compaction.lag.ms",
        kind: Kind::Long(0),
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        kind: Kind::Int(1),
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        kind: Kind::Long(-1),
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_key: "log.retention.ms",
        kind: Kind::Long(-1),
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_key: "log.segment.bytes",
        kind: Kind::Int(14),
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_key: "log.roll.ms",
        kind: Kind::Long(1),
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_key: "unclean.leader.election.enable",
        // Leaders come only from the ISR: an acknowledged record is never lost.
        kind: Kind::Choice(&["false"]),
    },
    // Replication throttles (KIP-73): the replicas the brokers' dynamic
    // throttle rates apply to. No broker setting: empty by default.
    TopicConfigDef {
        name: crate::replication::throttle::LEADER_REPLICAS,
        broker_key: "",
        kind: Kind::Replicas,
    },
    TopicConfigDef {
        name: crate::replication::throttle::FOLLOWER_REPLICAS,
        broker_key: "",
        kind: Kind::Replicas,
    },
];

/// A broker setting: its name, type and default.
#[derive(Debug)]
pub(crate) struct BrokerSettingDef {
    /// The Kafka name.
    pub(crate) name: &'static str,
    /// Its type and bounds.
    pub(crate) kind: Kind,
    /// Kafka's default.
    pub(crate) default: &'static str,
}

/// Every broker setting `--set` accepts.
pub(crate) const BROKER_SETTINGS: &[BrokerSettingDef] = &[
    // Authorization (see `acl`): with no ACL on a resource, whether
    // everyone may use it (Kafka's default: only super users may).
    BrokerSettingDef {
        name: "allow.everyone.if.no.acl.found",
        kind: Kind::Bool,
        default: "false",
    },
    // Empty (no authorization), or Kafka's KRaft authorizer
    // `org.apache.kafka.metadata.authorizer.StandardAuthorizer`: ACLs in the
    // cluster metadata.
    BrokerSettingDef {
        name: "authorizer.class.name",
        kind: Kind::Text,
        default: "",
    },
    BrokerSettingDef {
        name: "auto.create.topics.enable",
        kind: Kind::Bool,
        default: "true",
    },
    BrokerSettingDef {
        name: "auto.leader.rebalance.enable",
        kind: Kind::Bool,
        default: "true",
    },
    BrokerSettingDef {
        name: "broker.heartbeat.interval.ms",
        kind: Kind::Int(1),
        default: "500",
    },
    BrokerSettingDef {
        name: "broker.session.timeout.ms",
        kind: Kind::Int(1),
        default: "6000",
    },
    BrokerSettingDef {
        name: "compression.type",
        kind: Kind::Choice(&["producer"]),
        default: "producer",
    },
    BrokerSettingDef {
        name: "controlled.shutdown.enable",
        kind: Kind::Bool,
        default: "true",
    },
    BrokerSettingDef {
        name: "controller.quorum.election.timeout.ms",
        kind: Kind::Int(1),
        default: "1000",
    },
    BrokerSettingDef {
        name: "default.replication.factor",
        kind: Kind::Int(1),
        default: "1",
    },
    BrokerSettingDef {
        name: "delete.topic.enable",
        kind: Kind::Bool,
        default: "true",
    },
    // The consumer rebalance protocol (KIP-848).
    BrokerSettingDef {
        name: "group.consumer.heartbeat.interval.ms",
        kind: Kind::Int(1),
        default: "5000",
    },
    BrokerSettingDef {
        name: "group.consumer.max.size",
        kind: Kind::Int(1),
        default: "2147483647",
    },
    BrokerSettingDef {
        name: "group.consumer.session.timeout.ms",
        kind: Kind::Int(1),
        default: "45000",
    },
    BrokerSettingDef {
        name: "group.initial.rebalance.delay.ms",
        kind: Kind::Long(0),
        default: "3000",
    },
    BrokerSettingDef {
        name: "group.max.session.timeout.ms",
        kind: Kind::Int(1),
        default: "1800000",
    },
    BrokerSettingDef {
        name: "group.max.size",
        kind: Kind::Int(1),
        default: "2147483647",
    },
    BrokerSettingDef {
        name: "group.min.session.timeout.ms",
        kind: Kind::Int(1),
        default: "6000",
    },
    BrokerSettingDef {
        name: "leader.imbalance.check.interval.seconds",
        kind: Kind::Long(1),
        default: "30",
    },
    BrokerSettingDef {
        name: "log.cleaner.backoff.ms",
        kind: Kind::Long(1),
        default: "15000",
    },
    BrokerSettingDef {
        name: "log.cleaner.dedupe.buffer.size",
        kind: Kind::Long(1024 * 1024),
        default: "134217728",
    },
    BrokerSettingDef {
        name: "log.cleaner.delete.retention.ms",
        kind: Kind::Long(0),
        default: "86400000",
    },
    // The Kafka listener's security protocol: PLAINTEXT (no
    // authentication), SASL_PLAINTEXT (SASL, see `sasl`), SSL (TLS, see
    // `tls`) or SASL_SSL (SASL over TLS).
    BrokerSettingDef {
        name: "listener.security.protocol",
        kind: Kind::Choice(&["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"]),
        default: "PLAINTEXT",
    },
    BrokerSettingDef {
        name: "log.cleaner.enable",
        kind: Kind::Bool,
        default: "true",
    },
    BrokerSettingDef {
        name: "log.cleaner.max.compaction.lag.ms",
        kind: Kind::Long(1),
        default: "9223372036854775807",
    },
    BrokerSettingDef {
        name: "log.cleaner.min.cleanable.ratio",
        kind: Kind::Ratio,
        default: "0.5",
    },
    BrokerSettingDef {
        name: "log.cleaner.min.compaction.lag.ms",
        kind: Kind::Long(0),
        default: "0",
    },
    BrokerSettingDef {
        name: "log.cleanup.policy",
        kind: Kind::List(CLEANUP_POLICIES),
        default: "delete",
    },
    BrokerSettingDef {
        name: "log.flush.interval.messages",
        kind: Kind::Long(1),
        default: "9223372036854775807",
    },
    BrokerSettingDef {
        name: "log.flush.interval.ms",
        kind: Kind::Long(0),
        default: "9223372036854775807",
    },
    BrokerSettingDef {
        name: "log.index.interval.bytes",
        kind: Kind::Int(0),
        default: "4096",
    },
    BrokerSettingDef {
        name: "log.message.timestamp.type",
        kind: Kind::Choice(&["CreateTime"]),
        default: "CreateTime",
    },
    BrokerSettingDef {
        name: "log.retention.bytes",
        kind: Kind::Long(-1),
        default: "-1",
    },
    BrokerSettingDef {
        name: "log.retention.check.interval.ms",
        kind: Kind::Long(1),
        default: "300000",
    },
    BrokerSettingDef {
        name: "log.retention.ms",
        kind: Kind::Long(-1),
        default: "604800000",
    },
    BrokerSettingDef {
        name: "log.roll.ms",
        kind: Kind::Long(1),
        default: "604800000",
    },
    BrokerSettingDef {
        name: "log.segment.bytes",
        kind: Kind::Int(14),
        default: "1073741824",
    },
    BrokerSettingDef {
        name: "message.max.bytes",
        kind: Kind::Int(0),
        default: "1048588",
    },
    BrokerSettingDef {
        name: "min.insync.replicas",
        kind: Kind::Int(1),
        default: "1",
    },
    BrokerSettingDef {
        name: "num.partitions",
        kind: Kind::Int(1),
        default: "1",
    },
    BrokerSettingDef {
        name: "offset.metadata.max.bytes",
        kind: Kind::Int(0),
        default: "4096",
    },
    BrokerSettingDef {
        name: "offsets.retention.check.interval.ms",
        kind: Kind::Long(1),
        default: "600000",
    },
    BrokerSettingDef {
        name: "offsets.retention.minutes",
        kind: Kind::Int(1),
        default: "10080",
    },
    BrokerSettingDef {
        name: "offsets.topic.num.partitions",
        kind: Kind::Int(1),
        default: "50",
    },
    BrokerSettingDef {
        name: "offsets.topic.replication.factor",
        kind: Kind::Int(1),
        default: "3",
    },
    BrokerSettingDef {
        name: "offsets.topic.segment.bytes",
        kind: Kind::Int(14),
        default: "104857600",
    },
    BrokerSettingDef {
        name: "replica.fetch.max.bytes",
        kind: Kind::Int(1),
        default: "1048576",
    },
    BrokerSettingDef {
        name: "replica.fetch.wait.max.ms",
        kind: Kind::Int(0),
        default: "500",
    },
    BrokerSettingDef {
        name: "replica.high.watermark.checkpoint.interval.ms",
        kind: Kind::Long(1),
        default: "5000",
    },
    BrokerSettingDef {
        name: "replica.lag.time.max.ms",
        kind: Kind::Long(1),
        default: "30000",
    },
    // The SASL mechanisms a SASL_PLAINTEXT listener offers: SCRAM-SHA-256,
    // SCRAM-SHA-512, PLAIN (checked against the SCRAM credentials).
    BrokerSettingDef {
        name: "sasl.enabled.mechanisms",
        kind: Kind::List(&["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]),
        default: "SCRAM-SHA-256,SCRAM-SHA-512",
    },
    // TLS between brokers on the gRPC listener (replication, the controller
    // quorum, transaction markers): PLAINTEXT, or SSL with certificates
    // both ways (the `ssl.keystore.*` and `ssl.truststore.location` files).
    BrokerSettingDef {
        name: "security.inter.broker.protocol",
        kind: Kind::Choice(&["PLAINTEXT", "SSL"]),
        default: "PLAINTEXT",
    },
    BrokerSettingDef {
        name: "socket.request.max.bytes",
        kind: Kind::Int(1),
        default: "104857600",
    },
    // Kafka's default is 102400. On loopback an unbounded (autotuned) send
    // buffer made the broker push each fetch's megabytes in one call and
    // run the receiving side's TCP work for all of it; 256 KiB cost the
    // whole machine about a third less CPU per GB read, and was faster
    // (docs/benchmarks.md, "Found while building this").
    BrokerSettingDef {
        name: "socket.send.buffer.bytes",
        kind: Kind::IntOrDefault(4096),
        default: "262144",
    },
    // TLS for SSL and SASL_SSL listeners (see `tls`). Keys and
    // certificates are PEM files, read again when they change.
    // Whether TLS clients must (`required`) or may (`requested`) present a
    // certificate signed by the truststore.
    BrokerSettingDef {
        name: "ssl.client.auth",
        kind: Kind::Choice(&["none", "requested", "required"]),
        default: "none",
    },
    BrokerSettingDef {
        name: "ssl.enabled.protocols",
        kind: Kind::List(&["TLSv1.2", "TLSv1.3"]),
        default: "TLSv1.2,TLSv1.3",
    },
    // Runnel's own: the private key in a file of its own, for the
    // `tls.crt`/`tls.key` layout of a Kubernetes TLS Secret; then
    // `ssl.keystore.location` holds the certificate chain only.
    BrokerSettingDef {
        name: "ssl.keystore.key.location",
        kind: Kind::Text,
        default: "",
    },
    // A PEM file with the private key (unencrypted) and the certificate
    // chain, the listener's certificate first.
    BrokerSettingDef {
        name: "ssl.keystore.location",
        kind: Kind::Text,
        default: "",
    },
    BrokerSettingDef {
        name: "ssl.keystore.type",
        kind: Kind::Choice(&["PEM"]),
        default: "PEM",
    },
    // How a client certificate's subject becomes a principal's name:
    // Kafka's `RULE:pattern/replacement/[LU]` list, or DEFAULT (the whole
    // subject, `CN=alice,OU=apps`).
    BrokerSettingDef {
        name: "ssl.principal.mapping.rules",
        kind: Kind::Text,
        default: "DEFAULT",
    },
    // A PEM file of the CA certificates client certificates are checked
    // against.
    BrokerSettingDef {
        name: "ssl.truststore.location",
        kind: Kind::Text,
        default: "",
    },
    BrokerSettingDef {
        name: "ssl.truststore.type",
        kind: Kind::Choice(&["PEM"]),
        default: "PEM",
    },
    // Principals ACLs never refuse, `;`-separated (`User:admin;User:operator`).
    BrokerSettingDef {
        name: "super.users",
        kind: Kind::Text,
        default: "",
    },
    BrokerSettingDef {
        name: "transaction.max.timeout.ms",
        kind: Kind::Int(1),
        default: "900000",
    },
    // KIP-890: a transaction's first batch on a partition waits for its
    // coordinator to confirm the partition is in the transaction.
    BrokerSettingDef {
        name: "transaction.partition.verification.enable",
        kind: Kind::Bool,
        default: "true",
    },
    BrokerSettingDef {
        name: "transaction.state.log.num.partitions",
        kind: Kind::Int(1),
        default: "50",
    },
    BrokerSettingDef {
        name: "transaction.state.log.replication.factor",
        kind: Kind::Int(1),
        default: "3",
    },
    BrokerSettingDef {
        name: "transaction.state.log.segment.bytes",
        kind: Kind::Int(14),
        default: "104857600",
    },
    BrokerSettingDef {
        name: "transactional.id.expiration.ms",
        kind: Kind::Long(1),
        default: "604800000",
    },
    BrokerSettingDef {
        name: "unclean.leader.election.enable",
        kind: Kind::Choice(&["false"]),
        default: "false",
    },
];

/// Kafka spellings that set another setting in a different unit.
const UNIT_ALIASES: &[(&str, &str, i64)] = &[
    ("log.retention.hours", "log.retention.ms", 3_600_000),
    ("log.retention.minutes", "log.retention.ms", 60_000),
    ("log.roll.hours", "log.roll.ms", 3_600_000),
];

/// The broker's settings, every known key present (defaults filled in).
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    values: BTreeMap<String, String>,
    overridden: BTreeMap<String, String>,
}

impl BrokerSettings {
    /// Builds the settings from `key=value` pairs, rejecting unknown keys and bad values.
    pub fn from_pairs(pairs: &[String]) -> Result<Self, ConfigError> {
        let mut values: BTreeMap<String, String> = BROKER_SETTINGS
            .iter()
            .map(|d| (d.name.to_string(), d.default.to_string()))
            .collect();
        let mut overridden = BTreeMap::new();
        // `--set` splits its values at commas, so a list value
        // (`sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN`) arrives in
        // pieces: a piece without `=` continues the one before.
        let mut joined: Vec<String> = Vec::with_capacity(pairs.len());
        // Mapping rules and super users hold commas and `=`
        // (`RULE:^CN=(.*?),OU=(.*?)$/$1/`, `User:CN=admin,O=Example`), so
        // after them a piece continues unless it starts a known setting.
        const COMMA_TEXT: [&str; 2] = ["ssl.principal.mapping.rules=", "super.users="];
        let starts_setting = |piece: &str| {
            piece.split_once('=').is_some_and(|(key, _)| {
                let key = key.trim();
                BROKER_SETTINGS.iter().any(|d| d.name == key)
                    || UNIT_ALIASES.iter().any(|(alias, _, _)| *alias == key)
            })
        };
        for piece in pairs {
            match joined.last_mut() {
                Some(last)
                    if !piece.contains('=')
                        || (COMMA_TEXT.iter().any(|key| last.starts_with(key))
                            && !starts_setting(piece)) =>
                {
                    last.push(',');
                    last.push_str(piece);
                }
                _ => joined.push(piece.clone()),
            }
        }
        for pair in &joined {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| ConfigError::MalformedSet(pair.clone()))?;
            let (key, value) = (key.trim(), value.trim());
            let (key, value) = match UNIT_ALIASES.iter().find(|(alias, _, _)| *alias == key) {
                Some((alias, target, factor)) => {
                    Kind::Long(-1).check(alias, value)?;
                    let n: i64 = value.parse().unwrap_or(-1);
                    let ms = if n < 0 { -1 } else { n.saturating_mul(*factor) };
                    (*target, ms.to_string())
                }
                None => (key, value.to_string()),
            };
            let def = BROKER_SETTINGS
                .iter()
                .find(|d| d.name == key)
                .ok_or_else(|| ConfigError::UnknownSetting(key.to_string()))?;
            def.kind.check(key, &value)?;
            values.insert(key.to_string(), value.clone());
            overridden.insert(key.to_string(), value);
        }
        Ok(BrokerSettings { values, overridden })
    }

    /// The value of a known setting.
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    /// Whether the operator set this key (as opposed to Kafka's default).
    pub fn is_overridden(&self, key: &str) -> bool {
        self.overridden.contains_key(key)
    }

    /// A setting as an integer (every integer setting was validated on the way in).
    pub fn get_i64(&self, key: &str) -> i64 {
        self.get(key).parse().unwrap_or(0)
    }

    /// A setting as a boolean.
    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key) == "true"
    }

    /// All settings, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A topic's own config overrides (only the keys the user set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

impl TopicConfigs {
    /// Checks that a topic config name is known and its value well-formed.
    pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
        let def = TOPIC_CONFIGS
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| ConfigError::UnknownTopicConfig(name.to_string()))?;
        def.kind.check(name, value)
    }

    /// The effective value of `name`: the override, else the broker default.
    pub fn effective<'a>(&'a self, name: &str, broker: &'a BrokerSettings) -> (&'a str, bool) {
        match self.0.get(name) {
            Some(v) => (v.as_str(), true),
            None => {
                let key = TOPIC_CONFIGS
                    .iter()
                    .find(|d| d.name == name)
                    .map(|d| d.broker_key)
                    .unwrap_or(name);
                (broker.get(key), false)
            }
        }
    }

    /// The effective value of an integer config.
    pub(crate) fn effective_i64(&self, name: &str, broker: &BrokerSettings) -> i64 {
        self.effective(name, broker).0.parse().unwrap_or(0)
    }

    /// The storage settings these configs give.
    pub fn log_config(&self, broker: &BrokerSettings) -> LogConfig {
        let get = |name| self.effective_i64(name, broker);
        LogConfig {
            segment_bytes: get("segment.bytes").max(14) as u64,
            // A compacted log is cleaned only below its active segment, so
            // that segment rolls by max.compaction.lag.ms too (KIP-354).
            segment_ms: if self.has_policy("compact", broker) {
                get("segment.ms").min(get("max.compaction.lag.ms"))
            } else {
                get("segment.ms")
            },
            retention_ms: get("retention.ms"),
            retention_bytes: get("retention.bytes"),
            max_message_bytes: get("max.message.bytes").max(0) as usize,
            flush_messages: get("flush.messages"),
            flush_ms: get("flush.ms"),
            index_interval_bytes: get("index.interval.bytes").clamp(0, i64::from(u32::MAX)) as u32,
            delete_policy: self.has_policy("delete", broker),
        }
    }

    /// Whether `cleanup.policy` includes `policy` (`compact` or `delete`).
    pub fn has_policy(&self, policy: &str, broker: &BrokerSettings) -> bool {
        self.effective("cleanup.policy", broker)
            .0
            .split(',')
            .any(|p| p.trim() == policy)
    }

    /// The effective value of a ratio config.
    pub fn effective_f64(&self, name: &str, broker: &BrokerSettings) -> f64 {
        self.effective(name, broker).0.trim().parse().unwrap_or(0.0)
    }
}

/// The broker's command line (each flag also `RUNNEL_<FLAG>`).
#[derive(Debug, clap::Parser)]
#[command(
    name = "runnel-broker",
    version,
    about = "Runnel: a Kafka-compatible broker"
)]
pub struct Args {
    /// This broker's id in the cluster.
    #[arg(long, env = "RUNNEL_NODE_ID", default_value_t = 1)]
    pub node_id: i32,
    /// Where partition logs and metadata live.
    #[arg(long, env = "RUNNEL_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The Kafka listener.
    #[arg(long, env = "RUNNEL_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// The address clients are told to connect to (defaults to --listen).
    #[arg(long, env = "RUNNEL_ADVERTISE")]
    pub advertise: Option<String>,
    /// The gRPC listener for brokers and the operator.
    #[arg(long, env = "RUNNEL_RPC_LISTEN", default_value = "127.0.0.1:9093")]
    pub rpc_listen: SocketAddr,
    /// The HTTP listener for /metrics and /health.
    #[arg(long, env = "RUNNEL_METRICS_LISTEN", default_value = "127.0.0.1:9644")]
    pub metrics_listen: SocketAddr,
    /// This broker's rack (its zone).
    #[arg(long, env = "RUNNEL_RACK")]
    pub rack: Option<String>,
    /// The controller quorum, `ID@HOST:PORT,...`.
    #[arg(long, env = "RUNNEL_CONTROLLER_VOTERS", value_delimiter = ',')]
    pub controller_voters: Vec<String>,
    /// A Kafka-named broker setting, `key=value`; repeatable.
    #[arg(long = "set", env = "RUNNEL_SET", value_delimiter = ',')]
    pub set: Vec<String>,
    /// A SASL/SCRAM credential made at start-up unless the user has one for
    /// that mechanism already, as `kafka-storage format --add-scram` has it:
    /// `SCRAM-SHA-256=[name=admin,password=admin-secret]`; repeatable (in
    /// the environment variable, separated by `;`).
    #[arg(long = "add-scram", env = "RUNNEL_ADD_SCRAM", value_delimiter = ';')]
    pub add_scram: Vec<String>,
}

/// A controller quorum member from `--controller-voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Its node id.
    pub id: i32,
    /// Its host and port.
    pub address: String,
}

/// Parses one `ID@HOST:PORT`.
pub fn parse_voter(text: &str) -> Result<Voter, ConfigError> {
    let bad = || ConfigError::MalformedVoter(text.to_string());
    let (id, address) = text.split_once('@').ok_or_else(bad)?;
    let id = id.trim().parse().map_err(|_| bad())?;
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(Voter {
        id,
        address: address.to_string(),
    })
}

/// Splits an advertised `HOST:PORT`.
pub fn split_host_port(text: &str) -> Result<(String, i32), ConfigError> {
    let bad = || ConfigError::MalformedAddress(text.to_string());
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let s = BrokerSettings::from_pairs(&[
            "num.partitions=3".into(),
            "log.retention.hours=1".into(),
        ])
        .expect("valid settings");
        assert_eq!(s.get_i64("num.partitions"), 3);
        assert_eq!(s.get_i64("log.retention.ms"), 3_600_000);
        assert!(s.get_bool("auto.create.topics.enable"));
        assert!(s.is_overridden("num.partitions"));
        assert!(!s.is_overridden("message.max.bytes"));
    }

    #[test]
    fn a_socket_buffer_is_minus_one_or_a_size() {
        let s = BrokerSettings::from_pairs(&[]).expect("defaults");
        assert_eq!(s.get_i64("socket.send.buffer.bytes"), 262_144);
        for good in ["-1", "65536"] {
            let pair = format!("socket.send.buffer.bytes={good}");
            let s = BrokerSettings::from_pairs(&[pair]).expect("valid");
            assert_eq!(s.get("socket.send.buffer.bytes"), good);
        }
        for bad in ["0", "-2", "100", "big", "4294967296"] {
            let pair = format!("socket.send.buffer.bytes={bad}");
            let err = BrokerSettings::from_pairs(&[pair]).expect_err(bad);
            let text = err.to_string();
            assert!(text.contains("socket.send.buffer.bytes"), "{text}");
            assert!(text.contains("-1"), "{text}");
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        let err =
            BrokerSettings::from_pairs(&["num.partitions=zero".into()]).expect_err("bad value");
        assert!(err.to_string().contains("num.partitions"), "{err}");
        let err = BrokerSettings::from_pairs(&["no.such.thing=1".into()]).expect_err("unknown key");
        assert!(err.to_string().contains("no.such.thing"), "{err}");
        let err = BrokerSettings::from_pairs(&["novalue".into()]).expect_err("malformed");
        assert!(err.to_string().contains("novalue"), "{err}");
        // A list split at its commas by --set is put back together.
        let s = BrokerSettings::from_pairs(&[
            "sasl.enabled.mechanisms=SCRAM-SHA-256".into(),
            "PLAIN".into(),
            "num.partitions=2".into(),
        ])
        .expect("a list value");
        assert_eq!(s.get("sasl.enabled.mechanisms"), "SCRAM-SHA-256,PLAIN");
        assert_eq!(s.get_i64("num.partitions"), 2);
        let err = BrokerSettings::from_pairs(&["num.partitions=2".into(), "3".into()])
            .expect_err("not a list");
        assert!(err.to_string().contains("num.partitions"), "{err}");
    }

    #[test]
    fn topic_configs_default_to_broker_settings() {
        let broker = BrokerSettings::from_pairs(&["log.segment.bytes=2048".into()]).expect("valid");
        let mut topic = TopicConfigs::default();
        topic.0.insert("retention.ms".into(), "1000".into());
        let log = topic.log_config(&broker);
        assert_eq!(log.segment_bytes, 2048);
        assert_eq!(log.retention_ms, 1000);
        assert!(TopicConfigs::validate("retention.ms", "-1").is_ok());
        assert!(TopicConfigs::validate("retention.ms", "-2").is_err());
        assert!(TopicConfigs::validate("segment.bytes", "99999999999").is_err());
        assert!(TopicConfigs::validate("bogus", "1").is_err());
    }

    #[test]
    fn compaction_configs_are_checked_and_bound_the_roll() {
        let broker = BrokerSettings::from_pairs(&[]).expect("defaults");
        for good in ["compact", "delete", "compact,delete", "delete, compact"] {
            assert!(
                TopicConfigs::validate("cleanup.policy", good).is_ok(),
                "{good}"
            );
        }
        for bad in ["", "compacted", "compact,,delete"] {
            let err = TopicConfigs::validate("cleanup.policy", bad).expect_err(bad);
            assert!(err.to_string().contains("cleanup.policy"), "{err}");
        }
        assert!(TopicConfigs::validate("min.cleanable.dirty.ratio", "0.25").is_ok());
        for bad in ["1.5", "-0.1", "half"] {
            assert!(
                TopicConfigs::validate("min.cleanable.dirty.ratio", bad).is_err(),
                "{bad}"
            );
        }
        let mut topic = TopicConfigs::default();
        topic
            .0
            .insert("max.compaction.lag.ms".into(), "60000".into());
        let deleting = topic.log_config(&broker);
        assert!(deleting.delete_policy);
        assert_eq!(
            deleting.segment_ms,
            7 * 24 * 3_600_000,
            "lag matters only when compacted"
        );
        topic.0.insert("cleanup.policy".into(), "compact".into());
        let compacting = topic.log_config(&broker);
        assert!(!compacting.delete_policy, "compact alone: no retention");
        assert_eq!(
            compacting.segment_ms, 60_000,
            "the active segment rolls by the lag"
        );
        assert!(topic.has_policy("compact", &broker));
    }

    #[test]
    fn voters_and_addresses() {
        assert_eq!(
            parse_voter("2@host-b:9093").expect("valid"),
            Voter {
                id: 2,
                address: "host-b:9093".into()
            }
        );
        assert!(parse_voter("x@host:1").is_err());
        assert!(parse_voter("1@host").is_err());
        assert_eq!(
            split_host_port("[::1]:9092").expect("valid"),
            ("::1".into(), 9092)
        );
    }
}
