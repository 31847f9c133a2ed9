//! JSON-RPC: request handling as functions of a request body. Methods arrive with the RPC issue.

use crate::http::reply::Reply;
use serde_json::{json, Value};

/// Largest request body accepted, as Bitcoin Core's limit.
pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

/// Answers one JSON-RPC request body with Core's status codes and error objects.
pub fn handle(body: &[u8]) -> Reply {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return error_reply(500, None, -32700, "Parse error", false),
    };
    let v2 = request.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let id = request.get("id").cloned();
    let method = request.get("method").and_then(Value::as_str);
    match method {
        None => error_reply(400, id, -32600, "Missing method", v2),
        Some(_) => error_reply(
            if v2 { 200 } else { 404 },
            id,
            -32601,
            "Method not found",
            v2,
        ),
    }
}

/// Core's error envelope: 1.0 carries `result: null`; 2.0 carries `jsonrpc` and answers 200.
pub fn error_reply(status: u16, id: Option<Value>, code: i64, message: &str, v2: bool) -> Reply {
    let error = json!({ "code": code, "message": message });
    let id = id.unwrap_or(Value::Null);
    if v2 {
        Reply::json(200, &json!({ "jsonrpc": "2.0", "error": error, "id": id }))
    } else {
        Reply::json(status, &json!({ "result": null, "error": error, "id": id }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_json_is_a_parse_error_with_500() {
        let r = handle(b"{nope");
        assert_eq!(r.status, 500);
        assert!(r.body.contains("-32700"));
    }

    #[test]
    fn unknown_method_follows_core_status_per_version() {
        let r = handle(br#"{"method":"nope","id":1}"#);
        assert_eq!(r.status, 404);
        let r = handle(br#"{"jsonrpc":"2.0","method":"nope","id":1}"#);
        assert_eq!(r.status, 200);
        assert!(r.body.contains("-32601"));
    }
}
