use super::*;
use uuid::Uuid;

struct Log {
    image: ClusterImage,
    index: u64,
}

impl Log {
    fn new() -> Self {
        Log {
            image: ClusterImage::default(),
            index: 0,
        }
    }

    fn apply(&mut self, command: MetadataCommand) -> CommandResult {
        self.index += 1;
        self.image.apply(self.index, &command)
    }

    fn register(&mut self, id: i32) -> i64 {
        let rack = Some(format!("zone-{}", (b'a' + (id as u8 - 1) % 3) as char));
        match self.apply(MetadataCommand::RegisterBroker {
            id,
            rack,
            host: "127.0.0.1".into(),
            port: 9000 + id,
            rpc_address: format!("127.0.0.1:{}", 9100 + id),
            incarnation: Uuid::new_v4(),
        }) {
            CommandResult::BrokerEpoch(e) => e,
            other => panic!("registration: {other:?}"),
        }
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> CommandResult {
        self.apply(MetadataCommand::CreateTopic {
            name: name.into(),
            id: Uuid::new_v4(),
            configs: Default::default(),
            assignment: Assignment::Auto {
                partitions,
                replication_factor: rf,
            },
        })
    }

    fn p(&self, topic: &str, index: i32) -> PartitionImage {
        self.image.partition(topic, index).expect("exists").clone()
    }
}

fn three_brokers() -> (Log, Vec<i64>) {
    let mut log = Log::new();
    let epochs = (1..=3).map(|id| log.register(id)).collect();
    (log, epochs)
}

#[test]
fn a_fenced_leader_hands_over_to_an_in_sync_replica_with_a_new_epoch() {
    let (mut log, epochs) = three_brokers();
    assert_eq!(log.create("t", 3, 3), CommandResult::Ok);
    let before = log.p("t", 0);
    let old = before.leader;
    log.apply(MetadataCommand::FenceBroker {
        id: old,
        epoch: epochs[old as usize - 1],
    });
    let after = log.p("t", 0);
    assert_ne!(after.leader, old);
    assert!(after.leader > 0);
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(!after.isr.contains(&old));
    // Partitions it followed drop it from the ISR but keep their leader.
    for i in 0..3 {
        let p = log.p("t", i);
        assert!(!p.isr.contains(&old), "{p:?}");
        assert_eq!(p.isr.len(), 2);
    }
}

#[test]
fn a_stale_fence_is_ignored() {
    let (mut log, epochs) = three_brokers();
    log.create("t", 1, 3);
    let new_epoch = log.register(1);
    assert_ne!(new_epoch, epochs[0]);
    let before = log.p("t", 0);
    log.apply(MetadataCommand::FenceBroker {
        id: 1,
        epoch: epochs[0],
    });
    assert_eq!(log.p("t", 0), before);
    assert!(log.image.is_live(1));
}

#[test]
fn without_a_live_in_sync_replica_the_partition_goes_offline_and_returns_with_it() {
    let (mut log, epochs) = three_brokers();
    log.create("t", 1, 3);
    let mut order = log.p("t", 0).replicas;
    let last = order.pop().expect("three replicas");
    for id in order {
        log.apply(MetadataCommand::FenceBroker {
            id,
            epoch: epochs[id as usize - 1],
        });
    }
    assert_eq!(log.p("t", 0).leader, last);
    assert_eq!(log.p("t", 0).isr, vec![last]);
    log.apply(MetadataCommand::FenceBroker {
        id: last,
        epoch: epochs[last as usize - 1],
    });
    let offline = log.p("t", 0);
    assert_eq!(offline.leader, -1);
    assert_eq!(offline.isr, vec![last], "the last in-sync replica is kept");
    // Another replica coming back is not in sync: no unclean election.
    let other = (1..=3).find(|b| *b != last).expect("another");
    log.register(other);
    assert_eq!(log.p("t", 0).leader, -1);
    log.register(last);
    assert_eq!(log.p("t", 0).leader, last);
}

#[test]
fn isr_changes_need_the_current_leader_and_partition_epochs() {
    let (mut log, _) = three_brokers();
    log.create("t", 1, 3);
    let p = log.p("t", 0);
    let follower = p.replicas[1];
    let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
    let result = log.apply(MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: shrunk.clone(),
    });
    let CommandResult::Partition(now) = result else {
        panic!("shrink refused: {result:?}")
    };
    assert_eq!(now.isr, shrunk);
    // The same request again is stale.
    let stale = log.apply(MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: p.isr.clone(),
    });
    assert!(
        matches!(stale, CommandResult::Error { code, .. } if code == kafka_protocol::ResponseError::InvalidUpdateVersion.code())
    );
}

fn reassign(log: &mut Log, target: &[i32], allow: bool) -> CommandResult {
    log.apply(MetadataCommand::Reassign {
        topic: "t".into(),
        partition: 0,
        target: Some(target.to_vec()),
        allow_replication_factor_change: allow,
    })
}

/// Adds partition 1 to "t", placed by the controller; its replica count.
fn second_partition_replicas(log: &mut Log) -> usize {
    log.apply(MetadataCommand::CreatePartitions {
        name: "t".into(),
        count: 2,
        assignment: None,
    });
    log.p("t", 1).replicas.len()
}

fn set_isr(log: &mut Log, isr: &[i32]) {
    let p = log.p("t", 0);
    let result = log.apply(MetadataCommand::AlterPartition {
        topic: "t".into(),
        partition: 0,
        leader: p.leader,
        leader_epoch: p.leader_epoch,
        partition_epoch: p.partition_epoch,
        isr: isr.to_vec(),
    });
    assert!(matches!(result, CommandResult::Partition(_)), "{result:?}");
}

/// `brokers` brokers (ids from 1) and topic "t" with one partition on `replicas`.
fn one_partition(brokers: i32, replicas: &[i32]) -> Log {
    let mut log = Log::new();
    for id in 1..=brokers {
        log.register(id);
    }
    log.apply(MetadataCommand::CreateTopic {
        name: "t".into(),
        id: Uuid::new_v4(),
        configs: Default::default(),
        assignment: Assignment::Explicit(vec![replicas.to_vec()]),
    });
    log
}

/// As Kafka: cancelling a move is refused when only replicas being added
/// are in sync, since going back would need an unclean election; with an
/// original replica in sync it goes back to the original replicas.
#[test]
fn a_cancel_that_would_need_an_unclean_election_is_refused() {
    let cancel = |log: &mut Log| {
        log.apply(MetadataCommand::Reassign {
            topic: "t".into(),
            partition: 0,
            target: None,
            allow_replication_factor_change: true,
        })
    };
    let mut log = one_partition(3, &[1]);
    let epoch_of_1 = log.image.brokers[&1].epoch;
    assert_eq!(reassign(&mut log, &[2, 3], true), CommandResult::Ok);
    set_isr(&mut log, &[1, 2]);
    log.apply(MetadataCommand::FenceBroker {
        id: 1,
        epoch: epoch_of_1,
    });
    let before = log.p("t", 0);
    assert_eq!(
        (before.leader, before.isr.clone()),
        (2, vec![2]),
        "{before:?}"
    );
    match cancel(&mut log) {
        CommandResult::Error { code, message } => {
            assert_eq!(
                code,
                kafka_protocol::ResponseError::InvalidReplicaAssignment.code()
            );
            assert!(message.contains("unclean"), "{message}");
        }
        other => panic!("cancel accepted: {other:?}"),
    }
    assert_eq!(log.p("t", 0), before, "a refused cancel changes nothing");

    let mut log = one_partition(3, &[1]);
    assert_eq!(reassign(&mut log, &[2, 3], true), CommandResult::Ok);
    set_isr(&mut log, &[1, 2]);
    assert_eq!(cancel(&mut log), CommandResult::Ok);
    let back = log.p("t", 0);
    assert_eq!(
        (back.replicas.clone(), back.isr.clone(), back.leader),
        (vec![1], vec![1], 1)
    );
    assert!(
        back.adding.is_empty() && back.removing.is_empty(),
        "{back:?}"
    );
}

#[test]
fn a_reassignment_completes_when_the_new_replicas_are_in_sync() {
    let mut log = one_partition(4, &[1, 2, 3]);
    assert_eq!(reassign(&mut log, &[2, 3, 4], true), CommandResult::Ok);
    let moving = log.p("t", 0);
    assert_eq!(moving.adding, vec![4]);
    assert_eq!(moving.removing, vec![1]);
    assert_eq!(moving.replicas, vec![2, 3, 4, 1]);
    set_isr(&mut log, &[1, 2, 3, 4]);
    let done = log.p("t", 0);
    assert_eq!(done.replicas, vec![2, 3, 4]);
    assert_eq!(done.isr, vec![2, 3, 4]);
    assert_eq!(done.leader, 2);
    assert!(done.adding.is_empty() && done.removing.is_empty());
    assert_eq!(done.leader_epoch, moving.leader_epoch + 1);
}

#[test]
fn a_reassignment_may_raise_the_replication_factor() {
    let mut log = one_partition(3, &[1]);
    assert_eq!(reassign(&mut log, &[1, 2, 3], true), CommandResult::Ok);
    let growing = log.p("t", 0);
    assert_eq!(growing.replicas, vec![1, 2, 3]);
    assert_eq!(growing.adding, vec![2, 3]);
    assert!(growing.removing.is_empty());
    // One new replica in sync is not enough.
    set_isr(&mut log, &[1, 2]);
    assert_eq!(log.p("t", 0).adding, vec![2, 3]);
    set_isr(&mut log, &[1, 2, 3]);
    let done = log.p("t", 0);
    assert_eq!(done.replicas, vec![1, 2, 3]);
    assert_eq!(done.isr, vec![1, 2, 3]);
    assert_eq!(done.leader, 1);
    assert_eq!(done.leader_epoch, growing.leader_epoch, "the leader stays");
    assert!(done.adding.is_empty() && done.removing.is_empty());
    // New partitions take the raised factor.
    assert_eq!(second_partition_replicas(&mut log), 3);
}

#[test]
fn a_reassignment_may_lower_the_replication_factor_once_a_kept_replica_is_in_sync() {
    // All in sync: done at once, and leadership moves to the replica kept.
    let mut log = one_partition(3, &[1, 2, 3]);
    let before = log.p("t", 0);
    reassign(&mut log, &[3], true);
    let shrunk = log.p("t", 0);
    assert_eq!(shrunk.replicas, vec![3]);
    assert_eq!(shrunk.isr, vec![3]);
    assert_eq!(shrunk.leader, 3);
    assert_eq!(shrunk.leader_epoch, before.leader_epoch + 1);
    // The replica kept has fallen out of the ISR: the reassignment waits
    // rather than leave an ISR of removed replicas.
    let mut log = one_partition(3, &[1, 2, 3]);
    set_isr(&mut log, &[1, 2]);
    reassign(&mut log, &[3], true);
    let waiting = log.p("t", 0);
    assert_eq!(waiting.replicas, vec![3, 1, 2]);
    assert_eq!(waiting.removing, vec![1, 2]);
    assert_eq!(waiting.isr, vec![1, 2]);
    assert_eq!(waiting.leader, 1);
    set_isr(&mut log, &[1, 2, 3]);
    let done = log.p("t", 0);
    assert_eq!(done.replicas, vec![3]);
    assert_eq!(done.isr, vec![3]);
    assert_eq!(done.leader, 3);
    assert!(done.adding.is_empty() && done.removing.is_empty());
}

/// A new reassignment of a partition being moved starts from all of its
/// replicas, as in Kafka: the leader and the ISR stay among the replicas,
/// replicas being added that the new target leaves out are removed, and the
/// move completes only with the whole new target in sync.
#[test]
fn a_reassignment_over_one_in_flight_keeps_the_leader_and_isr_among_the_replicas() {
    let mut log = one_partition(5, &[1, 2]);
    assert_eq!(reassign(&mut log, &[3, 4], true), CommandResult::Ok);
    set_isr(&mut log, &[1, 2, 3]);
    log.apply(MetadataCommand::ElectPreferredLeader {
        topic: "t".into(),
        partition: 0,
    });
    assert_eq!(
        log.p("t", 0).leader,
        3,
        "the preferred (first) replica leads"
    );
    assert_eq!(reassign(&mut log, &[4, 5], true), CommandResult::Ok);
    let moving = log.p("t", 0);
    assert_eq!(moving.replicas, vec![4, 5, 3, 1, 2]);
    assert_eq!(moving.adding, vec![5]);
    assert_eq!(moving.removing, vec![3, 1, 2]);
    assert!(moving.replicas.contains(&moving.leader), "{moving:?}");
    assert!(moving.isr.iter().all(|r| moving.replicas.contains(r)));
    // 5 in sync is not enough: 4 (added by the first move) is not yet.
    set_isr(&mut log, &[1, 2, 3, 5]);
    assert_eq!(log.p("t", 0).removing, vec![3, 1, 2]);
    set_isr(&mut log, &[1, 2, 3, 4, 5]);
    let done = log.p("t", 0);
    assert_eq!(done.replicas, vec![4, 5]);
    assert_eq!(done.isr, vec![4, 5]);
    assert_eq!(done.leader, 4);
    // The same target again changes nothing, not even the epochs.
    assert_eq!(reassign(&mut log, &[4, 5], true), CommandResult::Ok);
    assert_eq!(log.p("t", 0), done);
}

/// An ISR of replicas a new target leaves out does not complete the move.
#[test]
fn a_reassignment_waits_for_its_whole_target_in_sync() {
    let mut log = one_partition(5, &[1, 2, 3]);
    reassign(&mut log, &[1, 2, 3, 4, 5], true);
    set_isr(&mut log, &[1, 4]);
    reassign(&mut log, &[2, 3], true);
    let waiting = log.p("t", 0);
    assert_eq!(waiting.replicas, vec![2, 3, 1, 4, 5]);
    assert_eq!(waiting.removing, vec![1, 4, 5]);
    assert_eq!(waiting.leader, 1);
    set_isr(&mut log, &[1, 2, 4]);
    assert_eq!(
        log.p("t", 0).removing,
        vec![1, 4, 5],
        "3 is not in sync yet"
    );
    set_isr(&mut log, &[1, 2, 3, 4]);
    let done = log.p("t", 0);
    assert_eq!(
        (done.replicas, done.isr, done.leader),
        (vec![2, 3], vec![2, 3], 2)
    );
}

/// KIP-860: with allowReplicationFactorChange false the target must have
/// the count the partition has or is heading to; the controller checks it.
#[test]
fn a_reassignment_may_be_told_to_keep_the_replication_factor() {
    let mut log = one_partition(5, &[1]);
    let refused = reassign(&mut log, &[1, 2, 3], false);
    assert!(
        matches!(&refused, CommandResult::Error { code, message } if *code == kafka_protocol::ResponseError::InvalidReplicationFactor.code() && message.contains("has 1 replicas") && message.contains("to 3 replicas")),
        "{refused:?}"
    );
    assert_eq!(log.p("t", 0).replicas, vec![1]);
    assert_eq!(reassign(&mut log, &[1, 2, 3], true), CommandResult::Ok);
    // Heading to 3: another list of 3 is a move, 1 is a change.
    assert_eq!(reassign(&mut log, &[1, 2, 4], false), CommandResult::Ok);
    assert!(matches!(
        reassign(&mut log, &[2], false),
        CommandResult::Error { .. }
    ));
}

/// New partitions take the replication factor a move in flight heads to.
#[test]
fn partitions_added_during_a_shrink_take_the_new_replication_factor() {
    let mut log = one_partition(5, &[1, 2, 3]);
    set_isr(&mut log, &[1, 2]);
    reassign(&mut log, &[3], true);
    assert_eq!(log.p("t", 0).removing, vec![1, 2], "waits for 3");
    assert_eq!(second_partition_replicas(&mut log), 1);
}

/// Kafka refuses explicit replica lists of different lengths within a
/// topic: at creation, and for new partitions against the existing ones.
#[test]
fn explicit_assignments_keep_one_replication_factor() {
    let (mut log, _) = three_brokers();
    let uneven = log.apply(MetadataCommand::CreateTopic {
        name: "u".into(),
        id: Uuid::new_v4(),
        configs: Default::default(),
        assignment: Assignment::Explicit(vec![vec![1, 2], vec![3]]),
    });
    assert!(
        matches!(&uneven, CommandResult::Error { code, message } if *code == kafka_protocol::ResponseError::InvalidReplicaAssignment.code() && message.contains("partition 1 has 1")),
        "{uneven:?}"
    );
    let mut log = one_partition(3, &[1, 2]);
    let odd = log.apply(MetadataCommand::CreatePartitions {
        name: "t".into(),
        count: 2,
        assignment: Some(vec![vec![3]]),
    });
    assert!(
        matches!(&odd, CommandResult::Error { code, message } if *code == kafka_protocol::ResponseError::InvalidReplicaAssignment.code() && message.contains("1 replica(s), but the topic's partitions have 2")),
        "{odd:?}"
    );
    assert_eq!(
        log.apply(MetadataCommand::CreatePartitions {
            name: "t".into(),
            count: 2,
            assignment: Some(vec![vec![3, 1]]),
        }),
        CommandResult::Ok
    );
}

#[test]
fn controlled_shutdown_moves_leadership_first() {
    let (mut log, epochs) = three_brokers();
    log.create("t", 6, 3);
    log.apply(MetadataCommand::ControlledShutdown {
        id: 2,
        epoch: epochs[1],
    });
    for i in 0..6 {
        let p = log.p("t", i);
        assert_ne!(p.leader, 2);
        assert!(!p.isr.contains(&2));
    }
    // New topics avoid it.
    log.create("u", 3, 2);
    for i in 0..3 {
        assert!(!log.p("u", i).replicas.contains(&2));
    }
}

#[test]
fn topics_refuse_what_kafka_refuses() {
    let (mut log, _) = three_brokers();
    assert_eq!(log.create("t", 1, 1), CommandResult::Ok);
    let again = log.create("t", 1, 1);
    assert!(
        matches!(again, CommandResult::Error { code, .. } if code == kafka_protocol::ResponseError::TopicAlreadyExists.code())
    );
    let too_many = log.create("u", 1, 4);
    assert!(
        matches!(&too_many, CommandResult::Error { code, message } if *code == kafka_protocol::ResponseError::InvalidReplicationFactor.code() && message.contains("3 available")),
        "{too_many:?}"
    );
    let fewer = log.apply(MetadataCommand::CreatePartitions {
        name: "t".into(),
        count: 1,
        assignment: None,
    });
    assert!(matches!(fewer, CommandResult::Error { .. }));
    assert_eq!(
        log.apply(MetadataCommand::CreatePartitions {
            name: "t".into(),
            count: 3,
            assignment: None,
        }),
        CommandResult::Ok
    );
    assert_eq!(log.image.topics["t"].partitions.len(), 3);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut log = Log::new();
    let first = log.apply(MetadataCommand::AllocateProducerIds { count: 1000 });
    let second = log.apply(MetadataCommand::AllocateProducerIds { count: 1000 });
    assert_eq!(first, CommandResult::ProducerIds(0));
    assert_eq!(second, CommandResult::ProducerIds(1000));
}
