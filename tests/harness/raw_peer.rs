//! A hand-driven P2P peer for tests: connects from a chosen loopback address (so that bans
//! of it do not touch the other nodes), speaks just enough protocol, and can send anything.

use bitcoin::consensus::{deserialize_partial, serialize};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A raw connection.
pub struct RawPeer {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The node's `version` message, once the handshake has seen it.
    pub their_version: Option<VersionMessage>,
}

impl RawPeer {
    /// Connects to `to` from `from` (any 127.0.0.0/8 address).
    pub fn connect(from: &str, to: SocketAddr) -> std::io::Result<RawPeer> {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        let src: SocketAddr = format!("{from}:0").parse().unwrap();
        sock.bind(&src.into())?;
        sock.connect_timeout(&to.into(), Duration::from_secs(5))?;
        Ok(RawPeer::from_stream(sock.into()))
    }

    /// A peer on an accepted connection (a node that dialled us).
    pub fn from_stream(stream: TcpStream) -> RawPeer {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        RawPeer {
            stream,
            buf: Vec::new(),
            their_version: None,
        }
    }

    /// Whether the other end has closed (or reset) the connection; reads nothing.
    pub fn closed(&mut self) -> bool {
        super::http::peer_closed(&self.stream)
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes as much of `bytes` as the other end takes before a write blocks for `wait`;
    /// returns how much went.
    pub fn push_until_blocked(&mut self, bytes: &[u8], wait: Duration) -> usize {
        self.stream.set_write_timeout(Some(wait)).unwrap();
        let mut sent = 0;
        while sent < bytes.len() {
            let end = (sent + 64 * 1024).min(bytes.len());
            match self.stream.write(&bytes[sent..end]) {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n,
            }
        }
        self.stream.set_write_timeout(None).unwrap();
        sent
    }

    /// Sends a framed message.
    pub fn send(&mut self, msg: NetworkMessage) -> std::io::Result<()> {
        let bytes = serialize(&RawNetworkMessage::new(Magic::REGTEST, msg));
        self.send_raw(&bytes)
    }

    /// The next message, within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<NetworkMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((m, used)) = deserialize_partial::<RawNetworkMessage>(&self.buf) {
                self.buf.drain(..used);
                return Some(m.payload().clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return None,
            }
        }
    }

    /// Completes the version handshake.
    pub fn handshake(&mut self) {
        self.handshake_with(&[]);
    }

    /// Completes the version handshake, sending `features` (e.g. `sendaddrv2`) before `verack`.
    pub fn handshake_with(&mut self, features: &[NetworkMessage]) {
        self.handshake_as(false, features)
    }

    /// The handshake of a peer that wants transactions (version relay flag set), announcing
    /// and fetching them by wtxid (BIP339).
    pub fn handshake_relaying(&mut self) {
        self.handshake_as(true, &[NetworkMessage::WtxidRelay])
    }

    fn handshake_as(&mut self, relay: bool, features: &[NetworkMessage]) {
        let addr = Address::new(&"127.0.0.1:0".parse().unwrap(), ServiceFlags::NONE);
        let mut v = VersionMessage::new(
            ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            1_700_000_000,
            addr.clone(),
            addr,
            0x5eed,
            "/raw-test-peer:0.1/".into(),
            0,
        );
        v.version = 70016;
        v.relay = relay;
        self.send(NetworkMessage::Version(v)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got_verack = false;
        while !got_verack {
            assert!(Instant::now() < deadline, "no verack from the node");
            match self.recv(Duration::from_millis(500)) {
                Some(NetworkMessage::Verack) => got_verack = true,
                Some(NetworkMessage::Version(v)) => self.their_version = Some(v),
                _ => {}
            }
        }
        for f in features {
            self.send(f.clone()).unwrap();
        }
        self.send(NetworkMessage::Verack).unwrap();
    }

    /// The next message `pick` accepts within `timeout`, skipping others (pings, announcements).
    pub fn recv_matching<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(NetworkMessage) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.recv(Duration::from_millis(200)).and_then(&mut pick) {
                return Some(v);
            }
        }
        None
    }

    /// Whether the node closes the connection within `timeout` (reading and dropping anything).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        while Instant::now() < deadline {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return true,
            }
        }
        false
    }
}
