use super::*;

#[test]
fn the_high_watermark_waits_for_every_in_sync_replica() {
    let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0);
    assert!(
        !s.advance_high_watermark(10),
        "followers not heard from yet"
    );
    s.on_follower_fetch(2, 10, 10, 5);
    assert!(!s.advance_high_watermark(10));
    s.on_follower_fetch(3, 4, 10, 5);
    assert!(s.advance_high_watermark(10));
    assert_eq!(s.high_watermark(), 4);
    s.on_follower_fetch(3, 10, 10, 6);
    assert!(s.advance_high_watermark(10));
    assert_eq!(s.high_watermark(), 10);
}

#[test]
fn a_single_replica_leader_commits_at_its_log_end() {
    let mut s = LeaderState::new(1, &[1], &[1], 0, 0);
    assert!(s.advance_high_watermark(7));
    assert_eq!(s.high_watermark(), 7);
}

#[test]
fn the_high_watermark_never_moves_back() {
    let mut s = LeaderState::new(1, &[1, 2], &[1, 2], 20, 0);
    s.on_follower_fetch(2, 5, 30, 1);
    assert!(!s.advance_high_watermark(30));
    assert_eq!(s.high_watermark(), 20);
}

#[test]
fn a_lagging_follower_is_proposed_out_and_counts_until_committed() {
    let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0);
    s.on_follower_fetch(2, 10, 10, 100);
    s.on_follower_fetch(3, 2, 10, 100);
    assert_eq!(s.shrink(200, 1000), None, "within the allowed lag");
    s.on_follower_fetch(2, 10, 10, 1500);
    assert_eq!(s.shrink(1500, 1000), Some(vec![1, 2]));
    assert_eq!(s.shrink(1600, 1000), None, "one proposal at a time");
    // Until the controller commits, follower 3 still holds the watermark.
    s.advance_high_watermark(10);
    assert_eq!(s.high_watermark(), 2);
    s.on_committed(&[1, 2, 3], &[1, 2], 1600);
    assert!(s.advance_high_watermark(10));
    assert_eq!(s.high_watermark(), 10);
}

#[test]
fn a_caught_up_follower_is_proposed_back_in() {
    let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2], 0, 0);
    s.on_follower_fetch(2, 10, 10, 1);
    s.advance_high_watermark(10);
    assert_eq!(
        s.on_follower_fetch(3, 5, 10, 2),
        None,
        "behind the watermark"
    );
    assert_eq!(s.on_follower_fetch(3, 10, 10, 3), Some(vec![1, 2, 3]));
    assert_eq!(s.pending_isr(), Some(&[1, 2, 3][..]));
    s.on_committed(&[1, 2, 3], &[1, 2, 3], 4);
    assert_eq!(s.isr(), &[1, 2, 3]);
    assert_eq!(s.pending_isr(), None);
}

#[test]
fn a_failed_proposal_can_be_retried() {
    let mut s = LeaderState::new(1, &[1, 2], &[1], 0, 0);
    assert!(s.on_follower_fetch(2, 0, 0, 1).is_some());
    assert!(s.on_follower_fetch(2, 0, 0, 2).is_none());
    s.proposal_failed();
    assert!(s.on_follower_fetch(2, 0, 0, 3).is_some());
}

#[test]
fn the_low_watermark_is_the_lowest_log_start_of_the_counted_replicas() {
    let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0);
    assert_eq!(
        s.low_watermark(50, |_| true),
        -1,
        "followers not heard from"
    );
    s.on_follower_log_start(2, 50);
    s.on_follower_log_start(3, 20);
    assert_eq!(s.low_watermark(50, |_| true), 20);
    assert_eq!(
        s.low_watermark(50, |id| id != 3),
        50,
        "3 is down: not counted"
    );
    s.on_follower_log_start(3, 60);
    assert_eq!(
        s.low_watermark(50, |_| true),
        50,
        "the leader's own start counts"
    );
    s.on_follower_log_start(9, 0);
    assert_eq!(s.low_watermark(50, |_| true), 50, "not a replica");
}
