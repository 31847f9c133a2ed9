//! Where one answer of the server behind the gate ends, so its connection can carry the next
//! request: the head, then `Content-Length` bytes of body (none for `HEAD`). Our answers always
//! carry a length (`Reply` never asks tiny_http for chunked encoding). When the client asked to
//! close, `Connection: close` is added to the head it gets.

/// Longest answer head accepted from the server.
const MAX_HEAD: usize = 64 * 1024;

/// The server's answer cannot be framed: its connection is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unframeable answer from the HTTP server: {0}")]
pub struct FrameError(pub &'static str);

/// One answer being passed on.
#[derive(Debug)]
pub struct Framer {
    head_only: bool,
    close: bool,
    head: Vec<u8>,
    /// Body bytes still to come, once the head is in.
    left: Option<u64>,
}

impl Framer {
    /// An answer to a `HEAD` request (`head_only`), for a client that asked to close (`close`).
    pub fn new(head_only: bool, close: bool) -> Framer {
        Framer {
            head_only,
            close,
            head: Vec::new(),
            left: None,
        }
    }

    /// Takes `data` from the server and appends what the client gets to `out`; true once the
    /// answer is complete. Bytes past its end are an error (one request is in flight at a time).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<bool, FrameError> {
        let body = match self.left {
            Some(_) => data,
            None => {
                self.head.extend_from_slice(data);
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                let n = match resp.parse(&self.head) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) if self.head.len() <= MAX_HEAD => {
                        return Ok(false)
                    }
                    Ok(httparse::Status::Partial) => return Err(FrameError("head too long")),
                    Err(_) => return Err(FrameError("malformed head")),
                };
                let code = resp.code.unwrap_or(200);
                let bodiless = self.head_only || code == 204 || code == 304;
                let length = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| {
                        std::str::from_utf8(h.value)
                            .ok()?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    });
                self.left = Some(match length {
                    _ if bodiless => 0,
                    Some(n) => n,
                    None => return Err(FrameError("no Content-Length")),
                });
                // The status line ends at the first CRLF; our header goes right after it.
                let line = self.head.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                out.extend_from_slice(&self.head[..line]);
                if self.close {
                    out.extend_from_slice(b"Connection: close\r\n");
                }
                out.extend_from_slice(&self.head[line..n]);
                let rest = std::mem::take(&mut self.head).split_off(n);
                return self.pass(&rest, out);
            }
        };
        self.pass(body, out)
    }

    fn pass(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<bool, FrameError> {
        let left = self.left.unwrap_or(0);
        if data.len() as u64 > left {
            return Err(FrameError("bytes past the end of the answer"));
        }
        out.extend_from_slice(data);
        let left = left - data.len() as u64;
        self.left = Some(left);
        Ok(left == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: tiny\r\n\r\nhello";

    #[test]
    fn an_answer_ends_after_its_length_in_any_split() {
        for split in 0..ANSWER.len() {
            let mut f = Framer::new(false, false);
            let mut out = Vec::new();
            assert!(!f.feed(&ANSWER[..split], &mut out).unwrap() || split == ANSWER.len());
            assert!(f.feed(&ANSWER[split..], &mut out).unwrap(), "split {split}");
            assert_eq!(out, ANSWER);
        }
    }

    #[test]
    fn close_is_announced_and_head_answers_have_no_body() {
        let mut f = Framer::new(true, true);
        let mut out = Vec::new();
        assert!(f.feed(&ANSWER[..ANSWER.len() - 5], &mut out).unwrap());
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\nServer: tiny\r\n\r\n"
        );
        let mut f = Framer::new(false, false);
        assert_eq!(
            f.feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &mut out
            ),
            Err(FrameError("no Content-Length"))
        );
        let mut f = Framer::new(false, false);
        assert_eq!(
            f.feed(b"HTTP/1.1 204 No Content\r\n\r\n", &mut out),
            Ok(true)
        );
        let mut f = Framer::new(false, false);
        let mut long = ANSWER.to_vec();
        long.push(b'!');
        assert!(f.feed(&long, &mut Vec::new()).is_err());
    }
}
