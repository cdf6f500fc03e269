use super::*;

fn entity(user: Option<Option<&str>>, client_id: Option<Option<&str>>) -> QuotaEntity {
    QuotaEntity {
        user: user.map(|u| u.map(str::to_string)),
        client_id: client_id.map(|c| c.map(str::to_string)),
    }
}

fn quotas(entries: &[(QuotaEntity, f64)]) -> Quotas {
    entries
        .iter()
        .map(|(e, v)| {
            (
                e.clone(),
                BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), Rate(*v))]),
            )
        })
        .collect()
}

fn quotas_with(entries: &[(QuotaEntity, &str, f64)]) -> Quotas {
    entries
        .iter()
        .map(|(e, key, v)| (e.clone(), BTreeMap::from([(key.to_string(), Rate(*v))])))
        .collect()
}

#[test]
fn the_most_specific_quota_wins_in_kafkas_order() {
    let all = quotas(&[
        (entity(Some(Some("alice")), Some(Some("app"))), 1.0),
        (entity(Some(Some("alice")), Some(None)), 2.0),
        (entity(Some(Some("alice")), None), 3.0),
        (entity(Some(None), Some(Some("app"))), 4.0),
        (entity(Some(None), Some(None)), 5.0),
        (entity(Some(None), None), 6.0),
        (entity(None, Some(Some("app"))), 7.0),
        (entity(None, Some(None)), 8.0),
    ]);
    let got = |q: &Quotas, user: &str, client: &str| resolve(q, PRODUCER_BYTE_RATE, user, client);
    assert_eq!(
        got(&all, "alice", "app"),
        Some((1.0, ("alice".into(), "app".into())))
    );
    assert_eq!(
        got(&all, "alice", "other"),
        Some((2.0, ("alice".into(), "other".into())))
    );
    assert_eq!(
        got(&all, "bob", "app"),
        Some((4.0, ("bob".into(), "app".into())))
    );
    assert_eq!(
        got(&all, "bob", "other"),
        Some((5.0, ("bob".into(), "other".into())))
    );
    // A user quota is shared by all the user's clients.
    let user_only = quotas(&[(entity(Some(Some("alice")), None), 3.0)]);
    assert_eq!(
        got(&user_only, "alice", "x"),
        Some((3.0, ("alice".into(), String::new())))
    );
    assert_eq!(got(&user_only, "bob", "x"), None);
    // A client-id quota is shared by that client id whoever the user.
    let client_only = quotas(&[(entity(None, Some(Some("app"))), 7.0)]);
    assert_eq!(
        got(&client_only, "bob", "app"),
        Some((7.0, (String::new(), "app".into())))
    );
    assert_eq!(
        resolve(&client_only, CONSUMER_BYTE_RATE, "bob", "app"),
        None
    );
}

#[test]
fn a_rate_over_the_quota_is_throttled_for_the_time_it_takes_to_fall_back() {
    // 10 s of window at twice the quota: 10 s more to get back to it.
    assert_eq!(
        throttle(200.0, 100.0, Duration::from_secs(10)),
        Duration::from_secs(10)
    );
    assert_eq!(
        throttle(150.0, 100.0, Duration::from_secs(10)),
        Duration::from_secs(5)
    );
    assert_eq!(
        throttle(100.0, 100.0, Duration::from_secs(10)),
        Duration::ZERO
    );
    // Never more than the whole window.
    assert_eq!(
        throttle(1e9, 100.0, Duration::from_secs(10)),
        Duration::from_secs(11)
    );
    let mut sensor = Sensor::new();
    let start = Instant::now();
    sensor.record(start, 5000.0);
    // A first burst is spread over the minimum window (10 s), as in Kafka.
    let (rate, window) = sensor.rate(start);
    assert_eq!((rate, window), (500.0, Duration::from_secs(10)));
    sensor.record(start + Duration::from_millis(1500), 5000.0);
    assert_eq!(sensor.windows.len(), 2);
    // Windows older than 11 s are forgotten.
    sensor.record(start + Duration::from_secs(12), 1.0);
    assert_eq!(sensor.windows.len(), 2);
}

#[test]
fn quota_values_are_checked_as_kafka_does() {
    assert!(validate(PRODUCER_BYTE_RATE, Some(1024.0)).is_ok());
    assert!(validate(CONSUMER_BYTE_RATE, None).is_ok());
    for bad in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
        assert!(validate(PRODUCER_BYTE_RATE, Some(bad)).is_err(), "{bad}");
    }
    assert!(validate("request_percentage", Some(50.0))
        .expect_err("not enforced")
        .contains("does not enforce"));
    assert!(validate("no_such_quota", Some(1.0)).is_err());
    // The mutation rate is a Double in Kafka: fractions are fine.
    assert!(validate(CONTROLLER_MUTATION_RATE, Some(0.5)).is_ok());
    for bad in [0.0, -2.0, f64::NAN] {
        assert!(
            validate(CONTROLLER_MUTATION_RATE, Some(bad)).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn controller_mutations_take_from_a_token_bucket() {
    let mut image = ClusterImage::default();
    let manager = QuotaManager::default();
    assert_eq!(
        manager.take_mutations(&image, "alice", "app", 1000, true),
        Ok(())
    );
    image.quotas = quotas_with(&[(
        entity(None, Some(Some("app"))),
        CONTROLLER_MUTATION_RATE,
        2.0,
    )]);
    // 2/s over the 11 s window: a burst of 22. One request of 30 goes
    // through (the bucket was not in debt) and leaves it 8 in debt.
    assert_eq!(
        manager.take_mutations(&image, "alice", "app", 30, true),
        Ok(())
    );
    let wait = manager.mutation_throttle(&image, "alice", "app");
    assert!(
        wait > Duration::from_millis(3500) && wait <= Duration::from_secs(4),
        "{wait:?}"
    );
    // In debt: a new client is refused, an old one admitted (and throttled).
    let refused = manager.take_mutations(&image, "alice", "app", 1, true);
    assert!(
        refused.is_err_and(|w| w > Duration::from_secs(3)),
        "{refused:?}"
    );
    assert_eq!(
        manager.take_mutations(&image, "alice", "app", 1, false),
        Ok(())
    );
    // Another client id has its own bucket (none applies to it).
    assert_eq!(
        manager.take_mutations(&image, "alice", "other", 100, true),
        Ok(())
    );
    assert_eq!(
        manager.mutation_throttle(&image, "alice", "other"),
        Duration::ZERO
    );
    // The bucket refills at the quota, up to the burst.
    let mut bucket = Bucket {
        tokens: -8.0,
        at: Instant::now(),
    };
    let later = bucket.at + Duration::from_secs(5);
    bucket.refill(2.0, later);
    assert!((bucket.tokens - 2.0).abs() < 1e-9, "{}", bucket.tokens);
    bucket.refill(2.0, later + Duration::from_secs(60));
    assert!((bucket.tokens - 22.0).abs() < 1e-9, "{}", bucket.tokens);
}

#[test]
fn fetches_are_capped_at_what_the_quota_allows_over_the_window() {
    let mut image = ClusterImage::default();
    let manager = QuotaManager::default();
    assert_eq!(manager.fetch_cap(&image, "alice", "app"), None);
    image.quotas = BTreeMap::from([(
        entity(None, Some(None)),
        BTreeMap::from([(CONSUMER_BYTE_RATE.to_string(), Rate(1000.0))]),
    )]);
    assert_eq!(manager.fetch_cap(&image, "alice", "app"), Some(10_000));
}

#[test]
fn idle_sensors_are_swept_once_there_are_many() {
    let image = ClusterImage {
        quotas: BTreeMap::from([(
            entity(None, Some(None)),
            BTreeMap::from([(PRODUCER_BYTE_RATE.to_string(), Rate(1e9))]),
        )]),
        ..ClusterImage::default()
    };
    let manager = QuotaManager::default();
    for i in 0..(SWEEP_ABOVE + 10) {
        manager.record(&image, Kind::Produce, "u", &format!("client-{i}"), 1);
    }
    let mut sensors = manager.sensors.lock().expect("lock");
    let later = Instant::now() + Duration::from_secs(12);
    sensors.sweep(later);
    assert!(sensors.by_key.is_empty(), "{}", sensors.by_key.len());
}

#[test]
fn the_manager_throttles_only_entities_with_a_quota() {
    let mut image = ClusterImage::default();
    let manager = QuotaManager::default();
    let unlimited = manager.record(&image, Kind::Produce, "alice", "app", 1 << 30);
    assert_eq!(unlimited.0, Duration::ZERO);
    image.quotas = quotas(&[(entity(Some(Some("alice")), None), 1000.0)]);
    // 100 kB at 1 kB/s over the 10 s minimum window: 10 kB/s, throttled.
    let (throttle, tags) = manager.record(&image, Kind::Produce, "alice", "app", 100_000);
    assert!(throttle > Duration::from_secs(1), "{throttle:?}");
    assert_eq!(tags, ("alice".to_string(), String::new()));
    let other = manager.record(&image, Kind::Produce, "bob", "app", 100_000);
    assert_eq!(other.0, Duration::ZERO);
    let fetch = manager.record(&image, Kind::Fetch, "alice", "app", 100_000);
    assert_eq!(fetch.0, Duration::ZERO);
    // Taken back: the next small record is not throttled for it.
    manager.unrecord(Kind::Produce, &tags, 100_000);
    let small = manager.record(&image, Kind::Produce, "alice", "app", 10);
    assert_eq!(small.0, Duration::ZERO);
}
