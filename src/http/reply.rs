//! An HTTP answer as plain data, turned into a tiny_http response at the edge.

use serde_json::Value;
use std::io::Cursor;
use tiny_http::{Header, Response};

/// Status, content type, extra headers and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Further headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body (bytes: REST answers binary data).
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            // Not `to_string`: Display re-checks every written chunk as UTF-8.
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    /// A JSON body already serialized.
    pub fn json_text(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message }))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The tiny_http response.
    pub fn into_response(self) -> Response<Cursor<Vec<u8>>> {
        // Always a Content-Length, never chunked: the gate frames answers by their length.
        let mut resp = Response::from_data(self.body)
            .with_status_code(self.status)
            .with_chunked_threshold(usize::MAX);
        let headers =
            std::iter::once(("Content-Type", self.content_type.to_string())).chain(self.headers);
        for (name, value) in headers {
            // Header values are ours (no client input), so they always parse.
            if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                resp.add_header(h);
            }
        }
        resp
    }
}
