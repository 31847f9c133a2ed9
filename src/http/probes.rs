//! Health and metrics answers: pure functions of the shared state, no lock held across I/O.

use super::reply::Reply;
use super::route::Probe;
use crate::metrics::Metrics;
use crate::state::Shared;
use crate::supervisor::health::{Evaluation, Status};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What the probe workers read.
pub struct ProbeContext {
    /// Shared views.
    pub shared: std::sync::Arc<Shared>,
    /// The registry.
    pub metrics: std::sync::Arc<Metrics>,
    /// Heartbeat staleness limit.
    pub heartbeat_timeout: Duration,
}

/// Answers one probe.
pub fn answer(probe: Probe, ctx: &ProbeContext) -> Reply {
    let eval = ctx
        .shared
        .vitals
        .evaluate(Instant::now(), ctx.heartbeat_timeout);
    match probe {
        Probe::Health => health(&eval),
        Probe::Live => live(&eval),
        Probe::Ready => ready(ctx),
        Probe::Detailed => {
            let doc = detailed(&eval, ctx);
            Reply::json(code(eval.overall), &doc)
        }
        Probe::Metrics => {
            publish(&eval, ctx);
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                headers: Vec::new(),
                body: ctx.metrics.render().into_bytes(),
            }
        }
    }
}

fn code(status: Status) -> u16 {
    if status == Status::Unhealthy {
        503
    } else {
        200
    }
}

fn unix_now() -> u64 {
    crate::clock::unix_now() as u64
}

fn health(eval: &Evaluation) -> Reply {
    Reply::json(
        code(eval.overall),
        &json!({ "status": eval.overall.as_str(), "timestamp": unix_now() }),
    )
}

fn live(eval: &Evaluation) -> Reply {
    if eval.all_fresh {
        Reply::json(200, &json!({ "status": "alive" }))
    } else {
        Reply::json(503, &json!({ "status": "dead" }))
    }
}

fn ready(ctx: &ProbeContext) -> Reply {
    let r = ctx.shared.readiness();
    let ok = r.ready();
    let mut doc = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "chain_initialized": r.chain_initialized,
        "storage_available": r.storage_available,
    });
    if let Some(step) = ctx.shared.startup.read().clone() {
        doc["step"] = step.into();
    }
    Reply::json(if ok { 200 } else { 503 }, &doc)
}

/// The `/health/detailed` document (also the `gethealth` RPC result).
pub fn detailed(eval: &Evaluation, ctx: &ProbeContext) -> Value {
    let chain = ctx.shared.chain.read().clone();
    let storage = ctx.shared.storage.read().clone();
    let network = ctx.shared.network.read().clone();
    let components: Map<String, Value> = eval
        .components
        .iter()
        .map(|c| {
            (
                c.component.name().to_owned(),
                json!({
                    "status": c.status.as_str(),
                    "reason": c.reason,
                    "last_heartbeat_secs_ago": round3(c.heartbeat_age.as_secs_f64()),
                }),
            )
        })
        .collect();
    json!({
        "status": eval.overall.as_str(),
        "timestamp": unix_now(),
        "uptime_secs": ctx.shared.started.elapsed().as_secs(),
        "shutting_down": ctx.shared.shutting_down.load(Ordering::Acquire),
        "chain": {
            "initialized": chain.initialized,
            "height": chain.height,
            "tip_hash": chain.tip_hash,
        },
        "storage": {
            "available": storage.available,
            "size_bytes": storage.size_bytes,
            "backend": storage.backend,
        },
        "network": {
            "peers_connected": network.peers_connected,
            "peers_max": network.peers_max,
        },
        "rpc": {
            "enabled": ctx.shared.rpc_enabled,
            "requests_processed": ctx.shared.rpc_requests.load(Ordering::Relaxed),
            "breakers": ctx.shared.rpc_breakers.read().clone(),
        },
        "components": components,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Copies the evaluation and shared views into gauges, so a scrape is current.
pub fn publish(eval: &Evaluation, ctx: &ProbeContext) {
    let m = &ctx.metrics;
    m.uptime_seconds
        .set(ctx.shared.started.elapsed().as_secs_f64());
    m.health_status.set(eval.overall.as_gauge());
    for c in &eval.components {
        m.component_status
            .with_label_values(&[c.component.name()])
            .set(c.status.as_gauge());
        m.component_heartbeat_age_seconds
            .with_label_values(&[c.component.name()])
            .set(c.heartbeat_age.as_secs_f64());
    }
    m.chain_height.set(ctx.shared.chain.read().height as i64);
    m.peers_connected
        .set(ctx.shared.network.read().peers_connected as i64);
    m.storage_size_bytes
        .set(ctx.shared.storage.read().size_bytes as i64);
}
