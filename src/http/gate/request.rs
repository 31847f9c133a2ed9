//! Reading one client's requests, as a state machine over the bytes it sent and the time: the
//! head within `header_timeout`, at most `max_header_bytes`; a body of a declared length within
//! `max_body_bytes`, arriving at no less than the minimum rate; between keep-alive requests at
//! most `idle_timeout` of silence. A complete request is rewritten for the server behind the
//! gate (hop-by-hop headers dropped, the client's address added); anything else is an answer
//! and a close, or a close.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The header that carries the client's address to the server behind the gate; a client's own
/// is dropped.
pub const PEER_HEADER: &str = "X-Bllvm-Peer";

/// Most headers a request may have (more: 431).
const MAX_HEADERS: usize = 64;

/// The limits a request is read under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The request line and headers.
    pub max_header_bytes: usize,
    /// The declared body.
    pub max_body_bytes: u64,
    /// From a request's first byte (or the connection's start) to the end of its head.
    pub header_timeout: Duration,
    /// Silence allowed between keep-alive requests.
    pub idle_timeout: Duration,
    /// Slowest body accepted, after a grace of `header_timeout`.
    pub body_min_bytes_per_sec: u64,
}

/// A complete request, ready for the server behind the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The rewritten head and the body.
    pub bytes: Vec<u8>,
    /// A health or metrics path: served from the probe slots.
    pub probe: bool,
    /// `HEAD`: the answer has no body whatever its Content-Length says.
    pub head_only: bool,
    /// The client asked to close after the answer (`Connection: close`, or HTTP/1.0).
    pub close: bool,
    /// What the gate may answer itself (a [`super::Lane`]) without parsing the head again.
    pub fields: Fields,
}

/// The parts of a request a lane in the gate reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// `POST /`: JSON-RPC.
    pub rpc: bool,
    /// Where the body starts in `bytes`.
    pub body_at: usize,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `X-Request-Id` header.
    pub request_id: Option<String>,
}

/// What the connection does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Wait for more bytes until this time.
    Wait(Instant),
    /// Tell the client to go on with its body (`Expect: 100-continue`), then wait.
    Continue(Instant),
    /// Send this request on.
    Forward(Forward),
    /// Answer with this status and close: the request breaks a limit or is malformed.
    Reject(u16, &'static str),
    /// Close: a deadline passed; the close reason (`header_timeout`, `body_timeout`,
    /// `idle_timeout`).
    TimedOut(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Between requests (or before the first): the idle deadline runs from `since`; the first
    /// request on a connection gets the header deadline instead.
    Idle { since: Instant, first: bool },
    /// Part of a head has come.
    Head { since: Instant },
    /// The head is in; `total` bytes of head and body are needed.
    Body {
        head: Vec<u8>,
        head_len: usize,
        total: usize,
        deadline: Instant,
        continued: bool,
        probe: bool,
        head_only: bool,
        close: bool,
        fields: Fields,
    },
}

/// One connection's requests.
#[derive(Debug, Clone)]
pub struct Reader {
    limits: Limits,
    peer: SocketAddr,
    buf: Vec<u8>,
    phase: Phase,
}

impl Reader {
    /// A new connection from `peer`, accepted at `now`.
    pub fn new(limits: Limits, peer: SocketAddr, now: Instant) -> Reader {
        Reader {
            limits,
            peer,
            buf: Vec::new(),
            phase: Phase::Idle {
                since: now,
                first: true,
            },
        }
    }

    /// Bytes the client sent.
    pub fn push(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() {
            return;
        }
        // A connection's first head counts from the connection, so silence before it does
        // not buy time; later ones from their first byte.
        if let Phase::Idle { since, first } = self.phase {
            self.phase = Phase::Head {
                since: if first { since } else { now },
            };
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held; the gate stops reading a connection whose request waits while this is over
    /// `max_header_bytes` (pipelined requests are read one at a time).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The previous request was answered at `now`: the next one (maybe already buffered,
    /// pipelined) is read from here.
    pub fn answered(&mut self, now: Instant) {
        self.phase = if self.buf.is_empty() {
            Phase::Idle {
                since: now,
                first: false,
            }
        } else {
            Phase::Head { since: now }
        };
    }

    /// What to do now.
    pub fn step(&mut self, now: Instant) -> Step {
        let l = self.limits;
        match &mut self.phase {
            Phase::Idle { since, first } => {
                let (limit, what) = if *first {
                    (l.header_timeout, "header_timeout")
                } else {
                    (l.idle_timeout, "idle_timeout")
                };
                let deadline = *since + limit;
                if now >= deadline {
                    Step::TimedOut(what)
                } else {
                    Step::Wait(deadline)
                }
            }
            Phase::Head { since } => {
                let deadline = *since + l.header_timeout;
                match self.parse_head(now) {
                    None if now >= deadline => Step::TimedOut("header_timeout"),
                    None => Step::Wait(deadline),
                    Some(Err(reject)) => reject,
                    Some(Ok(())) => self.step(now),
                }
            }
            Phase::Body {
                total,
                deadline,
                continued,
                ..
            } => {
                if self.buf.len() >= *total {
                    return self.finish(now);
                }
                if now >= *deadline {
                    return Step::TimedOut("body_timeout");
                }
                if !*continued {
                    *continued = true;
                    return Step::Continue(*deadline);
                }
                Step::Wait(*deadline)
            }
        }
    }

    /// Parses the head once it is complete: `None` while partial; moves to `Body`.
    fn parse_head(&mut self, now: Instant) -> Option<Result<(), Step>> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(&self.buf) {
            Ok(httparse::Status::Partial) if self.buf.len() > self.limits.max_header_bytes => {
                return Some(Err(Step::Reject(431, "request header too large")));
            }
            Ok(httparse::Status::Partial) => return None,
            Ok(httparse::Status::Complete(n)) if n > self.limits.max_header_bytes => {
                return Some(Err(Step::Reject(431, "request header too large")));
            }
            Ok(httparse::Status::Complete(n)) => n,
            Err(httparse::Error::TooManyHeaders) => {
                return Some(Err(Step::Reject(431, "too many request headers")));
            }
            Err(_) => return Some(Err(Step::Reject(400, "malformed request"))),
        };
        let method = req.method.unwrap_or("GET");
        let path = req.path.unwrap_or("/");
        let http10 = req.version == Some(0);
        let mut length: Option<u64> = None;
        let mut close = http10;
        let mut expect = false;
        let mut fields = Fields {
            rpc: method == "POST" && path == "/",
            ..Fields::default()
        };
        let mut out = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
        for h in req.headers.iter() {
            let name = h.name;
            let value = String::from_utf8_lossy(h.value);
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                match value.parse::<u64>() {
                    Ok(n) if length.is_none_or(|l| l == n) => length = Some(n),
                    _ => return Some(Err(Step::Reject(400, "bad Content-Length"))),
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Some(Err(Step::Reject(
                    411,
                    "a body needs Content-Length (Transfer-Encoding is not accepted)",
                )));
            } else if name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    close = true;
                } else if v.contains("keep-alive") {
                    close = false;
                }
            } else if name.eq_ignore_ascii_case("expect") {
                if !value.eq_ignore_ascii_case("100-continue") {
                    return Some(Err(Step::Reject(417, "unsupported Expect")));
                }
                expect = true;
            } else if ![
                "keep-alive",
                "proxy-connection",
                "te",
                "upgrade",
                PEER_HEADER,
            ]
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop))
            {
                if name.eq_ignore_ascii_case("authorization") {
                    fields.authorization = Some(value.to_owned());
                } else if name.eq_ignore_ascii_case("x-request-id") {
                    fields.request_id = Some(value.to_owned());
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value);
                out.extend_from_slice(b"\r\n");
            }
        }
        let length = length.unwrap_or(0);
        if length > self.limits.max_body_bytes {
            return Some(Err(Step::Reject(413, "request body too large")));
        }
        out.extend_from_slice(
            format!(
                "Content-Length: {length}\r\n{PEER_HEADER}: {}\r\n\r\n",
                self.peer
            )
            .as_bytes(),
        );
        let p = path.split('?').next().unwrap_or("");
        let probe = p == "/metrics" || p == "/health" || p.starts_with("/health/");
        let head_only = method == "HEAD";
        // The body gets the head's grace again, then must come at the minimum rate.
        let rate = self.limits.body_min_bytes_per_sec.max(1);
        let deadline = now + self.limits.header_timeout + Duration::from_secs(length / rate);
        self.phase = Phase::Body {
            head: out,
            head_len,
            total: head_len + length as usize,
            deadline,
            // Only a client that asked, and whose body has not come with the head, is told.
            continued: !expect || self.buf.len() > head_len,
            probe,
            head_only,
            close,
            fields,
        };
        Some(Ok(()))
    }

    /// The whole request is in: takes it out of the buffer.
    fn finish(&mut self, now: Instant) -> Step {
        let Phase::Body {
            head,
            head_len,
            total,
            probe,
            head_only,
            close,
            mut fields,
            ..
        } = std::mem::replace(
            &mut self.phase,
            Phase::Idle {
                since: now,
                first: false,
            },
        )
        else {
            return Step::Reject(500, "internal");
        };
        let mut bytes = head;
        fields.body_at = bytes.len();
        bytes.extend_from_slice(&self.buf[head_len..total]);
        self.buf.drain(..total);
        if self.buf.capacity() > 64 * 1024 && self.buf.len() < 1024 {
            self.buf.shrink_to(1024);
        }
        Step::Forward(Forward {
            bytes,
            probe,
            head_only,
            close,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_header_bytes: 8192,
            max_body_bytes: 1000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_min_bytes_per_sec: 100,
        }
    }

    fn reader(t0: Instant) -> Reader {
        Reader::new(limits(), "127.0.0.1:5555".parse().unwrap(), t0)
    }

    fn forward(step: Step) -> Forward {
        match step {
            Step::Forward(f) => f,
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn a_request_is_rewritten_and_pipelined_ones_follow() {
        let t0 = Instant::now();
        let mut r = reader(t0);
        r.push(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eA==\r\nX-Request-Id: r1\r\nContent-Length: 4\r\nConnection: keep-alive\r\nX-Bllvm-Peer: 1.2.3.4:5\r\n\r\nabcdGET /health HTTP/1.0\r\n\r\n", t0);
        let f = forward(r.step(t0));
        assert_eq!(
            String::from_utf8(f.bytes.clone()).unwrap(),
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic eA==\r\nX-Request-Id: r1\r\nContent-Length: 4\r\nX-Bllvm-Peer: 127.0.0.1:5555\r\n\r\nabcd"
        );
        assert!(!f.probe && !f.close && !f.head_only);
        assert!(f.fields.rpc && f.bytes[f.fields.body_at..] == *b"abcd");
        assert_eq!(f.fields.authorization.as_deref(), Some("Basic eA=="));
        assert_eq!(f.fields.request_id.as_deref(), Some("r1"));
        r.answered(t0);
        let f = forward(r.step(t0));
        assert!(f.probe && f.close, "HTTP/1.0 closes: {f:?}");
        assert!(!f.fields.rpc);
        r.answered(t0);
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.step(t0), Step::Wait(t0 + Duration::from_secs(30)), "idle");
        assert_eq!(
            r.step(t0 + Duration::from_secs(30)),
            Step::TimedOut("idle_timeout")
        );
    }

    /// Slowloris: a head trickling in is cut at the header deadline however steady the drip.
    #[test]
    fn a_head_must_be_complete_within_the_header_timeout() {
        let t0 = Instant::now();
        let mut r = reader(t0);
        assert_eq!(
            r.step(t0 + Duration::from_secs(9)),
            Step::Wait(t0 + Duration::from_secs(10))
        );
        r.push(b"GET / HTTP/1.1\r\nX-Slow: ", t0 + Duration::from_secs(1));
        for s in 2..10 {
            r.push(b"a", t0 + Duration::from_secs(s));
            assert!(matches!(r.step(t0 + Duration::from_secs(s)), Step::Wait(_)));
        }
        assert_eq!(
            r.step(t0 + Duration::from_secs(10)),
            Step::TimedOut("header_timeout")
        );
        // An idle first connection gets the header deadline too.
        let mut r = reader(t0);
        assert_eq!(
            r.step(t0 + Duration::from_secs(10)),
            Step::TimedOut("header_timeout")
        );
    }

    #[test]
    fn limits_answer_with_their_status() {
        let t0 = Instant::now();
        let mut r = reader(t0);
        r.push(&vec![b'a'; 9000], t0);
        assert_eq!(r.step(t0), Step::Reject(431, "request header too large"));
        let mut r = reader(t0);
        r.push(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", t0);
        assert_eq!(r.step(t0), Step::Reject(413, "request body too large"));
        let mut r = reader(t0);
        r.push(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", t0);
        assert!(matches!(r.step(t0), Step::Reject(411, _)));
        let mut r = reader(t0);
        r.push(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            t0,
        );
        assert_eq!(r.step(t0), Step::Reject(400, "bad Content-Length"));
        let mut r = reader(t0);
        r.push(b"\x16\x03\x01 not http\r\n\r\n", t0);
        assert_eq!(r.step(t0), Step::Reject(400, "malformed request"));
        let mut r = reader(t0);
        let many: String = (0..70).map(|i| format!("H{i}: v\r\n")).collect();
        r.push(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), t0);
        assert_eq!(r.step(t0), Step::Reject(431, "too many request headers"));
    }

    /// A body gets the head's grace, then must keep the minimum rate; `Expect: 100-continue`
    /// is answered once.
    #[test]
    fn a_body_must_come_at_the_minimum_rate() {
        let t0 = Instant::now();
        let mut r = reader(t0);
        r.push(
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 500\r\n\r\n",
            t0,
        );
        let deadline = t0 + Duration::from_secs(10 + 5);
        assert_eq!(r.step(t0), Step::Continue(deadline));
        assert_eq!(r.step(t0), Step::Wait(deadline));
        r.push(&[b'x'; 499], t0 + Duration::from_secs(14));
        assert_eq!(r.step(deadline), Step::TimedOut("body_timeout"));
        let mut r = reader(t0);
        r.push(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n", t0);
        assert!(matches!(r.step(t0), Step::Wait(_)), "no 100 unless asked");
        r.push(b"abc", t0);
        assert!(forward(r.step(t0)).bytes.ends_with(b"\r\n\r\nabc"));
    }
}
