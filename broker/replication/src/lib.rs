//! The leader side of partition replication, as pure decisions: no I/O, no
//! clocks (time is passed in), no async.
//!
//! # Layout
//! - [`LeaderState`]: a partition leader's view of its followers. Events in
//!   (a follower fetched, the leader appended, the controller committed a new
//!   ISR); decisions out (the high watermark, an ISR change to propose).
//!
//! ```text
//!   follower fetch(offset) ──▶ progress[follower] ──▶ high watermark =
//!                                   │                  min LEO over ISR ∪ pending adds
//!                                   ├──▶ caught up, not in ISR ─▶ propose ISR + f
//!   tick(now) ──────────────────────┴──▶ lagging > max lag   ─▶ propose ISR − f
//! ```
//!
//! The ISR only changes once the controller commits it; until then the high
//! watermark counts the larger of the two sets (KIP-497's "maximal ISR"), so a
//! shrink never advances it early and an expansion never waits on it.

use std::collections::BTreeMap;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset), -1 if unknown.
    pub log_end_offset: i64,
    /// When the follower was last caught up to the leader's log end.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch.
    leader_end_at_last_fetch: i64,
    /// The follower's log start offset as its last fetch said, -1 if unknown.
    pub log_start_offset: i64,
}

/// A partition leader's replication state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    node_id: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    pending_isr: Option<Vec<i32>>,
    high_watermark: i64,
    followers: BTreeMap<i32, FollowerProgress>,
}

impl LeaderState {
    /// A leader that just took over at `now_ms`, with its checkpointed high
    /// watermark. Followers in the ISR count as caught up now, so they get a
    /// full `replica.lag.time.max.ms` to show up.
    pub fn new(
        node_id: i32,
        replicas: &[i32],
        isr: &[i32],
        high_watermark: i64,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != node_id)
            .map(|r| {
                (
                    *r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_caught_up_ms: if isr.contains(r) { now_ms } else { 0 },
                        leader_end_at_last_fetch: -1,
                        log_start_offset: -1,
                    },
                )
            })
            .collect();
        LeaderState {
            node_id,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            pending_isr: None,
            high_watermark,
            followers,
        }
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The assigned replicas.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// A proposed ISR the controller has not answered yet.
    pub fn pending_isr(&self) -> Option<&[i32]> {
        self.pending_isr.as_deref()
    }

    /// A follower's progress.
    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    /// The replicas the high watermark waits for: the committed ISR plus any
    /// replica a pending change adds.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut set = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for r in pending {
                if !set.contains(r) {
                    set.push(*r);
                }
            }
        }
        set
    }

    /// A follower fetched from `fetch_offset` while the leader's log ended at
    /// `leader_end`. Returns an ISR to propose when the follower has caught up
    /// and is not in the ISR yet. Call [`Self::advance_high_watermark`] after.
    pub fn on_follower_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_end: i64,
        now_ms: i64,
    ) -> Option<Vec<i32>> {
        let progress = self.followers.get_mut(&follower)?;
        // Caught up: at the log end now, or at least as far as the log end
        // was at its previous fetch (Kafka's lastCaughtUpTime rule).
        if fetch_offset >= leader_end
            || (progress.leader_end_at_last_fetch >= 0
                && fetch_offset >= progress.leader_end_at_last_fetch)
        {
            progress.last_caught_up_ms = now_ms;
        }
        progress.log_end_offset = fetch_offset;
        progress.leader_end_at_last_fetch = leader_end;
        if self.pending_isr.is_some() || self.isr.contains(&follower) {
            return None;
        }
        // Joining needs the follower to hold everything acknowledged so far.
        if fetch_offset >= self.high_watermark && self.replicas.contains(&follower) {
            let mut isr = self.isr.clone();
            isr.push(follower);
            self.pending_isr = Some(isr.clone());
            return Some(isr);
        }
        None
    }

    /// Recomputes the high watermark given the leader's log end offset; it
    /// only moves forward. Returns whether it moved.
    pub fn advance_high_watermark(&mut self, leader_end: i64) -> bool {
        let mut hw = leader_end;
        for r in self.maximal_isr() {
            if r == self.node_id {
                continue;
            }
            match self.followers.get(&r) {
                Some(p) if p.log_end_offset >= 0 => hw = hw.min(p.log_end_offset),
                // An ISR member we have not heard from holds the watermark.
                _ => return false,
            }
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }

    /// Followers in the ISR that have not caught up within `max_lag_ms`:
    /// the ISR to propose without them, if any (never dropping the leader).
    pub fn shrink(&mut self, now_ms: i64, max_lag_ms: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.node_id)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|p| now_ms - p.last_caught_up_ms > max_lag_ms)
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        self.pending_isr = Some(isr.clone());
        Some(isr)
    }

    /// The controller committed (or the image shows) this replica set and ISR.
    pub fn on_committed(&mut self, replicas: &[i32], isr: &[i32], now_ms: i64) {
        for r in replicas {
            if *r != self.node_id && !self.followers.contains_key(r) {
                self.followers.insert(
                    *r,
                    FollowerProgress {
                        log_end_offset: -1,
                        last_caught_up_ms: now_ms,
                        leader_end_at_last_fetch: -1,
                        log_start_offset: -1,
                    },
                );
            }
        }
        self.followers.retain(|r, _| replicas.contains(r));
        self.replicas = replicas.to_vec();
        self.isr = isr.to_vec();
        self.pending_isr = None;
    }

    /// A follower's fetch said where its log starts.
    pub fn on_follower_log_start(&mut self, follower: i32, log_start_offset: i64) {
        if let Some(progress) = self.followers.get_mut(&follower) {
            progress.log_start_offset = log_start_offset;
        }
    }

    /// The low watermark (DeleteRecords): the lowest log start offset over
    /// this leader (`leader_start`) and the followers `counts` says count
    /// (Kafka counts the live ones). A follower that has not said yet counts
    /// as -1 (unknown): the watermark cannot pass it.
    pub fn low_watermark(&self, leader_start: i64, counts: impl Fn(i32) -> bool) -> i64 {
        self.followers
            .iter()
            .filter(|(id, _)| counts(**id))
            .map(|(_, p)| p.log_start_offset)
            .fold(leader_start, i64::min)
    }

    /// The proposal failed (stale epoch, controller unreachable): allow another.
    pub fn proposal_failed(&mut self) {
        self.pending_isr = None;
    }
}

#[cfg(test)]
mod tests;
