//! Log output on stderr: human lines or one JSON object per line, with the thread as component,
//! written by a thread of its own ([`queue`]).

pub mod queue;

use crate::config::{LogFormat, LogLevel};
use log::kv::{Key, Value, VisitSource};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// Debug categories (Core's `logging` RPC): the node's components.
pub const CATEGORIES: [&str; 7] = [
    "supervisor",
    "http",
    "rpc",
    "p2p",
    "chain",
    "storage",
    "pruning",
];

static DEBUG: [AtomicBool; CATEGORIES.len()] = [const { AtomicBool::new(false) }; CATEGORIES.len()];
static BASE_LEVEL: OnceLock<log::LevelFilter> = OnceLock::new();

fn builder(format: LogFormat) -> env_logger::Builder {
    let mut builder = env_logger::Builder::new();
    builder.target(env_logger::Target::Pipe(Box::new(queue::writer())));
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
    builder
}

/// The configured logger, plus a debug-level twin used only for categories switched on at
/// runtime, so RUST_LOG-style filters keep working for everything else.
struct Switchable {
    base: env_logger::Logger,
    debug: env_logger::Logger,
}

fn category(record_component: &str) -> Option<usize> {
    let name = match record_component {
        c if c.starts_with("rpc") => "rpc",
        c if c.starts_with("probe") => "http",
        c => c,
    };
    CATEGORIES.iter().position(|c| *c == name)
}

/// A record's category: its thread's, else its module's (the RPC request line the HTTP gate
/// writes for calls it answers itself is `rpc`).
fn record_category(record: &log::Record<'_>) -> Option<usize> {
    category(&component(record)).or_else(|| category(record.target().split("::").nth(1)?))
}

impl log::Log for Switchable {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.base.enabled(m)
            || (m.level() <= log::Level::Debug && DEBUG.iter().any(|d| d.load(Ordering::Relaxed)))
    }

    fn log(&self, record: &log::Record<'_>) {
        queue::with_level(record.level(), || {
            if self.base.matches(record) {
                self.base.log(record);
            } else if record.level() <= log::Level::Debug
                && record_category(record).is_some_and(|i| DEBUG[i].load(Ordering::Relaxed))
            {
                self.debug.log(record);
            }
        })
    }

    /// Waits (a moment at most) until what was logged is written: before an exit or an exec.
    fn flush(&self) {
        queue::flush(Duration::from_secs(2));
    }
}

/// Installs the global logger. Precedence: `--log-level`, then `RUST_LOG`, then the config file.
pub fn init(format: LogFormat, config_level: LogLevel, flag_level: Option<LogLevel>) {
    let mut base = builder(format);
    match (flag_level, std::env::var("RUST_LOG").ok()) {
        (Some(level), _) => {
            base.filter_level(level.filter());
        }
        (None, Some(spec)) if !spec.is_empty() => {
            base.parse_filters(&spec);
        }
        _ => {
            base.filter_level(config_level.filter());
        }
    }
    let base = base.build();
    let debug = builder(format)
        .filter_level(log::LevelFilter::Debug)
        .build();
    let level = base.filter();
    // A second init (tests calling run twice in one process) keeps the first logger.
    if log::set_boxed_logger(Box::new(Switchable { base, debug })).is_ok() {
        let _ = BASE_LEVEL.set(level);
        log::set_max_level(level);
    }
}

/// Core's `logging`: switches debug output of categories on (`include`) and off (`exclude`);
/// "all"/"1" and "none"/"0" name every category. Returns each category's state, or the unknown name.
pub fn set_debug_categories(
    include: &[String],
    exclude: &[String],
) -> Result<Vec<(&'static str, bool)>, String> {
    let resolve = |names: &[String]| -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for n in names {
            match n.as_str() {
                "all" | "1" => out.extend(0..CATEGORIES.len()),
                "none" | "0" => {}
                other => out.push(
                    CATEGORIES
                        .iter()
                        .position(|c| *c == other)
                        .ok_or_else(|| other.to_owned())?,
                ),
            }
        }
        Ok(out)
    };
    let (inc, exc) = (resolve(include)?, resolve(exclude)?);
    for i in inc {
        DEBUG[i].store(true, Ordering::Relaxed);
    }
    for i in exc {
        DEBUG[i].store(false, Ordering::Relaxed);
    }
    let any = DEBUG.iter().any(|d| d.load(Ordering::Relaxed));
    let base = BASE_LEVEL.get().copied().unwrap_or(log::LevelFilter::Info);
    log::set_max_level(if any {
        base.max(log::LevelFilter::Debug)
    } else {
        base
    });
    Ok(CATEGORIES
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, DEBUG[i].load(Ordering::Relaxed)))
        .collect())
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
