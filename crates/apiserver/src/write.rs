//! What a write to one object needs: which object, which part of it, whether to keep it, and
//! who writes it.

use everynode_api::registry::Resource;

/// Which part of an object an update writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: status is kept from storage.
    Main,
    /// `/status`: everything but status is kept from storage.
    Status,
    /// `certificatesigningrequests/approval`: only the approval conditions change.
    Approval,
    /// A server-internal write that bypasses registry rules (finalizer and binding bookkeeping).
    System,
}

/// One write to one object, as the registry's read-modify-write loop takes it.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    pub res: &'static Resource,
    /// From the URL; ignored for cluster-scoped resources.
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub mode: UpdateMode,
    /// `dryRun=All`: everything but the store write.
    pub dry_run: bool,
    /// Who owns the fields the write sets; `None` for writes that are not tracked.
    pub manager: Option<&'a str>,
}

impl<'a> Write<'a> {
    /// A server-internal write: no registry rules, no field manager, kept.
    pub fn system(res: &'static Resource, namespace: Option<&'a str>, name: &'a str) -> Self {
        Write {
            res,
            namespace,
            name,
            mode: UpdateMode::System,
            dry_run: false,
            manager: None,
        }
    }
}
