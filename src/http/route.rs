//! Which queue a request belongs to, decided from its method and path alone.

/// A health or metrics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/health`.
    Health,
    /// `/health/live`.
    Live,
    /// `/health/ready`.
    Ready,
    /// `/health/detailed`.
    Detailed,
    /// `/metrics`.
    Metrics,
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Answered by a probe worker.
    Probe(Probe),
    /// JSON-RPC, answered by an RPC worker.
    Rpc,
    /// Core's REST interface, answered by a REST worker.
    Rest,
    /// 404, answered by a probe worker (cheap).
    NotFound,
    /// 405 with the allowed method, answered by a probe worker (cheap).
    MethodNotAllowed(&'static str),
}

/// Which endpoints are switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enabled {
    /// `/health*`.
    pub health: bool,
    /// `/metrics`.
    pub metrics: bool,
    /// `/rest/*`.
    pub rest: bool,
}

/// Routes by method and path; the query string is ignored.
pub fn route(method: &str, url: &str, enabled: Enabled) -> Route {
    let path = url.split('?').next().unwrap_or("");
    if enabled.rest && path.starts_with("/rest/") {
        return match method {
            "GET" | "HEAD" => Route::Rest,
            _ => Route::MethodNotAllowed("GET, HEAD"),
        };
    }
    let probe = match path {
        "/health" if enabled.health => Some(Probe::Health),
        "/health/live" if enabled.health => Some(Probe::Live),
        "/health/ready" if enabled.health => Some(Probe::Ready),
        "/health/detailed" if enabled.health => Some(Probe::Detailed),
        "/metrics" if enabled.metrics => Some(Probe::Metrics),
        "/" => {
            return if method == "POST" {
                Route::Rpc
            } else {
                Route::MethodNotAllowed("POST")
            }
        }
        _ => return Route::NotFound,
    };
    match (probe, method) {
        (Some(p), "GET" | "HEAD") => Route::Probe(p),
        (Some(_), _) => Route::MethodNotAllowed("GET, HEAD"),
        (None, _) => Route::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: Enabled = Enabled {
        health: true,
        metrics: true,
        rest: true,
    };

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/health", ALL), Route::Probe(Probe::Health));
        assert_eq!(
            route("GET", "/health/ready?x=1", ALL),
            Route::Probe(Probe::Ready)
        );
        assert_eq!(route("POST", "/", ALL), Route::Rpc);
        assert_eq!(route("GET", "/", ALL), Route::MethodNotAllowed("POST"));
        assert_eq!(
            route("POST", "/metrics", ALL),
            Route::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(route("GET", "/nope", ALL), Route::NotFound);
        assert_eq!(route("GET", "/rest/chaininfo.json", ALL), Route::Rest);
        assert_eq!(route("HEAD", "/rest/block/x.bin", ALL), Route::Rest);
        assert_eq!(
            route("POST", "/rest/chaininfo.json", ALL),
            Route::MethodNotAllowed("GET, HEAD")
        );
    }

    #[test]
    fn disabled_endpoints_are_not_found() {
        let none = Enabled {
            health: false,
            metrics: false,
            rest: false,
        };
        assert_eq!(route("GET", "/health", none), Route::NotFound);
        assert_eq!(route("POST", "/metrics", none), Route::NotFound);
        assert_eq!(route("GET", "/rest/chaininfo.json", none), Route::NotFound);
    }
}
