//! The names of the node's long-lived threads: one identity used by health, metrics and logs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A component of the node, one OS thread (or a fixed pool) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// Heartbeats, systemd, shutdown order.
    Supervisor,
    /// The tiny_http dispatcher and its worker pools.
    Http,
    /// The mio P2P event loop.
    P2p,
    /// Header tree, validation and the UTXO view.
    Chain,
    /// The storage writer, the only thread that writes the store.
    Storage,
    /// The disk-space and pruning monitor.
    Pruning,
}

impl Component {
    /// Every component, in shutdown order (the supervisor last).
    pub const ALL: [Component; 6] = [
        Component::Http,
        Component::P2p,
        Component::Pruning,
        Component::Chain,
        Component::Storage,
        Component::Supervisor,
    ];

    /// The thread and label name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Supervisor => "supervisor",
            Component::Http => "http",
            Component::P2p => "p2p",
            Component::Chain => "chain",
            Component::Storage => "storage",
            Component::Pruning => "pruning",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
