//! The quorum in one process: controllers on 127.0.0.1 gRPC listeners,
//! brokers registering and heartbeating, a leader killed and restarted.
//! Every wait is on a condition with a generous deadline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::info;
use uuid::Uuid;

use super::client::{Call, QuorumClient};
use super::*;
use crate::cluster::Assignment;

/// How long any condition may take to come true.
const DEADLINE: Duration = Duration::from_secs(30);

/// Short timings, with margins for a loaded machine.
const ELECTION: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_millis(200);
const SESSION: Duration = Duration::from_secs(2);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "runnel_broker=info,openraft=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Polls `check` until it gives a value, failing after [`DEADLINE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A broker's controller serving gRPC on its own listener.
struct Node {
    id: i32,
    address: SocketAddr,
    data_dir: PathBuf,
    controller: Controller,
    serving: CancellationToken,
    server: JoinHandle<()>,
}

impl Node {
    async fn start(id: i32, listener: TcpListener, voters: &[Voter], data_dir: &Path) -> Node {
        let address = listener.local_addr().expect("bound");
        let controller = Controller::start(ControllerConfig {
            node_id: id,
            voters: voters.to_vec(),
            data_dir: data_dir.to_path_buf(),
            session_timeout: SESSION,
            heartbeat_interval: HEARTBEAT,
            election_timeout: ELECTION,
            rebalance: None,
        })
        .await
        .expect("controller starts");
        let serving = CancellationToken::new();
        let router = controller.services();
        let shutdown = serving.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            let incoming = TcpListenerStream::new(listener);
            if let Err(error) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::warn!(%error, "test gRPC server failed");
            }
        });
        Node {
            id,
            address,
            data_dir: data_dir.to_path_buf(),
            controller,
            serving,
            server,
        }
    }

    async fn register(&self) -> i64 {
        self.controller
            .register(Registration {
                id: self.id,
                rack: Some(format!("zone-{}", self.id)),
                host: "127.0.0.1".into(),
                port: 9090 + self.id,
                rpc_address: self.address.to_string(),
            })
            .await
            .expect("registration succeeds")
    }

    fn image(&self) -> Arc<ClusterImage> {
        self.controller.image().borrow().clone()
    }

    /// Kills the node: its gRPC server and its Raft.
    async fn kill(self) -> (i32, SocketAddr, PathBuf) {
        self.serving.cancel();
        self.controller.stop().await;
        let _ = tokio::time::timeout(DEADLINE, self.server).await;
        (self.id, self.address, self.data_dir)
    }
}

async fn bind(address: &str) -> TcpListener {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(error) => {
                assert!(Instant::now() < deadline, "bind {address}: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn create_topic(name: &str, replication_factor: i16) -> MetadataCommand {
    MetadataCommand::CreateTopic {
        name: name.into(),
        id: Uuid::new_v4(),
        configs: BTreeMap::new(),
        assignment: Assignment::Auto {
            partitions: 3,
            replication_factor,
        },
    }
}

/// The image every node has once they agree, at `version` or later.
async fn converged(nodes: &[&Node], version: u64) -> Arc<ClusterImage> {
    eventually("the images to converge", || {
        let first = nodes[0].image();
        let same = nodes.iter().all(|n| *n.image() == *first);
        (same && first.version >= version).then_some(first)
    })
    .await
}

/// `n` temporary data directories.
fn temp_dirs(n: usize) -> Vec<tempfile::TempDir> {
    (0..n)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect()
}

/// One voter per data directory, ids from 1, once they have elected a
/// leader; and the voter list they were given.
async fn start_voters(dirs: &[tempfile::TempDir]) -> (Vec<Node>, Vec<Voter>) {
    let mut listeners = Vec::new();
    for _ in dirs {
        listeners.push(bind("127.0.0.1:0").await);
    }
    let voters: Vec<Voter> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Voter {
            id: i as i32 + 1,
            address: l.local_addr().expect("bound").to_string(),
        })
        .collect();
    let mut nodes = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        nodes.push(Node::start(i as i32 + 1, listener, &voters, dirs[i].path()).await);
    }
    eventually("a leader", || {
        nodes
            .iter()
            .find(|n| n.controller.is_leader())
            .map(|n| n.id)
    })
    .await;
    (nodes, voters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_fence_and_recover() {
    init_tracing();
    let dirs = temp_dirs(3);
    info!("phase: three voters start and elect a leader");
    let (mut nodes, voters) = start_voters(&dirs).await;

    info!("phase: three brokers register and heartbeat");
    let (e1, e2, e3) = tokio::join!(
        nodes[0].register(),
        nodes[1].register(),
        nodes[2].register()
    );
    let last = e1.max(e2).max(e3) as u64;
    for node in &nodes {
        node.controller
            .wait_for_version(last, DEADLINE)
            .await
            .expect("each voter applies the registrations");
    }
    let image = converged(&[&nodes[0], &nodes[1], &nodes[2]], last).await;
    assert_eq!(image.live_brokers().count(), 3);
    assert!(image.cluster_id.is_some(), "the leader set a cluster id");

    info!("phase: a topic is created through any voter and reaches all three");
    let writer = nodes
        .iter()
        .find(|n| !n.controller.is_leader())
        .expect("a follower");
    let (index, result) = writer
        .controller
        .write(create_topic("orders", 3))
        .await
        .expect("the write commits");
    assert_eq!(result, CommandResult::Ok);
    let image = converged(&[&nodes[0], &nodes[1], &nodes[2]], index).await;
    let topic = &image.topics["orders"];
    assert_eq!(topic.partitions.len(), 3);
    assert!(topic.partitions.iter().all(|p| p.isr.len() == 3));
    let (_, again) = writer
        .controller
        .write(create_topic("orders", 3))
        .await
        .expect("the write commits");
    assert!(matches!(again, CommandResult::Error { .. }), "{again:?}");

    info!("phase: the leader dies; a new one is elected and fences it");
    let position = nodes
        .iter()
        .position(|n| n.controller.is_leader())
        .expect("a leader");
    let dead = nodes.remove(position);
    let dead_epoch = dead.controller.broker_epoch();
    let led_by_dead = image.topics["orders"]
        .partitions
        .iter()
        .filter(|p| p.leader == dead.id)
        .count();
    assert_eq!(led_by_dead, 1, "the assignment spreads leaders");
    let (dead_id, dead_address, dead_dir) = dead.kill().await;
    info!(broker = dead_id, "killed the leader");
    let new_leader = eventually("a new leader", || {
        nodes
            .iter()
            .find(|n| n.controller.is_leader())
            .map(|n| n.id)
    })
    .await;
    assert_ne!(new_leader, dead_id);
    let image = eventually("the dead broker fenced and its partitions moved", || {
        let image = nodes[0].image();
        let fenced = image.brokers[&dead_id].fenced;
        let moved = image.topics["orders"].partitions.iter().all(|p| {
            p.leader != dead_id
                && p.leader != -1
                && p.isr.contains(&p.leader)
                && !p.isr.contains(&dead_id)
        });
        (fenced && moved).then_some(image)
    })
    .await;
    assert_eq!(image.brokers[&dead_id].epoch, dead_epoch);
    let survivors = converged(&[&nodes[0], &nodes[1]], image.version).await;
    assert!(survivors.live_brokers().all(|b| b.id != dead_id));

    info!("phase: writes still commit with two voters of three");
    let (index, result) = nodes[0]
        .controller
        .write(create_topic("payments", 2))
        .await
        .expect("a majority commits");
    assert_eq!(result, CommandResult::Ok);
    converged(&[&nodes[0], &nodes[1]], index).await;

    info!("phase: the survivors snapshot and purge their logs, so the dead voter needs a snapshot");
    for node in &nodes {
        let raft = node
            .controller
            .inner
            .member
            .as_ref()
            .expect("a voter")
            .raft();
        let applied = raft.metrics().borrow().last_applied.expect("applied").index;
        raft.trigger().snapshot().await.expect("snapshot");
        eventually("a snapshot", || {
            let m = raft.metrics();
            let m = m.borrow();
            m.snapshot.is_some_and(|s| s.index >= applied).then_some(())
        })
        .await;
        raft.trigger().purge_log(applied).await.expect("purge");
        eventually("the purge", || {
            let m = raft.metrics();
            let m = m.borrow();
            m.purged.is_some_and(|p| p.index >= applied).then_some(())
        })
        .await;
    }
    let snapshot = dead_dir
        .join(member::METADATA_DIR)
        .join(state_machine::SNAPSHOT_FILE);
    assert!(!snapshot.exists(), "the dead voter has no snapshot yet");

    info!("phase: the dead broker restarts from its log and registers again");
    let listener = bind(&dead_address.to_string()).await;
    let restarted = Node::start(dead_id, listener, &voters, &dead_dir).await;
    let epoch = restarted.register().await;
    assert!(epoch > dead_epoch, "a new broker epoch");
    restarted
        .controller
        .wait_for_version(epoch as u64, DEADLINE)
        .await
        .expect("the restarted voter catches up");
    nodes.push(restarted);
    let image = converged(&[&nodes[0], &nodes[1], &nodes[2]], epoch as u64).await;
    let broker = &image.brokers[&dead_id];
    assert!(!broker.fenced && broker.epoch == epoch);
    assert!(
        image.topics.contains_key("payments"),
        "caught up on what it missed"
    );
    assert!(snapshot.exists(), "it caught up by installing a snapshot");
    // Back as a follower of nothing: it rejoins ISRs only through replication.
    assert!(image.topics["orders"]
        .partitions
        .iter()
        .all(|p| !p.isr.contains(&dead_id) && p.leader != dead_id));

    info!("phase: the restarted broker keeps its session");
    let alive_since = Instant::now();
    eventually("two session timeouts with heartbeats", || {
        (alive_since.elapsed() > 2 * SESSION).then_some(())
    })
    .await;
    let image = nodes[0].image();
    assert!(!image.brokers[&dead_id].fenced);
    assert_eq!(image.brokers[&dead_id].epoch, epoch);

    for node in nodes {
        node.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_voter_leads_at_once_and_keeps_its_log() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = bind("127.0.0.1:0").await;
    let address = listener.local_addr().expect("bound").to_string();
    let voters = vec![Voter {
        id: 7,
        address: address.clone(),
    }];

    info!("phase: a lone voter elects itself and takes registrations");
    let started = Instant::now();
    let node = Node::start(7, listener, &voters, dir.path()).await;
    let epoch = node.register().await;
    info!(elapsed = ?started.elapsed(), "registered with a single voter");
    node.controller
        .wait_for_version(epoch as u64, DEADLINE)
        .await
        .expect("applied");
    let (index, result) = node
        .controller
        .write(create_topic("solo", 1))
        .await
        .expect("write");
    assert_eq!(result, CommandResult::Ok);
    // The leader sets the cluster id on its own tick, racing the write above.
    let before = eventually("the cluster id set", || {
        let image = node.image();
        image.cluster_id.is_some().then_some(image)
    })
    .await;
    assert!(before.version >= index);

    info!("phase: a non-voter follows the metadata and writes through the voter");
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_listener = bind("127.0.0.1:0").await;
    let other = Node::start(8, other_listener, &voters, other_dir.path()).await;
    let other_epoch = other.register().await;
    other
        .controller
        .wait_for_version(other_epoch as u64, DEADLINE)
        .await
        .expect("the non-voter sees its registration");
    assert!(other.image().topics.contains_key("solo"));
    let (index, _) = other
        .controller
        .write(MetadataCommand::AllocateProducerIds { count: 1000 })
        .await
        .expect("a non-voter writes");
    node.controller
        .wait_for_version(index, DEADLINE)
        .await
        .expect("applied on the voter");
    assert!(other.image().live_brokers().count() == 2);
    other.kill().await;

    info!("phase: restarted on the same directory, the voter has its metadata back");
    let cluster_id = node.image().cluster_id.clone();
    let version = node.image().version;
    let (id, address, data_dir) = node.kill().await;
    let node = Node::start(id, bind(&address.to_string()).await, &voters, &data_dir).await;
    node.controller
        .wait_for_version(version, DEADLINE)
        .await
        .expect("the log is replayed");
    let image = node.image();
    assert!(image.topics.contains_key("solo"));
    assert_eq!(image.cluster_id, cluster_id);
    assert_eq!(image.next_producer_id, 1000);
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_voter_does_not_wait_out_its_shutdown_for_a_gone_quorum() {
    init_tracing();
    let dirs = temp_dirs(3);
    let (mut nodes, _) = start_voters(&dirs).await;
    let (e1, e2, e3) = tokio::join!(
        nodes[0].register(),
        nodes[1].register(),
        nodes[2].register()
    );
    assert!(e1 >= 0 && e2 >= 0 && e3 >= 0);

    info!("phase: two of the three voters stop");
    let last = nodes.remove(0);
    for node in nodes {
        node.kill().await;
    }

    info!("phase: the last one shuts down, with far more time than the test has");
    let shutdown = last.controller.shutdown(Duration::from_secs(3600));
    tokio::time::timeout(DEADLINE, shutdown)
        .await
        .expect("the shutdown stops waiting once most voters are gone");
    last.kill().await;
}

#[tokio::test]
async fn calls_to_an_unreachable_quorum_end_in_time() {
    init_tracing();
    // Ports that were bound and released: connections are refused.
    let mut voters = BTreeMap::new();
    for id in 1..=3u64 {
        let listener = bind("127.0.0.1:0").await;
        voters.insert(id, listener.local_addr().expect("bound").to_string());
    }
    let client = QuorumClient::new(9, voters, None);
    let started = Instant::now();
    let result = client
        .call(
            &Call::Write(create_topic("nowhere", 1)),
            Duration::from_millis(500),
        )
        .await;
    assert!(
        matches!(result, Err(ControllerError::Unavailable { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < DEADLINE);
}

#[test]
fn configurations_are_checked() {
    let config = |voters: Vec<Voter>| ControllerConfig {
        node_id: 1,
        voters,
        data_dir: PathBuf::from("/nonexistent"),
        session_timeout: SESSION,
        heartbeat_interval: HEARTBEAT,
        election_timeout: ELECTION,
        rebalance: None,
    };
    let voter = |id, address: &str| Voter {
        id,
        address: address.into(),
    };
    assert!(validate(&config(vec![])).is_err());
    assert!(validate(&config(vec![voter(-1, "a:1")])).is_err());
    assert!(validate(&config(vec![voter(1, "a:1"), voter(1, "b:1")])).is_err());
    let mut short = config(vec![voter(1, "a:1")]);
    short.election_timeout = Duration::from_millis(1);
    assert!(validate(&short).is_err());
    assert_eq!(
        validate(&config(vec![voter(1, "a:1"), voter(2, "b:2")])).expect("valid"),
        BTreeMap::from([(1, "a:1".to_string()), (2, "b:2".to_string())])
    );
}
