//! Memory accounting: a per-instance limit and a per-tenant budget.
//!
//! The pooling allocator caps every linear memory at
//! [`RuntimeConfig::max_memory_per_instance`](crate::RuntimeConfig); below
//! that, [`StoreLimiter`] enforces the instance's own limit and charges every
//! byte of growth to the tenant's shared [`Tenant`] budget, returning it when
//! the store is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A tenant: an id and a memory budget shared by all its instances.
#[derive(Debug, Clone)]
pub struct Tenant(Arc<TenantInner>);

#[derive(Debug)]
struct TenantInner {
    id: String,
    budget: AtomicU64,
    used: AtomicU64,
}

impl Tenant {
    /// A tenant with `budget` bytes of linear memory for all its instances.
    pub fn new(id: impl Into<String>, budget: u64) -> Self {
        Self(Arc::new(TenantInner {
            id: id.into(),
            budget: AtomicU64::new(budget),
            used: AtomicU64::new(0),
        }))
    }
    /// The tenant's id.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// The tenant's budget in bytes.
    pub fn budget(&self) -> u64 {
        self.0.budget.load(Ordering::Acquire)
    }
    /// Change the budget (the operator changed the tenant's quota). Memory
    /// already charged stays charged; below the new budget, growth is
    /// refused until enough is returned.
    pub fn set_budget(&self, bytes: u64) {
        self.0.budget.store(bytes, Ordering::Release);
    }
    /// Bytes currently charged by live instances.
    pub fn used(&self) -> u64 {
        self.0.used.load(Ordering::Acquire)
    }

    /// Charge `bytes`, unless that would exceed the budget.
    fn try_charge(&self, bytes: u64) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|&n| n <= self.budget())
            })
            .is_ok()
    }

    fn refund(&self, bytes: u64) {
        // Never below zero, even if accounting went wrong somewhere.
        let _ = self
            .0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(bytes))
            });
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
}

impl StoreLimiter {
    pub(crate) fn new(tenant: Tenant, memory_limit: u64, table_limit: u64) -> Self {
        Self {
            tenant,
            memory_limit,
            table_limit,
            memory: 0,
            tables: 0,
            last_charge: 0,
            denied: None,
        }
    }

    /// Bytes of linear memory this store holds.
    pub(crate) fn memory(&self) -> u64 {
        self.memory
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
        if !self.tenant.try_charge(delta) {
            self.denied = Some(Denied::Tenant {
                budget: self.tenant.budget(),
            });
            return Ok(false);
        }
        self.memory = wanted;
        self.last_charge = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory = self.memory.saturating_sub(self.last_charge);
        self.tenant.refund(self.last_charge);
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
        self.tenant.refund(self.memory);
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
        let mut l = StoreLimiter::new(t.clone(), 1 << 20, 10);
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
        let mut a = StoreLimiter::new(t.clone(), 2 << 20, 10);
        let mut b = StoreLimiter::new(t.clone(), 2 << 20, 10);
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
        let mut a = StoreLimiter::new(t.clone(), 4 << 20, 10);
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
        let mut l = StoreLimiter::new(t.clone(), 1 << 30, 10);
        assert!(l.memory_growing(0, 4096, None).unwrap());
        l.memory_grow_failed(wasmtime::Error::msg("os said no"))
            .unwrap();
        assert_eq!((l.memory(), t.used()), (0, 0));
        assert!(l.table_growing(0, 10, None).unwrap());
        assert!(!l.table_growing(10, 11, None).unwrap());
    }
}
