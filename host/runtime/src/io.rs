//! The I/O executor: a small bounded pool of threads that performs
//! submit-read / submit-write (file <-> TCMU data area) so the device's
//! worker never blocks on the medium.
//!
//! Bounded twice: a fixed number of threads, and a fixed queue; when the
//! queue is full a submit fails with `busy` (the guest may complete the
//! request with it, and the initiator retries) rather than blocking the
//! worker. io_uring would avoid the thread hop; it is not needed to meet
//! the contract and can replace this later behind the same interface.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct IoExecutor {
    tx: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// The queue is full.
#[derive(Debug)]
pub(crate) struct Busy;

impl IoExecutor {
    pub(crate) fn new(threads: usize, queue: usize) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("wasmtap-io-{i}"))
                    .spawn(move || run(&rx))?,
            );
        }
        Ok(Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        }))
    }

    /// Queue `job`, or refuse if the queue is full or shut down.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Busy> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) | TrySendError::Disconnected(_) => Busy,
            }),
            None => Err(Busy),
        }
    }

    /// Finish queued jobs and stop the threads.
    pub(crate) fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handles = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

fn run(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        match job {
            // A job never panics by construction (it only does I/O and
            // updates request state); if one did, catching it keeps the
            // thread and every other device's I/O alive.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}
