//! Why a header, block or transaction is invalid, in Bitcoin Core's reject-reason strings.

use std::fmt;

/// A rejection: Core's reason string (what `submitblock` returns) and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Core's reason, e.g. `bad-txns-vout-empty`.
    pub reason: String,
    /// Context for logs: which transaction, which values.
    pub detail: String,
}

/// The reason given when a block cannot be stored: the node's own fault, never a verdict on the
/// block or on the peer that sent it.
pub const STORAGE_UNAVAILABLE: &str = "storage-unavailable";

impl Reject {
    /// The node cannot store blocks now (a full disk); `detail` says why.
    pub fn storage(detail: impl Into<String>) -> Reject {
        Reject::new(STORAGE_UNAVAILABLE, detail)
    }

    /// True for [`Reject::storage`].
    pub fn is_storage(&self) -> bool {
        self.reason == STORAGE_UNAVAILABLE
    }

    /// A rejection with `reason` and `detail`.
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Reject {
        Reject {
            reason: reason.into(),
            detail: detail.into(),
        }
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
