//! One peer's outgoing bytes: bounded, with priorities. Blocks, headers and pongs go before
//! transaction and inventory traffic, which goes before address gossip; when the queue is full
//! the low-priority messages are dropped, and a peer that cannot take even high-priority data for
//! too long is cut (the reactor asks `blocked_for`).

use bitcoin::p2p::message::NetworkMessage;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes queued per peer before messages are dropped and the peer's requests are paused.
pub const DEFAULT_LIMIT: usize = 8 * 1024 * 1024;

/// How urgent a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Handshake, blocks, headers, pong, notfound: what sync and liveness need.
    High = 0,
    /// Transactions, inventory, requests.
    Normal = 1,
    /// Address gossip.
    Low = 2,
}

/// The priority of a message by its command.
pub fn priority(msg: &NetworkMessage) -> Priority {
    use NetworkMessage::*;
    match msg {
        Addr(_) | AddrV2(_) | GetAddr => Priority::Low,
        Tx(_) | Inv(_) | GetData(_) | GetHeaders(_) | GetBlocks(_) | FeeFilter(_) => {
            Priority::Normal
        }
        _ => Priority::High,
    }
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Dropped: the queue was over its limit for this priority.
    Dropped,
}

/// The queue.
#[derive(Debug)]
pub struct SendQueue {
    limit: usize,
    queues: [VecDeque<Vec<u8>>; 3],
    /// The message being written and how much of it is out: finished before any other.
    current: Option<(Vec<u8>, usize)>,
    bytes: usize,
    over_since: Option<Instant>,
}

impl SendQueue {
    /// An empty queue holding at most about `limit` bytes.
    pub fn new(limit: usize) -> SendQueue {
        SendQueue {
            limit,
            queues: Default::default(),
            current: None,
            bytes: 0,
            over_since: None,
        }
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Over the limit: the peer's own requests should wait (Core's fPauseSend).
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    /// Queues an encoded message. Address gossip is dropped past half the limit, other normal
    /// traffic past the limit; high-priority data is always queued and starts the overflow clock.
    pub fn push(&mut self, bytes: Vec<u8>, prio: Priority, now: Instant) -> Pushed {
        let after = self.bytes + bytes.len();
        let cap = match prio {
            Priority::Low => self.limit / 2,
            Priority::Normal => self.limit,
            Priority::High => usize::MAX,
        };
        if after > cap {
            return Pushed::Dropped;
        }
        self.bytes = after;
        if self.bytes > self.limit && self.over_since.is_none() {
            self.over_since = Some(now);
        }
        self.queues[prio as usize].push_back(bytes);
        Pushed::Queued
    }

    /// The bytes to write next.
    pub fn front(&mut self) -> Option<&[u8]> {
        if self.current.is_none() {
            let next = self.queues.iter_mut().find_map(|q| q.pop_front())?;
            self.current = Some((next, 0));
        }
        self.current.as_ref().map(|(b, at)| &b[*at..])
    }

    /// `n` bytes of the front were written.
    pub fn advance(&mut self, n: usize) {
        if let Some((b, at)) = &mut self.current {
            *at += n;
            self.bytes -= n;
            if *at >= b.len() {
                self.current = None;
            }
        }
        if self.bytes <= self.limit {
            self.over_since = None;
        }
    }

    /// How long the queue has been over its limit.
    pub fn blocked_for(&self, now: Instant) -> Duration {
        self.over_since
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_priority_goes_first_but_a_started_message_is_finished() {
        let t = Instant::now();
        let mut q = SendQueue::new(100);
        q.push(vec![3; 4], Priority::Low, t);
        assert_eq!(q.front().unwrap(), &[3, 3, 3, 3]);
        q.advance(2);
        q.push(vec![2; 4], Priority::Normal, t);
        q.push(vec![1; 4], Priority::High, t);
        assert_eq!(
            q.front().unwrap(),
            &[3, 3],
            "the partial message finishes first"
        );
        q.advance(2);
        assert_eq!(q.front().unwrap(), &[1; 4]);
        q.advance(4);
        assert_eq!(q.front().unwrap(), &[2; 4]);
        q.advance(4);
        assert!(q.front().is_none() && q.is_empty());
    }

    #[test]
    fn full_queue_drops_gossip_then_normal_and_clocks_high_overflow() {
        let t = Instant::now();
        let mut q = SendQueue::new(100);
        assert_eq!(q.push(vec![0; 40], Priority::Normal, t), Pushed::Queued);
        assert_eq!(q.push(vec![0; 20], Priority::Low, t), Pushed::Dropped);
        assert_eq!(q.push(vec![0; 60], Priority::Normal, t), Pushed::Queued);
        assert!(q.is_full());
        assert_eq!(q.push(vec![0; 1], Priority::Normal, t), Pushed::Dropped);
        assert_eq!(q.blocked_for(t + Duration::from_secs(5)), Duration::ZERO);
        assert_eq!(q.push(vec![0; 50], Priority::High, t), Pushed::Queued);
        assert_eq!(
            q.blocked_for(t + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        // Draining below the limit stops the clock.
        q.front();
        q.advance(40);
        q.front();
        q.advance(20);
        assert_eq!(q.bytes(), 90);
        assert_eq!(q.blocked_for(t + Duration::from_secs(9)), Duration::ZERO);
    }
}
