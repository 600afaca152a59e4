//! Resource accounting: what one instance, one tenant and the whole daemon
//! may hold of every shared resource a guest can make the host spend.
//!
//! Each resource is a [`Budget`]: a count in use and a limit, shared by every
//! holder. A charge is taken from all the budgets it concerns at once (the
//! instance's, its tenant's, the daemon's) or from none, and comes back when
//! its [`Held`] guard is dropped, so a trapped or replaced instance returns
//! everything it held without bookkeeping of its own.
//!
//! - linear memory: [`StoreLimiter`] enforces the instance's limit and
//!   charges growth to the tenant ([`TenantLimits::memory`]);
//! - open files, instances, stored bytes and stored files: see
//!   [`TenantLimits`], [`InstanceLimits`](crate::InstanceLimits) and
//!   [`RuntimeConfig`](crate::RuntimeConfig); docs/limits.md lists them all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A count of something in use and its limit, shared by all holders.
#[derive(Debug, Clone)]
pub struct Budget(Arc<BudgetInner>);

#[derive(Debug)]
struct BudgetInner {
    limit: AtomicU64,
    used: AtomicU64,
}

impl Budget {
    /// A budget of `limit` units, none used.
    pub fn new(limit: u64) -> Self {
        Self(Arc::new(BudgetInner {
            limit: AtomicU64::new(limit),
            used: AtomicU64::new(0),
        }))
    }
    /// The limit.
    pub fn limit(&self) -> u64 {
        self.0.limit.load(Ordering::Acquire)
    }
    /// Units in use.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Acquire)
    }
    /// Units still available.
    pub fn available(&self) -> u64 {
        self.limit().saturating_sub(self.used())
    }
    /// Change the limit. What is in use stays in use; past the new limit,
    /// charges are refused until enough comes back.
    pub fn set_limit(&self, limit: u64) {
        self.0.limit.store(limit, Ordering::Release);
    }
    /// Take `n` units unless that would pass the limit.
    pub(crate) fn try_take(&self, n: u64) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit())
            })
            .is_ok()
    }
    /// Give `n` units back (never below zero).
    pub(crate) fn give(&self, n: u64) {
        let _ = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }
    /// Take `n` units from every budget in `all`, or from none: the index
    /// of the first budget that refused.
    pub(crate) fn charge_all(all: &[&Budget], n: u64) -> Result<(), usize> {
        for (i, b) in all.iter().enumerate() {
            if !b.try_take(n) {
                for b in &all[..i] {
                    b.give(n);
                }
                return Err(i);
            }
        }
        Ok(())
    }
    /// [`charge_all`](Self::charge_all), given back when the guard drops.
    pub(crate) fn take_all(all: &[&Budget], n: u64) -> Result<Held, usize> {
        Self::charge_all(all, n)?;
        Ok(Held {
            from: all.iter().map(|b| (*b).clone()).collect(),
            n,
        })
    }
    /// Add `n` units whatever the limit (data found on disk is there).
    pub(crate) fn force_take(&self, n: u64) {
        self.0.used.fetch_add(n, Ordering::AcqRel);
    }
}

/// Units taken from some budgets, given back on drop.
#[derive(Debug)]
pub(crate) struct Held {
    from: Vec<Budget>,
    n: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        for b in &self.from {
            b.give(self.n);
        }
    }
}

/// Per-tenant limits, shared by all the tenant's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantLimits {
    /// Bytes of linear memory of all its instances together.
    pub memory: u64,
    /// Files its guests hold open through `storage`, all devices together.
    pub open_files: u64,
    /// Instances it may have at once (a hot swap holds two for a moment).
    pub instances: u64,
    /// Bytes its devices' directories may hold (logical file sizes).
    pub storage_bytes: u64,
    /// Files its devices' directories may hold.
    pub storage_files: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            memory: 1 << 30,
            open_files: 256,
            instances: 64,
            storage_bytes: 64 << 30,
            storage_files: 10_000,
        }
    }
}

/// What a tenant holds, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TenantUsage {
    /// Bytes of linear memory.
    pub memory: u64,
    /// Open files.
    pub open_files: u64,
    /// Live instances.
    pub instances: u64,
    /// Bytes stored.
    pub storage_bytes: u64,
    /// Files stored.
    pub storage_files: u64,
}

/// A tenant: an id and its budgets, shared by all its instances.
#[derive(Debug, Clone)]
pub struct Tenant(Arc<TenantInner>);

#[derive(Debug)]
struct TenantInner {
    id: String,
    memory: Budget,
    open_files: Budget,
    instances: Budget,
    storage_bytes: Budget,
    storage_files: Budget,
}

impl Tenant {
    /// A tenant with `budget` bytes of linear memory for all its instances
    /// and default limits for everything else.
    pub fn new(id: impl Into<String>, budget: u64) -> Self {
        Self::with_limits(
            id,
            TenantLimits {
                memory: budget,
                ..TenantLimits::default()
            },
        )
    }
    /// A tenant with the given limits.
    pub fn with_limits(id: impl Into<String>, l: TenantLimits) -> Self {
        Self(Arc::new(TenantInner {
            id: id.into(),
            memory: Budget::new(l.memory),
            open_files: Budget::new(l.open_files),
            instances: Budget::new(l.instances),
            storage_bytes: Budget::new(l.storage_bytes),
            storage_files: Budget::new(l.storage_files),
        }))
    }
    /// The tenant's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// The tenant's memory budget in bytes.
    pub fn budget(&self) -> u64 {
        self.0.memory.limit()
    }
    /// Change the memory budget (the operator changed the tenant's quota).
    /// Memory already charged stays charged; below the new budget, growth
    /// is refused until enough is returned.
    pub fn set_budget(&self, bytes: u64) {
        self.0.memory.set_limit(bytes);
    }
    /// Bytes of memory currently charged by live instances.
    pub fn used(&self) -> u64 {
        self.0.memory.used()
    }
    /// The current limits.
    pub fn limits(&self) -> TenantLimits {
        TenantLimits {
            memory: self.0.memory.limit(),
            open_files: self.0.open_files.limit(),
            instances: self.0.instances.limit(),
            storage_bytes: self.0.storage_bytes.limit(),
            storage_files: self.0.storage_files.limit(),
        }
    }
    /// Change every limit (as [`set_budget`](Self::set_budget) does for
    /// memory: what is held stays held).
    pub fn set_limits(&self, l: TenantLimits) {
        self.0.memory.set_limit(l.memory);
        self.0.open_files.set_limit(l.open_files);
        self.0.instances.set_limit(l.instances);
        self.0.storage_bytes.set_limit(l.storage_bytes);
        self.0.storage_files.set_limit(l.storage_files);
    }
    /// What the tenant holds now.
    pub fn usage(&self) -> TenantUsage {
        TenantUsage {
            memory: self.0.memory.used(),
            open_files: self.0.open_files.used(),
            instances: self.0.instances.used(),
            storage_bytes: self.0.storage_bytes.used(),
            storage_files: self.0.storage_files.used(),
        }
    }
    pub(crate) fn memory(&self) -> &Budget {
        &self.0.memory
    }
    pub(crate) fn open_files(&self) -> &Budget {
        &self.0.open_files
    }
    pub(crate) fn instances(&self) -> &Budget {
        &self.0.instances
    }
    pub(crate) fn storage_bytes(&self) -> &Budget {
        &self.0.storage_bytes
    }
    pub(crate) fn storage_files(&self) -> &Budget {
        &self.0.storage_files
    }
}

/// Why the limiter refused a growth (kept for the failure reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// The instance's own memory limit.
    Instance { limit: u64, wanted: u64 },
    /// The tenant's budget.
    Tenant { budget: u64 },
    /// The instance's table limit.
    Tables { limit: u64 },
}

/// The store's resource limiter.
#[derive(Debug)]
pub(crate) struct StoreLimiter {
    tenant: Tenant,
    memory_limit: u64,
    table_limit: u64,
    memory: u64,
    tables: u64,
    /// Charged by the last approved growth, refunded if the growth failed.
    last_charge: u64,
    pub(crate) denied: Option<Denied>,
    /// `memory`, readable from other threads (the device page).
    shown: Arc<AtomicU64>,
}

impl StoreLimiter {
    /// A limiter charging `tenant`, keeping its memory figure in `shown`
    /// too (for readers on other threads).
    pub(crate) fn new(
        tenant: Tenant,
        memory_limit: u64,
        table_limit: u64,
        shown: Arc<AtomicU64>,
    ) -> Self {
        shown.store(0, Ordering::Release);
        Self {
            tenant,
            memory_limit,
            table_limit,
            memory: 0,
            tables: 0,
            last_charge: 0,
            denied: None,
            shown,
        }
    }

    /// Bytes of linear memory this store holds.
    pub(crate) fn memory(&self) -> u64 {
        self.memory
    }

    /// Bytes the store's memory may still grow by.
    pub(crate) fn room(&self) -> u64 {
        self.memory_limit.saturating_sub(self.memory)
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let delta = (desired as u64).saturating_sub(current as u64);
        let wanted = self.memory.saturating_add(delta);
        if wanted > self.memory_limit {
            self.denied = Some(Denied::Instance {
                limit: self.memory_limit,
                wanted,
            });
            return Ok(false);
        }
        if !self.tenant.memory().try_take(delta) {
            self.denied = Some(Denied::Tenant {
                budget: self.tenant.budget(),
            });
            return Ok(false);
        }
        self.memory = wanted;
        self.shown.store(wanted, Ordering::Release);
        self.last_charge = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory = self.memory.saturating_sub(self.last_charge);
        self.shown.store(self.memory, Ordering::Release);
        self.tenant.memory().give(self.last_charge);
        self.last_charge = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        let delta = (desired as u64).saturating_sub(current as u64);
        let wanted = self.tables.saturating_add(delta);
        if wanted > self.table_limit {
            self.denied = Some(Denied::Tables {
                limit: self.table_limit,
            });
            return Ok(false);
        }
        self.tables = wanted;
        Ok(true)
    }
}

impl Drop for StoreLimiter {
    fn drop(&mut self) {
        self.tenant.memory().give(self.memory);
        self.shown.store(0, Ordering::Release);
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Instance { limit, wanted } => write!(
                f,
                "out of memory: wanted {wanted} bytes, the instance limit is {limit}"
            ),
            Denied::Tenant { budget } => {
                write!(
                    f,
                    "out of memory: the tenant's budget of {budget} bytes is spent"
                )
            }
            Denied::Tables { limit } => {
                write!(f, "table limit of {limit} elements reached")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn instance_limit_is_obeyed_and_enforced() {
        let t = Tenant::new("t", 1 << 30);
        let mut l = StoreLimiter::new(t.clone(), 1 << 20, 10, Arc::default());
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.memory_growing(1 << 20, (1 << 20) + 65536, None).unwrap());
        assert!(matches!(l.denied, Some(Denied::Instance { .. })));
        assert_eq!(t.used(), 1 << 20);
        drop(l);
        assert_eq!(t.used(), 0, "dropping the store returns its memory");
    }

    #[test]
    fn tenant_budget_is_shared_between_instances() {
        let t = Tenant::new("t", 3 << 20);
        let mut a = StoreLimiter::new(t.clone(), 2 << 20, 10, Arc::default());
        let mut b = StoreLimiter::new(t.clone(), 2 << 20, 10, Arc::default());
        assert!(a.memory_growing(0, 2 << 20, None).unwrap());
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!b.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert!(matches!(b.denied, Some(Denied::Tenant { .. })));
        drop(a);
        assert!(b.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(t.used(), 2 << 20);
    }

    #[test]
    fn a_changed_budget_applies_to_further_growth() {
        let t = Tenant::new("t", 4 << 20);
        let mut a = StoreLimiter::new(t.clone(), 4 << 20, 10, Arc::default());
        assert!(a.memory_growing(0, 2 << 20, None).unwrap());
        t.set_budget(2 << 20);
        assert_eq!(t.budget(), 2 << 20);
        assert!(!a.memory_growing(2 << 20, 3 << 20, None).unwrap());
        assert_eq!(t.used(), 2 << 20, "what was charged stays charged");
        t.set_budget(8 << 20);
        assert!(a.memory_growing(2 << 20, 3 << 20, None).unwrap());
    }

    #[test]
    fn failed_growth_is_refunded() {
        let t = Tenant::new("t", 1 << 30);
        let mut l = StoreLimiter::new(t.clone(), 1 << 30, 10, Arc::default());
        assert!(l.memory_growing(0, 4096, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("os said no"))
            .unwrap();
        assert_eq!((l.memory(), t.used()), (0, 0));
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(10, 11, None).unwrap());
    }
}
