//! A Cluster's status from what was observed: a pure function.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use runnel_operator_api::condition::{self, reason, Condition, READY};
use runnel_operator_api::{Cluster, ClusterStatus};

use super::names::{bootstrap_service_name, namespace, KAFKA_PORT};

/// How many brokers answer, or why that is unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerCount {
    /// This many are ready.
    Ready(i32),
    /// The brokers could not be asked (the message says why).
    Unreachable(String),
}

/// The status to write, keeping the transition times of `cluster`'s.
pub fn cluster_status(cluster: &Cluster, brokers: BrokerCount, now: Time) -> ClusterStatus {
    let generation = cluster.metadata.generation;
    let mut status = cluster.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.bootstrap = Some(format!(
        "{}.{}.svc:{KAFKA_PORT}",
        bootstrap_service_name(cluster),
        namespace(cluster)
    ));
    let want = cluster.spec.brokers;
    let ready = match brokers {
        BrokerCount::Ready(n) => {
            status.ready_brokers = n;
            if n >= want {
                Condition::new(
                    READY,
                    true,
                    reason::BROKERS_READY,
                    format!("{n} of {want} brokers ready"),
                    generation,
                )
            } else {
                Condition::new(
                    READY,
                    false,
                    reason::BROKERS_STARTING,
                    format!("{n} of {want} brokers ready"),
                    generation,
                )
            }
        }
        BrokerCount::Unreachable(why) => {
            status.ready_brokers = 0;
            Condition::new(
                READY,
                false,
                reason::BROKERS_UNREACHABLE,
                format!("no broker answered: {why}"),
                generation,
            )
        }
    };
    condition::set(&mut status.conditions, ready, now);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::tests::cluster;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn ready_when_every_broker_answers() {
        let c = cluster(3, &["a", "b", "c"]);
        let now = Time(Timestamp::UNIX_EPOCH);
        let s = cluster_status(&c, BrokerCount::Ready(2), now.clone());
        assert_eq!(s.conditions[0].reason, "BrokersStarting");
        assert!(!s.conditions[0].is_true());
        let s = cluster_status(&c, BrokerCount::Ready(3), now.clone());
        assert!(s.conditions[0].is_true());
        assert_eq!(s.ready_brokers, 3);
        assert_eq!(
            s.bootstrap.as_deref(),
            Some("events-bootstrap.streams.svc:9092")
        );
        let s = cluster_status(&c, BrokerCount::Unreachable("refused".into()), now);
        assert_eq!(s.conditions[0].reason, "BrokersUnreachable");
    }
}
