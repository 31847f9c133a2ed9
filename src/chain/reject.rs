//! Why a header, block or transaction is invalid, in Bitcoin Core's reject-reason strings.

use std::fmt;

/// A rejection: Core's reason string (what `submitblock` returns), a human detail, and whose
/// fault it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Core's reason, e.g. `bad-txns-vout-empty`.
    pub reason: String,
    /// Context for logs: which transaction, which values.
    pub detail: String,
    /// Whose fault: only consensus rejections are held against a block or a peer.
    pub kind: RejectKind,
}

/// Whose fault a rejection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// The block or header breaks a consensus rule: it is invalid, and so is its sender.
    Consensus,
    /// The block's data was malleated in transit (merkle or witness mismatch): the header may
    /// still be valid with other data (Core's BLOCK_MUTATED).
    Mutated,
    /// The header is too far ahead of our clock: it may be valid later.
    TimeTooNew,
    /// Our own fault: unreadable or corrupt storage, a full disk. Never a verdict on anyone.
    LocalFault,
}

/// A read of stored data failed, or what was read fails its check: a fault of this node's disk,
/// never a verdict on a block or a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct StorageFault {
    /// What was being read (`block`, `undo data`, `coin`, ...).
    pub what: &'static str,
    /// Where and why.
    pub detail: String,
}

impl StorageFault {
    /// A fault reading `what`.
    pub fn new(what: &'static str, detail: impl ToString) -> StorageFault {
        StorageFault {
            what,
            detail: detail.to_string(),
        }
    }
}

impl From<StorageFault> for Reject {
    fn from(f: StorageFault) -> Reject {
        Reject::local("storage-fault", f.to_string())
    }
}

/// The reason given when a block cannot be stored: the node's own fault, never a verdict on the
/// block or on the peer that sent it.
pub const STORAGE_UNAVAILABLE: &str = "storage-unavailable";

impl Reject {
    /// The node cannot store blocks now (a full disk); `detail` says why.
    pub fn storage(detail: impl Into<String>) -> Reject {
        Reject::local(STORAGE_UNAVAILABLE, detail)
    }

    /// True for [`Reject::storage`].
    pub fn is_storage(&self) -> bool {
        self.kind == RejectKind::LocalFault && self.reason == STORAGE_UNAVAILABLE
    }

    /// A consensus rejection with `reason` and `detail`.
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Reject {
        Reject {
            reason: reason.into(),
            detail: detail.into(),
            kind: RejectKind::Consensus,
        }
    }

    /// A rejection that is this node's own fault.
    pub fn local(reason: impl Into<String>, detail: impl Into<String>) -> Reject {
        Reject {
            kind: RejectKind::LocalFault,
            ..Reject::new(reason, detail)
        }
    }

    /// The same rejection, of `kind`.
    pub fn of_kind(self, kind: RejectKind) -> Reject {
        Reject { kind, ..self }
    }

    /// Whether the block (and the peer that sent it) are to blame.
    pub fn is_consensus(&self) -> bool {
        self.kind == RejectKind::Consensus
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}, {}", self.reason, self.detail)
        }
    }
}

impl std::error::Error for Reject {}

/// `Err(Reject)` when `cond` is false.
pub fn ensure(cond: bool, reason: &str, detail: impl FnOnce() -> String) -> Result<(), Reject> {
    if cond {
        Ok(())
    } else {
        Err(Reject::new(reason, detail()))
    }
}
