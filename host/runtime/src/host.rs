//! The host side of the world's imports: one store's data ([`DeviceState`])
//! and the `log`, `storage` and `requests` host traits.
//!
//! Everything a guest asks for is checked here, once: paths (relative, no
//! `..`, resolved by cap-std inside the device's directory), request ranges,
//! which data function fits which request kind, and the host-call budget.

use std::fs::File;
use std::io;
use std::path::{Component, Path};
use std::sync::Arc;

use cap_std::fs::{Dir, OpenOptions};
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::requests::{self, Kind};
use crate::bindings::types::ErrorCode;
use crate::bindings::{log, storage, types};
use crate::io::{IoExecutor, IoOwner};
use crate::limits::{Budget, Held, StoreLimiter, Tenant};
use crate::log::GuestLog;
use crate::quota::{DirAccount, FileAcct};
use crate::request::{DataTarget, RequestRes};

/// Charged per host call on top of the bytes it moves.
const CALL_COST: u64 = 256;

/// An open file of the `storage` interface.
#[derive(Debug)]
pub struct FileRes {
    file: Arc<File>,
    writable: bool,
    /// Its charge to the device's storage account (`None` without one).
    acct: Option<Arc<FileAcct>>,
    /// Its place among the open files of the instance, tenant and daemon.
    _open: Held,
    /// On tmpfs: reads and writes are memory copies that never wait for a
    /// device, and `RWF_NOWAIT` is refused (EOPNOTSUPP), so small transfers
    /// run inline rather than on an I/O thread.
    in_memory: bool,
}

/// Largest zero-copy transfer of a file in memory (tmpfs) done on the
/// worker itself. Up to this size the copy is cheaper than handing it to an
/// I/O thread and waking the worker again; larger ones go to the I/O threads,
/// where several run in parallel.
const IN_MEMORY_INLINE_MAX: u64 = 64 * 1024;

/// Whether `f` lives on tmpfs.
fn in_memory(f: &File) -> bool {
    use nix::sys::statfs::{TMPFS_MAGIC, fstatfs};
    fstatfs(f).is_ok_and(|s| s.filesystem_type() == TMPFS_MAGIC)
}

/// A protocol violation that takes the instance down; the message becomes
/// the failure reason.
#[derive(Debug, thiserror::Error)]
#[error("protocol violation: {0}")]
pub(crate) struct ProtocolViolation(pub(crate) String);

/// What an instance holds of the shared resources, and where to charge
/// more (see docs/limits.md).
#[derive(Debug)]
pub(crate) struct Resources {
    pub(crate) tenant: Tenant,
    /// Files this instance holds open.
    pub(crate) open_files: Budget,
    /// Files all guests of the daemon hold open.
    pub(crate) daemon_files: Budget,
    /// The device directory's storage account.
    pub(crate) account: Option<Arc<DirAccount>>,
    /// The device's queue on the I/O executor.
    pub(crate) io_owner: IoOwner,
    /// Largest host buffer for one call's result.
    pub(crate) max_host_buffer: u64,
    /// The instance's slot in its tenant's instance quota.
    pub(crate) _instance: Held,
}

/// One device instance's store data.
pub(crate) struct DeviceState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) limiter: StoreLimiter,
    dir: Option<Dir>,
    io: Arc<IoExecutor>,
    log: GuestLog,
    res: Resources,
    /// Host work left in the current guest call.
    pub(crate) work_left: u64,
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("limiter", &self.limiter)
            .field("work_left", &self.work_left)
            .finish_non_exhaustive()
    }
}

impl DeviceState {
    pub(crate) fn new(
        wasi: WasiCtx,
        limiter: StoreLimiter,
        dir: Option<Dir>,
        io: Arc<IoExecutor>,
        log: GuestLog,
        res: Resources,
    ) -> Self {
        Self {
            table: ResourceTable::new(),
            wasi,
            limiter,
            dir,
            io,
            log,
            res,
            work_left: 0,
        }
    }

    /// A host buffer of `n` bytes for a guest call, if the limits allow
    /// it: at most [`InstanceLimits::max_host_buffer`], at most what the
    /// instance could still grow its own memory by, and at most what its
    /// tenant's memory budget has left. Refusals are noted in the device's
    /// log, since the guest sees only `out-of-range`.
    ///
    /// [`InstanceLimits::max_host_buffer`]: crate::InstanceLimits::max_host_buffer
    fn host_buffer_ok(&self, what: &str, n: u64) -> Result<(), ErrorCode> {
        let instance_room = self.limiter.room();
        let tenant_room = self.res.tenant.memory().available();
        let limit = self.res.max_host_buffer.min(instance_room).min(tenant_room);
        if n <= limit {
            return Ok(());
        }
        self.log.host(format!(
            "{what} of {n} bytes refused: the host hands a guest at most {limit} bytes per call \
             (max {} per call, {instance_room} left in the instance's memory, \
             {tenant_room} in the tenant's budget)",
            self.res.max_host_buffer
        ));
        Err(ErrorCode::OutOfRange)
    }

    /// Charge growing `file` to `end` bytes to the storage account.
    fn grow_file(&self, file: &FileRes, end: u64) -> Result<(), ErrorCode> {
        let (Some(acct), Some(f)) = (&self.res.account, &file.acct) else {
            return Ok(());
        };
        acct.grow(f, end).map_err(|who| {
            let bytes = acct.usage().bytes_limit;
            self.log.host(format!(
                "growing a file to {end} bytes refused: {who} storage quota is spent \
                 (device limit {bytes} bytes)"
            ));
            ErrorCode::NoSpace
        })
    }

    /// Charge `bytes` of host work (plus the per-call cost) to the current
    /// guest call; trap when the budget is spent.
    fn charge(&mut self, bytes: u64) -> wasmtime::Result<()> {
        let cost = bytes.saturating_add(CALL_COST);
        match self.work_left.checked_sub(cost) {
            Some(left) => {
                self.work_left = left;
                Ok(())
            }
            None => Err(
                ProtocolViolation("host-call budget of this guest call exhausted".into()).into(),
            ),
        }
    }

    fn dir(&self) -> Result<&Dir, ErrorCode> {
        self.dir.as_ref().ok_or(ErrorCode::AccessDenied)
    }

    /// A place for one more open file in the instance's, the tenant's and
    /// the daemon's limits, or `busy` (the guest should close a file) with
    /// a note in the device's log saying whose limit it hit.
    fn take_open_file(&self, path: &str) -> Result<Held, ErrorCode> {
        let r = &self.res;
        let all = [&r.open_files, r.tenant.open_files(), &r.daemon_files];
        Budget::take_all(&all, 1).map_err(|i| {
            let whose = ["the instance's", "the tenant's", "the daemon's"][i];
            self.log.host(format!(
                "open {path:?} refused: {whose} limit of {} open files is reached",
                all[i].limit()
            ));
            ErrorCode::Busy
        })
    }

    fn file(&self, f: &Resource<FileRes>) -> wasmtime::Result<&FileRes> {
        Ok(self.table.get(f)?)
    }

    fn request(&self, r: &Resource<RequestRes>) -> wasmtime::Result<&RequestRes> {
        Ok(self.table.get(r)?)
    }

    /// Check (and charge) a `write-data` of `len` bytes at `at`.
    fn write_check(
        &mut self,
        r: &Resource<RequestRes>,
        at: u64,
        len: usize,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let n = len as u64;
        self.data_access(r, Kind::Read, at, n, n)
    }
}

/// Replace the generated `request.write-data` with one that copies the data
/// straight from the guest's memory into the command's buffer. The
/// generated binding first lifts the list into a new host vector, which for
/// a backstore serving reads from its own memory (the `ram` guest) is a
/// second copy of every byte read and an allocation per call.
pub(crate) fn add_direct_paths(
    linker: &mut wasmtime::component::Linker<DeviceState>,
) -> wasmtime::Result<()> {
    use wasmtime::component::WasmList;
    linker.allow_shadowing(true);
    let mut requests = linker.instance("wasmtap:backstore/requests@0.1.1")?;
    requests.func_wrap(
        "[method]request.write-data",
        |mut store: wasmtime::StoreContextMut<'_, DeviceState>,
         (r, at, data): (Resource<RequestRes>, u64, WasmList<u8>)| {
            if let Err(e) = store.data_mut().write_check(&r, at, data.len())? {
                return Ok((Err(e),));
            }
            // Both borrows of the store are shared: the request's buffer
            // from the table, the bytes from the guest's memory.
            let target = &store.data().request(&r)?.data;
            Ok((target.write(at, data.as_le_slice(&store)),))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl WasiView for DeviceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Map an OS error to the WIT's error codes.
pub(crate) fn io_code(e: &io::Error) -> ErrorCode {
    match e.raw_os_error() {
        Some(nix::libc::ENOSPC) | Some(nix::libc::EDQUOT) => return ErrorCode::NoSpace,
        Some(nix::libc::EROFS) => return ErrorCode::ReadOnly,
        Some(nix::libc::EOPNOTSUPP) => return ErrorCode::Unsupported,
        _ => {}
    }
    match e.kind() {
        io::ErrorKind::NotFound => ErrorCode::NotFound,
        io::ErrorKind::PermissionDenied => ErrorCode::AccessDenied,
        io::ErrorKind::InvalidInput => ErrorCode::OutOfRange,
        _ => ErrorCode::Io,
    }
}

/// A path the guest may use: relative, non-empty, no `..`, no NUL. cap-std
/// enforces the same again while resolving (symlinks included); refusing
/// here gives the guest a clear `access-denied` instead of an OS error.
pub(crate) fn check_path(path: &str) -> Result<&Path, ErrorCode> {
    let p = Path::new(path);
    if path.is_empty() || path.contains('\0') || path.len() > 4096 {
        return Err(ErrorCode::AccessDenied);
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(ErrorCode::AccessDenied);
            }
        }
    }
    Ok(p)
}

impl types::Host for DeviceState {}

impl log::Host for DeviceState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.charge(message.len() as u64)?;
        self.log.log(level, message);
        Ok(())
    }
}

impl storage::Host for DeviceState {
    fn open(
        &mut self,
        path: String,
        create: bool,
        writable: bool,
    ) -> wasmtime::Result<Result<Resource<FileRes>, ErrorCode>> {
        self.charge(path.len() as u64)?;
        let opened = (|| {
            use std::os::unix::fs::MetadataExt;
            let p = check_path(&path)?;
            let dir = self.dir()?;
            let open = self.take_open_file(&path)?;
            let mut created = None;
            if create {
                // A new file is charged to the storage quota before it
                // exists; `create` needs write access.
                let reservation = match &self.res.account {
                    Some(a) => Some(a.reserve_file().map_err(|who| {
                        self.log.host(format!(
                            "creating {path:?} refused: {who} quota of stored files is spent"
                        ));
                        ErrorCode::NoSpace
                    })?),
                    None => None,
                };
                let mut o = OpenOptions::new();
                o.write(true).create_new(true);
                match dir.open_with(p, &o) {
                    Ok(_) => created = reservation,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_code(&e)),
                }
            }
            let mut o = OpenOptions::new();
            o.read(true).write(writable);
            let f = dir.open_with(p, &o).map_err(|e| io_code(&e))?.into_std();
            let meta = f.metadata().map_err(|e| io_code(&e))?;
            if !meta.is_file() {
                return Err(ErrorCode::AccessDenied);
            }
            let key = (meta.dev(), meta.ino());
            let acct = match (created, &self.res.account) {
                (Some(r), _) => Some(r.created(key)),
                (None, Some(a)) => Some(a.track(key, meta.len())),
                (None, None) => None,
            };
            Ok(FileRes {
                in_memory: in_memory(&f),
                file: Arc::new(f),
                writable,
                acct,
                _open: open,
            })
        })();
        match opened {
            Ok(f) => Ok(Ok(self.table.push(f)?)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn remove(&mut self, path: String) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.charge(path.len() as u64)?;
        Ok((|| {
            use std::os::unix::fs::MetadataExt;
            let p = check_path(&path)?;
            let dir = self.dir()?;
            // Which file goes (to give its charge back): opened without
            // following a symlink, never written.
            let mut o = OpenOptions::new();
            o.read(true);
            let key = dir
                .open_with(p, &o)
                .ok()
                .and_then(|f| f.into_std().metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| (m.dev(), m.ino()));
            dir.remove_file(p).map_err(|e| io_code(&e))?;
            if let (Some(a), Some(k)) = (&self.res.account, key) {
                a.removed(k);
            }
            Ok(())
        })())
    }
}

impl storage::HostFile for DeviceState {
    fn size(&mut self, f: Resource<FileRes>) -> wasmtime::Result<Result<u64, ErrorCode>> {
        self.charge(0)?;
        let f = self.file(&f)?;
        Ok(f.file.metadata().map(|m| m.len()).map_err(|e| io_code(&e)))
    }

    fn set_size(
        &mut self,
        f: Resource<FileRes>,
        size: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.charge(0)?;
        let f = self.file(&f)?;
        if !f.writable {
            return Ok(Err(ErrorCode::ReadOnly));
        }
        if let (Some(a), Some(acct)) = (&self.res.account, &f.acct)
            && let Err(who) = a.set_size(acct, size)
        {
            self.log.host(format!(
                "set-size to {size} bytes refused: {who} storage quota is spent"
            ));
            return Ok(Err(ErrorCode::NoSpace));
        }
        Ok(f.file.set_len(size).map_err(|e| io_code(&e)))
    }

    fn read_at(
        &mut self,
        f: Resource<FileRes>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, ErrorCode>> {
        use std::os::unix::fs::FileExt;
        let file = Arc::clone(&self.file(&f)?.file);
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return Ok(Err(io_code(&e))),
        };
        // Never allocate more than the file can give, nor than the limits
        // allow the host to hold for this guest.
        let n = u64::from(len).min(size.saturating_sub(offset));
        if let Err(e) = self.host_buffer_ok("read-at", n) {
            self.charge(0)?;
            return Ok(Err(e));
        }
        self.charge(n)?;
        let mut buf = vec![0u8; n as usize];
        let mut got = 0usize;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(Err(io_code(&e))),
            }
        }
        buf.truncate(got);
        Ok(Ok(buf))
    }

    fn write_at(
        &mut self,
        f: Resource<FileRes>,
        offset: u64,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        use std::os::unix::fs::FileExt;
        self.charge(data.len() as u64)?;
        let f = self.file(&f)?;
        if !f.writable {
            return Ok(Err(ErrorCode::ReadOnly));
        }
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return Ok(Err(ErrorCode::OutOfRange));
        };
        if let Err(e) = self.grow_file(f, end) {
            return Ok(Err(e));
        }
        Ok(f.file.write_all_at(&data, offset).map_err(|e| io_code(&e)))
    }

    fn sync(&mut self, f: Resource<FileRes>) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.charge(0)?;
        let f = self.file(&f)?;
        Ok(f.file.sync_data().map_err(|e| io_code(&e)))
    }

    fn punch_hole(
        &mut self,
        f: Resource<FileRes>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        use nix::fcntl::{FallocateFlags, fallocate};
        self.charge(0)?;
        let f = self.file(&f)?;
        if !f.writable {
            return Ok(Err(ErrorCode::ReadOnly));
        }
        let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(Err(ErrorCode::OutOfRange));
        };
        if off.checked_add(l).is_none() {
            return Ok(Err(ErrorCode::OutOfRange));
        }
        if l == 0 {
            return Ok(Ok(()));
        }
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        Ok(fallocate(&*f.file, flags, off, l).map_err(|e| io_code(&io::Error::from(e))))
    }

    fn block_status(
        &mut self,
        f: Resource<FileRes>,
        offset: u64,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<types::BlockExtent>, ErrorCode>> {
        let file = Arc::clone(&self.file(&f)?.file);
        let r = crate::extents::file_extents(&file, offset, len, crate::extents::MAX_EXTENTS)
            .map_err(|e| io_code(&e));
        // Charged as the bytes of the list handed back.
        self.charge(r.as_ref().map_or(0, |e| e.len() as u64 * 24))?;
        Ok(r)
    }

    fn drop(&mut self, f: Resource<FileRes>) -> wasmtime::Result<()> {
        self.table.delete(f)?;
        Ok(())
    }
}

impl requests::Host for DeviceState {
    fn describe_batch(
        &mut self,
        reqs: Vec<Resource<RequestRes>>,
    ) -> wasmtime::Result<Vec<requests::RequestInfo>> {
        let mut infos = Vec::with_capacity(reqs.len());
        for r in &reqs {
            self.charge(0)?;
            infos.push(self.request(r)?.info());
        }
        Ok(infos)
    }

    fn describe_batch_with_data(
        &mut self,
        reqs: Vec<Resource<RequestRes>>,
        max_len: u64,
    ) -> wasmtime::Result<(Vec<requests::RequestInfo>, Vec<bool>, Vec<u8>)> {
        let mut infos = Vec::with_capacity(reqs.len());
        let mut has = Vec::with_capacity(reqs.len());
        let mut data = Vec::new();
        for r in &reqs {
            let info = self.request(r)?.info();
            let length = info.length;
            // A non-write, a longer write, or a write that can no longer be
            // read has no part; `read-data` would say why. Data is charged
            // as `read-data` charges it.
            let part = if info.kind == Kind::Write && length <= max_len {
                match self.data_access(r, Kind::Write, 0, length, length)? {
                    Ok(()) => self
                        .request(r)?
                        .data
                        .append_to(0, length, &mut data)
                        .is_ok(),
                    Err(_) => false,
                }
            } else {
                self.charge(0)?;
                false
            };
            infos.push(info);
            has.push(part);
        }
        Ok((infos, has, data))
    }

    fn submit_batch(
        &mut self,
        transfers: Vec<requests::Transfer>,
    ) -> wasmtime::Result<Vec<Result<(), ErrorCode>>> {
        let mut out = Vec::with_capacity(transfers.len());
        for t in transfers {
            out.push(self.submit(t.req, t.file, t.file_offset, t.at, t.len, t.into_request)?);
        }
        Ok(out)
    }

    fn complete_batch(
        &mut self,
        done: Vec<(Resource<RequestRes>, Result<(), ErrorCode>)>,
    ) -> wasmtime::Result<()> {
        for (r, status) in done {
            requests::HostRequest::complete(self, r, status)?;
        }
        Ok(())
    }
}

impl DeviceState {
    /// Common checks of the data functions: the request can still be
    /// touched, has the right kind, and `at..at+len` is inside it.
    fn data_access(
        &mut self,
        r: &Resource<RequestRes>,
        want: Kind,
        at: u64,
        len: u64,
        moved: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.charge(moved)?;
        let req = self.request(r)?;
        if req.kind != want {
            return Ok(Err(ErrorCode::Unsupported));
        }
        if !req.shared.usable() {
            return Ok(Err(ErrorCode::Busy));
        }
        Ok(req.range(at, len))
    }

    fn submit(
        &mut self,
        r: Resource<RequestRes>,
        f: Resource<FileRes>,
        file_offset: u64,
        at: u64,
        len: u64,
        into_request: bool,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let want = if into_request {
            Kind::Read
        } else {
            Kind::Write
        };
        // Charged by the bytes it moves, like the copying functions.
        if let Err(e) = self.data_access(&r, want, at, len, len)? {
            return Ok(Err(e));
        }
        let Some(end) = file_offset.checked_add(len) else {
            return Ok(Err(ErrorCode::OutOfRange));
        };
        let file = self.file(&f)?;
        if !into_request && !file.writable {
            return Ok(Err(ErrorCode::ReadOnly));
        }
        if !into_request && let Err(e) = self.grow_file(file, end) {
            return Ok(Err(e));
        }
        let in_memory = file.in_memory;
        let file = Arc::clone(&file.file);
        let req = self.request(&r)?;
        // FUA is honoured by the host: the write is made durable before its
        // I/O counts as done, whether it ran inline or on an I/O thread, so a
        // guest cannot get the order of `submit-write` and `sync` wrong.
        let durable = !into_request && req.fua;
        if matches!(req.data, DataTarget::None) || len == 0 {
            return Ok(Ok(()));
        }
        if in_memory && len <= IN_MEMORY_INLINE_MAX {
            let data = &req.data;
            let r = if into_request {
                data.fill_from_file(&file, file_offset, at, len)
            } else {
                data.drain_to_file(&file, file_offset, at, len)
                    .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            };
            return Ok(r.map_err(|e| io_code(&e)));
        }
        let (data, shared) = (req.data.clone(), Arc::clone(&req.shared));
        if !in_memory && data.try_inline(&file, file_offset, at, len, into_request) {
            if durable && let Err(e) = file.sync_data() {
                return Ok(Err(io_code(&e)));
            }
            return Ok(Ok(()));
        }
        if !shared.begin_io() {
            return Ok(Err(ErrorCode::Busy));
        }
        let job_shared = Arc::clone(&shared);
        let job = Box::new(move || {
            let r = if into_request {
                data.fill_from_file(&file, file_offset, at, len)
            } else {
                data.drain_to_file(&file, file_offset, at, len)
                    .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
            };
            job_shared.end_io(r.map_err(|e| io_code(&e)));
        });
        match self.io.submit(self.res.io_owner, job) {
            Ok(()) => Ok(Ok(())),
            Err(_) => {
                shared.end_io(Ok(()));
                Ok(Err(ErrorCode::Busy))
            }
        }
    }
}

impl requests::HostRequest for DeviceState {
    fn kind(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<Kind> {
        self.charge(0)?;
        Ok(self.request(&r)?.kind)
    }

    fn offset(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<u64> {
        self.charge(0)?;
        Ok(self.request(&r)?.offset)
    }

    fn length(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<u64> {
        self.charge(0)?;
        Ok(self.request(&r)?.length)
    }

    fn fua(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<bool> {
        self.charge(0)?;
        Ok(self.request(&r)?.fua)
    }

    fn describe(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<requests::RequestInfo> {
        self.charge(0)?;
        Ok(self.request(&r)?.info())
    }

    fn read_data(
        &mut self,
        r: Resource<RequestRes>,
        at: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, ErrorCode>> {
        let len64 = u64::from(len);
        if let Err(e) = self.host_buffer_ok("read-data", len64) {
            self.charge(0)?;
            return Ok(Err(e));
        }
        if let Err(e) = self.data_access(&r, Kind::Write, at, len64, len64)? {
            return Ok(Err(e));
        }
        Ok(self.request(&r)?.data.read_vec(at, len64))
    }

    // Not called: [`add_direct_paths`] shadows `write-data` with a version
    // that copies straight out of the guest's memory. Kept because the
    // bindings' trait requires it, and equivalent.
    fn write_data(
        &mut self,
        r: Resource<RequestRes>,
        at: u64,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        if let Err(e) = self.write_check(&r, at, data.len())? {
            return Ok(Err(e));
        }
        Ok(self.request(&r)?.data.write(at, &data))
    }

    fn zero_data(
        &mut self,
        r: Resource<RequestRes>,
        at: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        if let Err(e) = self.data_access(&r, Kind::Read, at, len, len / 8)? {
            return Ok(Err(e));
        }
        Ok(self.request(&r)?.data.zero(at, len))
    }

    fn submit_read(
        &mut self,
        r: Resource<RequestRes>,
        src: Resource<FileRes>,
        file_offset: u64,
        at: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.submit(r, src, file_offset, at, len, true)
    }

    fn submit_write(
        &mut self,
        r: Resource<RequestRes>,
        dst: Resource<FileRes>,
        file_offset: u64,
        at: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        self.submit(r, dst, file_offset, at, len, false)
    }

    fn forward_to_parent(
        &mut self,
        r: Resource<RequestRes>,
        at: u64,
        len: u64,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        if let Err(e) = self.data_access(&r, Kind::Read, at, len, 0)? {
            return Ok(Err(e));
        }
        // No parent chains yet: no disk has a parent.
        Ok(Err(ErrorCode::Unsupported))
    }

    fn complete(
        &mut self,
        r: Resource<RequestRes>,
        status: Result<(), ErrorCode>,
    ) -> wasmtime::Result<()> {
        self.charge(0)?;
        let req = self.table.delete(r)?;
        req.shared.complete(status);
        Ok(())
    }

    fn drop(&mut self, r: Resource<RequestRes>) -> wasmtime::Result<()> {
        let req = self.table.delete(r)?;
        // Dropping a request without `complete` breaks the contract ("give it
        // back exactly once"); the instance goes down and the request fails
        // with the others.
        let _ = req;
        Err(ProtocolViolation("a request was dropped without being completed".into()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_device_directory_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", "a\0b"] {
            assert_eq!(check_path(bad), Err(ErrorCode::AccessDenied), "{bad:?}");
        }
        for good in ["disk.img", "sub/dir/file", "./x"] {
            assert!(check_path(good).is_ok(), "{good:?}");
        }
    }
}
