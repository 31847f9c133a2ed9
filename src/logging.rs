//! Log output on stderr: human lines or one JSON object per line, with the thread as component.

use crate::config::{LogFormat, LogLevel};
use log::kv::{Key, Value, VisitSource};
use std::io::Write;

/// Installs the global logger. Precedence: `--log-level`, then `RUST_LOG`, then the config file.
pub fn init(format: LogFormat, config_level: LogLevel, flag_level: Option<LogLevel>) {
    let mut builder = env_logger::Builder::new();
    builder.target(env_logger::Target::Stderr);
    match (flag_level, std::env::var("RUST_LOG").ok()) {
        (Some(level), _) => {
            builder.filter_level(level.filter());
        }
        (None, Some(spec)) if !spec.is_empty() => {
            builder.parse_filters(&spec);
        }
        _ => {
            builder.filter_level(config_level.filter());
        }
    }
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            let ts = buf.timestamp_millis();
            write!(
                buf,
                "{ts} {:<5} [{}] {}",
                record.level(),
                component(record),
                record.args()
            )?;
            let mut fields = TextFields(String::new());
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", fields.0)
        }),
        LogFormat::Json => builder.format(|buf, record| {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), buf.timestamp_millis().to_string().into());
            obj.insert("level".into(), record.level().as_str().into());
            obj.insert("component".into(), component(record).into());
            obj.insert("target".into(), record.target().into());
            obj.insert("msg".into(), record.args().to_string().into());
            let mut fields = JsonFields(&mut obj);
            let _ = record.key_values().visit(&mut fields);
            // serde_json escapes newlines, so a record is always exactly one line.
            writeln!(buf, "{}", serde_json::Value::Object(obj))
        }),
    };
    // A second init (tests calling run twice in one process) keeps the first logger.
    let _ = builder.try_init();
}

/// The thread name; tiny_http's and other libraries' unnamed threads fall back to the crate.
fn component(record: &log::Record<'_>) -> String {
    match std::thread::current().name() {
        // The supervisor loop runs on the main thread.
        Some("main") => "supervisor".to_owned(),
        Some(name) => name.to_owned(),
        None => record
            .target()
            .split("::")
            .next()
            .unwrap_or("unknown")
            .to_owned(),
    }
}

struct TextFields(String);

impl<'kvs> VisitSource<'kvs> for TextFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push_str(&format!(" {key}={value}"));
        Ok(())
    }
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            value.to_string().into()
        };
        // Fields never overwrite the fixed ones a log shipper relies on.
        let key = match key.as_str() {
            "ts" | "level" | "component" | "target" | "msg" => format!("field_{key}"),
            k => k.to_owned(),
        };
        self.0.insert(key, v);
        Ok(())
    }
}

/// Routes panic messages through the logger so JSON logs stay one object per line.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let msg = crate::thread::panic_message(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        log::error!(thread = name, location = location.as_str(); "thread `{name}` panicked: {msg}");
    }));
}
