//! Doorbells: how each side of the ring wakes the other.
//!
//! With the real kernel, user space waits with a blocking 4-byte `read()` of
//! `/dev/uioN` (or poll/epoll POLLIN) and rings with a 4-byte `write()`. The
//! simulator stands in with two eventfds, one per direction.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};

/// The user-space end of a device's doorbells.
pub trait Doorbell: Send + Sync {
    /// Block until the kernel signals new entries (or a spurious wake-up).
    fn wait(&self) -> io::Result<()>;
    /// Tell the kernel that completions are ready (once per batch).
    fn notify(&self) -> io::Result<()>;
    /// A descriptor that polls readable when `wait` would not block.
    fn poll_fd(&self) -> BorrowedFd<'_>;
}

/// One direction of a simulated doorbell pair.
#[derive(Debug, Clone)]
pub struct EventBell(Arc<EventFd>);

impl EventBell {
    /// A new, unsignalled eventfd.
    pub fn new() -> io::Result<Self> {
        let fd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(io::Error::from)?;
        Ok(Self(Arc::new(fd)))
    }
    /// Signal the other side.
    pub fn ring(&self) -> io::Result<()> {
        self.0.write(1).map(drop).map_err(io::Error::from)
    }
    /// Wait for a signal and consume all pending ones.
    pub fn wait(&self) -> io::Result<()> {
        self.0.read().map(drop).map_err(io::Error::from)
    }
    /// The eventfd, for poll/epoll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// User-space doorbells of a simulated device: wait on `to_user`, ring `to_kernel`.
#[derive(Debug, Clone)]
pub struct SimDoorbell {
    /// Rung by the simulated kernel when it queues entries.
    pub to_user: EventBell,
    /// Rung by user space after publishing cmd_tail.
    pub to_kernel: EventBell,
}

impl Doorbell for SimDoorbell {
    fn wait(&self) -> io::Result<()> {
        self.to_user.wait()
    }
    fn notify(&self) -> io::Result<()> {
        self.to_kernel.ring()
    }
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.to_user.fd()
    }
}
