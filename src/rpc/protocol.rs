//! JSON-RPC as Bitcoin Core speaks it: 1.0 (errors answered with HTTP 500/404/400) and 2.0
//! (HTTP 200, `jsonrpc` member, notifications), single or batch. Pure functions.

use serde_json::{json, Map, Value};

/// Core's error codes.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Unknown method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Wrong parameters (Core uses it for wrong arity).
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Unexpected type or general failure.
    pub const MISC_ERROR: i64 = -1;
    /// Wrong type of a parameter.
    pub const TYPE_ERROR: i64 = -3;
    /// Invalid address or key.
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    /// Ran out of memory during the operation (a batch's answer over its limit).
    pub const OUT_OF_MEMORY: i64 = -7;
    /// Invalid, missing or duplicate parameter.
    pub const INVALID_PARAMETER: i64 = -8;
    /// Error parsing or validating a structure.
    pub const DESERIALIZATION_ERROR: i64 = -22;
    /// General verification error.
    pub const VERIFY_ERROR: i64 = -25;
    /// Transaction or block rejected.
    pub const VERIFY_REJECTED: i64 = -26;
    /// Already in the chain.
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    /// Still starting up.
    pub const IN_WARMUP: i64 = -28;
    /// Core's RPC_CLIENT_NODE_ALREADY_ADDED (also "already banned").
    pub const NODE_ALREADY_ADDED: i64 = -23;
    /// Core's RPC_CLIENT_NODE_NOT_ADDED.
    pub const NODE_NOT_ADDED: i64 = -24;
    /// Core's RPC_CLIENT_NODE_NOT_CONNECTED.
    pub const NODE_NOT_CONNECTED: i64 = -29;
    /// Core's RPC_CLIENT_INVALID_IP_OR_SUBNET.
    pub const INVALID_IP_OR_SUBNET: i64 = -30;
    /// Core's RPC_CLIENT_P2P_DISABLED.
    pub const P2P_DISABLED: i64 = -9;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// Core's code.
    pub code: i64,
    /// Message.
    pub message: String,
    /// The node failed (internal error, timeout), not the request: circuit breakers count it.
    pub internal: bool,
}

impl RpcError {
    /// A request error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            internal: false,
        }
    }

    /// A failure of the node (internal error, timeout).
    pub fn internal(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            internal: true,
            ..RpcError::new(code, message)
        }
    }

    fn to_json(&self) -> Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// Which protocol a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Core's default (and 1.1 from older clients).
    V1,
    /// `"jsonrpc": "2.0"`.
    V2,
}

/// Parameters as given.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// `[a, b]` (or absent).
    Positional(Vec<Value>),
    /// `{"name": value}`.
    Named(Map<String, Value>),
}

/// One call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `id`, `None` for a 2.0 notification.
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Parameters.
    pub params: Params,
    /// Protocol version.
    pub version: Version,
}

/// A request object that is not a valid call: the id and version to answer with, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadCall {
    /// Id to answer with.
    pub id: Option<Value>,
    /// Version to answer with.
    pub version: Version,
    /// The error.
    pub error: RpcError,
}

/// One element of a body: a call, or why it is not one.
pub type Parsed = Result<Call, BadCall>;

/// A parsed body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One request object.
    Single(Parsed),
    /// An array of them.
    Batch(Vec<Parsed>),
}

/// Parses a request body; `Err` is a parse error of the whole body.
pub fn parse(body: &[u8]) -> Result<Body, RpcError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| RpcError::new(code::PARSE_ERROR, "Parse error"))?;
    match v {
        Value::Array(items) => Ok(Body::Batch(items.into_iter().map(parse_call).collect())),
        obj @ Value::Object(_) => Ok(Body::Single(parse_call(obj))),
        _ => Err(RpcError::new(
            code::PARSE_ERROR,
            "Top-level object parse error",
        )),
    }
}

fn parse_call(v: Value) -> Parsed {
    let bad = |id, version, error| Err(BadCall { id, version, error });
    let Value::Object(mut obj) = v else {
        return bad(
            Some(Value::Null),
            Version::V1,
            RpcError::new(code::INVALID_REQUEST, "Invalid Request object"),
        );
    };
    let version = match obj.get("jsonrpc") {
        Some(Value::String(s)) if s == "2.0" => Version::V2,
        Some(Value::String(s)) if s == "1.0" || s == "1.1" => Version::V1,
        None => Version::V1,
        Some(_) => {
            return bad(
                obj.get("id").cloned(),
                Version::V1,
                RpcError::new(code::INVALID_REQUEST, "JSON-RPC version not supported"),
            )
        }
    };
    let id = match (obj.remove("id"), version) {
        (Some(id), _) => Some(id),
        // 1.0 has no notifications: a missing id is answered with null.
        (None, Version::V1) => Some(Value::Null),
        (None, Version::V2) => None,
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => {
            return bad(
                id,
                version,
                RpcError::new(code::INVALID_REQUEST, "Method must be a string"),
            )
        }
        None => {
            return bad(
                id,
                version,
                RpcError::new(code::INVALID_REQUEST, "Missing method"),
            )
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Params::Positional(Vec::new()),
        Some(Value::Array(a)) => Params::Positional(a),
        Some(Value::Object(o)) => Params::Named(o),
        Some(_) => {
            return bad(
                id,
                version,
                RpcError::new(code::INVALID_REQUEST, "Params must be an array or object"),
            )
        }
    };
    Ok(Call {
        id,
        method,
        params,
        version,
    })
}

/// The reply object for one call (`None` for a 2.0 notification).
/// A call's result: a value, or JSON text already written (a large block, written straight
/// from its data).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// A value.
    Value(Value),
    /// Serialized JSON, put in the reply as it is.
    Json(String),
}

impl From<Value> for Answer {
    fn from(v: Value) -> Answer {
        Answer::Value(v)
    }
}

/// The reply text for one call (`None` for a 2.0 notification). Takes the outcome by value: a
/// result can be megabytes (`getblock`), and is never copied. Keys are in serde_json's
/// (sorted) order either way.
pub fn reply(
    id: Option<Value>,
    version: Version,
    outcome: Result<Answer, RpcError>,
) -> Option<String> {
    let id = id?;
    let outcome = match outcome {
        Ok(Answer::Json(text)) => {
            let id = serde_json::to_string(&id).unwrap_or_else(|_| "null".into());
            return Some(match version {
                Version::V1 => format!(r#"{{"error":null,"id":{id},"result":{text}}}"#),
                Version::V2 => format!(r#"{{"id":{id},"jsonrpc":"2.0","result":{text}}}"#),
            });
        }
        Ok(Answer::Value(v)) => Ok(v),
        Err(e) => Err(e),
    };
    let mut m = serde_json::Map::new();
    if version == Version::V2 {
        m.insert("jsonrpc".into(), "2.0".into());
    }
    match outcome {
        Ok(r) => {
            m.insert("result".into(), r);
            if version == Version::V1 {
                m.insert("error".into(), Value::Null);
            }
        }
        Err(e) => {
            if version == Version::V1 {
                m.insert("result".into(), Value::Null);
            }
            m.insert("error".into(), e.to_json());
        }
    }
    m.insert("id".into(), id);
    serde_json::to_string(&Value::Object(m)).ok()
}

/// HTTP status of a single (non-batch) reply, as Core sets it.
pub fn http_status(version: Version, outcome: &Result<Answer, RpcError>) -> u16 {
    match (version, outcome) {
        (_, Ok(_)) | (Version::V2, Err(_)) => 200,
        (Version::V1, Err(e)) if e.code == code::INVALID_REQUEST => 400,
        (Version::V1, Err(e)) if e.code == code::METHOD_NOT_FOUND => 404,
        (Version::V1, Err(_)) => 500,
    }
}

/// Reads positional or named parameters by position and name, as Core's RPCHelpMan does.
pub struct Args<'a> {
    params: &'a Params,
    names: &'static [&'static str],
}

impl<'a> Args<'a> {
    /// Checks arity and names against the method's parameter list.
    pub fn new(params: &'a Params, names: &'static [&'static str]) -> Result<Args<'a>, RpcError> {
        match params {
            Params::Positional(a) if a.len() > names.len() => Err(RpcError::new(
                code::MISC_ERROR,
                format!(
                    "too many arguments: {} given, at most {} accepted",
                    a.len(),
                    names.len()
                ),
            )),
            Params::Named(m) => match m.keys().find(|k| !names.contains(&k.as_str())) {
                Some(k) => Err(RpcError::new(
                    code::INVALID_PARAMETER,
                    format!("Unknown named parameter {k}"),
                )),
                None => Ok(Args { params, names }),
            },
            _ => Ok(Args { params, names }),
        }
    }

    /// The `i`-th parameter, if given and not null.
    pub fn get(&self, i: usize) -> Option<&'a Value> {
        let v = match self.params {
            Params::Positional(a) => a.get(i),
            Params::Named(m) => self.names.get(i).and_then(|n| m.get(*n)),
        };
        v.filter(|v| !v.is_null())
    }

    /// A required parameter.
    pub fn required(&self, i: usize) -> Result<&'a Value, RpcError> {
        self.get(i).ok_or_else(|| {
            RpcError::new(
                code::MISC_ERROR,
                format!(
                    "Missing required argument {}",
                    self.names.get(i).unwrap_or(&"?")
                ),
            )
        })
    }

    /// A required string parameter.
    pub fn required_str(&self, i: usize) -> Result<&'a str, RpcError> {
        self.required(i)?;
        self.str(i)?
            .ok_or_else(|| RpcError::new(code::MISC_ERROR, "Missing required argument"))
    }

    /// An integer parameter. A number that is not a whole one, or beyond 64 bits, is said to be
    /// so (Core's "JSON integer out of range" for the latter); a non-number is a type error.
    pub fn int(&self, i: usize) -> Result<Option<i64>, RpcError> {
        self.get(i)
            .map(|v| match (v.as_i64(), v) {
                (Some(n), _) => Ok(n),
                (None, Value::Number(n)) if n.is_f64() => Err(RpcError::new(
                    code::TYPE_ERROR,
                    format!("{n} is not an integer"),
                )),
                (None, Value::Number(_)) => {
                    Err(RpcError::new(code::TYPE_ERROR, "JSON integer out of range"))
                }
                (None, v) => Err(RpcError::new(
                    code::TYPE_ERROR,
                    format!(
                        "JSON value of type {} is not of expected type number",
                        type_name(v)
                    ),
                )),
            })
            .transpose()
    }

    /// A string parameter.
    pub fn str(&self, i: usize) -> Result<Option<&'a str>, RpcError> {
        self.get(i)
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    RpcError::new(
                        code::TYPE_ERROR,
                        format!(
                            "JSON value of type {} is not of expected type string",
                            type_name(v)
                        ),
                    )
                })
            })
            .transpose()
    }
}

/// Core's JSON type names in type errors.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ids_and_params() {
        let Body::Single(Ok(c)) = parse(br#"{"method":"x","params":[1],"id":7}"#).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.version, c.id, c.params),
            (
                Version::V1,
                Some(json!(7)),
                Params::Positional(vec![json!(1)])
            )
        );
        let Body::Single(Ok(c)) =
            parse(br#"{"jsonrpc":"2.0","method":"x","params":{"a":1}}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.version, c.id), (Version::V2, None));
        assert!(matches!(c.params, Params::Named(_)));
        assert_eq!(parse(b"{").unwrap_err().code, code::PARSE_ERROR);
        let Body::Batch(items) = parse(br#"[{"method":"a","id":1}, 5]"#).unwrap() else {
            panic!()
        };
        assert!(items[0].is_ok() && items[1].is_err());
    }

    #[test]
    fn status_codes_follow_core() {
        let nf = Err(RpcError::new(code::METHOD_NOT_FOUND, "Method not found"));
        assert_eq!(http_status(Version::V1, &nf), 404);
        assert_eq!(http_status(Version::V2, &nf), 200);
        assert_eq!(
            http_status(
                Version::V1,
                &Err(RpcError::new(code::INVALID_PARAMETER, ""))
            ),
            500
        );
        assert_eq!(
            reply(None, Version::V2, Ok(json!(1).into())),
            None,
            "notifications get no reply"
        );
        let parsed = |text: Option<String>| serde_json::from_str::<Value>(&text.unwrap()).unwrap();
        assert_eq!(
            parsed(reply(Some(json!(1)), Version::V1, Ok(json!(5).into()))),
            json!({"result":5,"error":null,"id":1})
        );
        // Text written elsewhere is put in as it is, in both versions.
        let raw = || Ok(Answer::Json(r#"{"a":[1,2]}"#.into()));
        assert_eq!(
            parsed(reply(Some(json!("x")), Version::V1, raw())),
            json!({"result":{"a":[1,2]},"error":null,"id":"x"})
        );
        assert_eq!(
            parsed(reply(Some(json!(7)), Version::V2, raw())),
            json!({"jsonrpc":"2.0","result":{"a":[1,2]},"id":7})
        );
    }

    #[test]
    fn args_by_position_or_name() {
        const NAMES: &[&str] = &["height", "verbose"];
        let named = Params::Named(serde_json::from_str(r#"{"verbose":true}"#).unwrap());
        let a = Args::new(&named, NAMES).unwrap();
        assert_eq!(a.get(1), Some(&json!(true)));
        assert!(a.required(0).is_err());
        let bad = Params::Named(serde_json::from_str(r#"{"nope":1}"#).unwrap());
        assert_eq!(
            Args::new(&bad, NAMES).err().unwrap().code,
            code::INVALID_PARAMETER
        );
        let too_many = Params::Positional(vec![json!(1), json!(2), json!(3)]);
        assert!(Args::new(&too_many, NAMES).is_err());
        let wrong = Params::Positional(vec![json!("x")]);
        assert_eq!(
            Args::new(&wrong, NAMES).unwrap().int(0).unwrap_err().code,
            code::TYPE_ERROR
        );
    }
}
