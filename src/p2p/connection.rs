//! One socket's bytes: non-blocking reads into the frame decoder, writes from the send queue,
//! and the counters `getpeerinfo` reports. No protocol decisions here.

use super::codec::{self, DecodeError, FrameDecoder};
use super::peer::Direction;
use super::send_queue::{priority, Pushed, SendQueue};
use crate::messages::PeerId;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::Magic;
use mio::net::TcpStream;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// Bytes read from one socket per loop turn, so one busy peer cannot starve the others.
const READ_BUDGET: usize = 256 * 1024;

/// Commands counted by name in metrics and `getpeerinfo`; anything else is "other".
pub const KNOWN_COMMANDS: &[&str] = &[
    "version",
    "verack",
    "ping",
    "pong",
    "addr",
    "addrv2",
    "sendaddrv2",
    "getaddr",
    "inv",
    "getdata",
    "notfound",
    "getheaders",
    "headers",
    "getblocks",
    "block",
    "tx",
    "sendheaders",
    "feefilter",
    "sendcmpct",
    "wtxidrelay",
    "reject",
];

/// A bounded label for a command name.
pub fn command_label(cmd: &str) -> &'static str {
    KNOWN_COMMANDS
        .iter()
        .find(|c| **c == cmd)
        .copied()
        .unwrap_or("other")
}

/// Traffic counters.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_recv: u64,
    /// Bytes sent per command.
    pub sent_per_msg: BTreeMap<&'static str, u64>,
    /// Bytes received per command.
    pub recv_per_msg: BTreeMap<&'static str, u64>,
    /// Unix seconds of the last send.
    pub last_send: i64,
    /// Unix seconds of the last receive.
    pub last_recv: i64,
}

/// What reading produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The socket has nothing more for now.
    Drained,
    /// The read budget was used up; more may be waiting.
    MoreWaiting,
    /// The peer closed the connection.
    Closed,
}

/// One connection.
pub struct Connection {
    /// Its id.
    pub id: PeerId,
    /// The peer's address.
    pub addr: SocketAddr,
    /// How it was made.
    pub direction: Direction,
    /// The socket.
    pub stream: TcpStream,
    /// Still connecting (outbound), since when.
    pub connecting: Option<Instant>,
    /// Incoming frames.
    pub decoder: FrameDecoder,
    /// Outgoing bytes.
    pub queue: SendQueue,
    /// Counters.
    pub traffic: Traffic,
    /// Unix seconds when connected.
    pub since: i64,
    /// The socket may hold unread bytes (edge-triggered readiness).
    pub readable: bool,
    /// Set when the connection must close, with the reason.
    pub closing: Option<&'static str>,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// A "near its limit" warning was logged.
    pub warned_full: bool,
    /// When the last byte arrived (or reading last paused for the frame budget): a partial
    /// frame that stops growing ends the connection.
    pub last_byte: Instant,
}

impl Connection {
    /// A new connection record.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: PeerId,
        addr: SocketAddr,
        direction: Direction,
        stream: TcpStream,
        magic: Magic,
        queue_limit: usize,
        now: Instant,
        now_unix: i64,
    ) -> Connection {
        Connection {
            id,
            addr,
            direction,
            stream,
            connecting: (direction != Direction::Inbound).then_some(now),
            decoder: FrameDecoder::new(magic),
            queue: SendQueue::new(queue_limit),
            traffic: Traffic::default(),
            since: now_unix,
            readable: direction == Direction::Inbound,
            closing: None,
            dropped: 0,
            warned_full: false,
            last_byte: now,
        }
    }

    /// Whether the peer connected to us.
    pub fn inbound(&self) -> bool {
        self.direction == Direction::Inbound
    }

    /// Encodes and queues `msg`; returns the command label and whether it was queued.
    pub fn send(&mut self, magic: Magic, msg: NetworkMessage, now: Instant) -> Pushed {
        let label = command_label(msg.cmd());
        let prio = priority(&msg);
        let bytes = codec::encode(magic, msg);
        let len = bytes.len() as u64;
        let pushed = self.queue.push(bytes, prio, now);
        if pushed == Pushed::Queued {
            *self.traffic.sent_per_msg.entry(label).or_default() += len;
        } else {
            self.dropped += 1;
        }
        pushed
    }

    /// Reads what the socket has into the decoder, up to the budget, the decoder's room and
    /// `cap` bytes.
    pub fn read(
        &mut self,
        cap: usize,
        now: Instant,
        now_unix: i64,
    ) -> std::io::Result<ReadOutcome> {
        let mut buf = [0u8; 16 * 1024];
        let mut taken = 0;
        while taken < READ_BUDGET.min(cap) {
            let room = self.decoder.space().min(buf.len()).min(cap - taken);
            if room == 0 {
                return Ok(ReadOutcome::MoreWaiting);
            }
            match self.stream.read(&mut buf[..room]) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(n) => {
                    self.decoder.push(&buf[..n]);
                    taken += n;
                    self.traffic.bytes_recv += n as u64;
                    self.traffic.last_recv = now_unix;
                    self.last_byte = now;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(ReadOutcome::MoreWaiting)
    }

    /// The next whole message from the decoder, counted.
    pub fn next_message(&mut self) -> Result<Option<NetworkMessage>, DecodeError> {
        let before = self.decoder.buffered();
        let msg = self.decoder.next_message()?;
        if let Some(m) = &msg {
            let used = (before - self.decoder.buffered()) as u64;
            *self
                .traffic
                .recv_per_msg
                .entry(command_label(m.cmd()))
                .or_default() += used;
        }
        Ok(msg)
    }

    /// Writes queued bytes until the socket would block; returns the bytes written.
    pub fn flush(&mut self, now_unix: i64) -> std::io::Result<usize> {
        let mut written = 0;
        while let Some(front) = self.queue.front() {
            match self.stream.write(front) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.queue.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if written > 0 {
            self.traffic.bytes_sent += written as u64;
            self.traffic.last_send = now_unix;
        }
        Ok(written)
    }
}
