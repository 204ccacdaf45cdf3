//! File-system access for the log, behind small traits so tests can inject
//! torn writes, short writes, a full disk and failed fsyncs.
//!
//! Owns: opening, growing, syncing and removing files. Must not: know anything
//! about record batches, offsets or indexes.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A log data file: positional reads and writes, no shared cursor.
#[allow(clippy::len_without_is_empty)] // a fallible length has no useful is_empty
pub trait SegmentFile: Send + Sync + Debug {
    /// Writes some prefix of `buf` at `pos`; may be short, like `pwrite(2)`.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// Reads into `buf` from `pos`; may be short, like `pread(2)`.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Makes written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Makes data and metadata (the file length) durable (`fsync`).
    fn sync_all(&self) -> io::Result<()>;
    /// Sets the physical length (growing leaves a hole; shrinking discards).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The physical length.
    fn len(&self) -> io::Result<u64>;
    /// The descriptor, for `sendfile(2)`; `None` forces a buffered copy.
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// Writes `len` (at most [`ZERO_FILL_MAX`]) zero bytes at `pos`, a range
    /// past the data and inside the preallocated length, so the page cache
    /// holds it before appends land there (see `Segment`'s zero-ahead). Only
    /// a speed-up: the default does nothing, and a failure loses nothing.
    fn zero_fill(&self, pos: u64, len: usize) -> io::Result<()> {
        let _ = (pos, len);
        Ok(())
    }
}

/// The most [`SegmentFile::zero_fill`] writes at once.
pub const ZERO_FILL_MAX: usize = 256 << 10;

impl dyn SegmentFile {
    /// Writes all of `buf` at `pos`, retrying short writes.
    pub fn write_all_at(&self, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, pos) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write returned 0 bytes",
                    ));
                }
                Ok(n) => {
                    buf = &buf[n..];
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Fills `buf` from `pos`; returns how many bytes were read before end of file.
    pub fn read_full_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

/// Directory-level operations the log needs.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens (creating if asked) a log data file for reading and writing.
    fn open_segment(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens (creating if asked) an index file; indexes are memory-mapped, so
    /// this hands out the real file.
    fn open_index(&self, path: &Path, create: bool) -> io::Result<File>;
    /// Reserves disk blocks for `file` up to `len` bytes, so that writes through a
    /// memory map never hit a full disk (which would be SIGBUS, not an error).
    fn allocate(&self, file: &File, len: u64) -> io::Result<()>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Removes a file; a missing file is not an error.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Whether a path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Reads a small file whole.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Replaces a small file atomically and durably (write, fsync, rename, fsync dir).
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Makes directory entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl SegmentFile for StdFile {
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.0.as_fd())
    }
    fn zero_fill(&self, pos: u64, len: usize) -> io::Result<()> {
        static ZEROS: [u8; ZERO_FILL_MAX] = [0; ZERO_FILL_MAX];
        self.0.write_all_at(&ZEROS[..len.min(ZERO_FILL_MAX)], pos)
    }
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

impl FileSystem for StdFs {
    fn open_segment(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
        Ok(Arc::new(StdFile(open_rw(path, create)?)))
    }
    fn open_index(&self, path: &Path, create: bool) -> io::Result<File> {
        open_rw(path, create)
    }
    fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
        let current = file.metadata()?.len();
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(
            file,
            rustix::fs::FallocateFlags::empty(),
            current,
            len - current,
        ) {
            Ok(()) => Ok(()),
            // Some file systems (tmpfs on old kernels, overlay) lack fallocate;
            // fall back to writing zeros, which reserves blocks all the same.
            Err(rustix::io::Errno::OPNOTSUPP) => {
                let zeros = vec![0u8; (len - current).min(1 << 20) as usize];
                let mut pos = current;
                while pos < len {
                    let n = zeros.len().min((len - pos) as usize);
                    file.write_all_at(&zeros[..n], pos)?;
                    pos += n as u64;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect()
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        File::open(path)?.read_to_end(&mut buf)?;
        Ok(buf)
    }
    fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            self.sync_dir(dir)?;
        }
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

pub use faulty::{Fault, FaultyFs};

/// A file system that injects faults into the real one, for tests of the
/// log's behaviour under torn writes, short writes, a full disk and fsync failure.
mod faulty {
    use super::*;
    use std::sync::Mutex;

    /// One fault to inject into the next matching operation(s).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Fault {
        /// The next data write stores only `n` bytes, then fails with EIO
        /// (the process "crashed" mid-write).
        TornWrite(usize),
        /// Every data write stores at most `n` bytes and reports it (a legal short write).
        ShortWrites(usize),
        /// Writes and allocations fail with ENOSPC once `n` more bytes were written.
        DiskFullAfter(u64),
        /// The next fsync/fdatasync fails with EIO.
        FsyncFails,
    }

    /// Wraps [`StdFs`] and applies the armed [`Fault`]s.
    #[derive(Debug, Default, Clone)]
    pub struct FaultyFs {
        state: Arc<Mutex<Vec<Fault>>>,
    }

    impl FaultyFs {
        /// A file system with no faults armed.
        pub fn new() -> Self {
            Self::default()
        }
        /// Arms a fault.
        pub fn arm(&self, fault: Fault) {
            self.lock().push(fault);
        }
        /// Disarms every fault.
        pub fn heal(&self) {
            self.lock().clear();
        }
        fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
        /// How many bytes of a `len`-byte write may go through, or the error to return.
        fn admit_write(&self, len: usize) -> Result<usize, (usize, io::Error)> {
            let mut faults = self.lock();
            let mut allowed = len;
            for i in 0..faults.len() {
                match faults[i] {
                    Fault::TornWrite(n) => {
                        faults.remove(i);
                        return Err((n.min(len), io::Error::other("injected torn write")));
                    }
                    Fault::DiskFullAfter(left) => {
                        if (len as u64) > left {
                            faults[i] = Fault::DiskFullAfter(0);
                            return Err((left as usize, io::Error::from_raw_os_error(28)));
                        }
                        faults[i] = Fault::DiskFullAfter(left - len as u64);
                    }
                    Fault::ShortWrites(n) => allowed = allowed.min(n.max(1)),
                    Fault::FsyncFails => {}
                }
            }
            Ok(allowed)
        }
        fn admit_sync(&self) -> io::Result<()> {
            let mut faults = self.lock();
            if let Some(i) = faults.iter().position(|f| *f == Fault::FsyncFails) {
                faults.remove(i);
                return Err(io::Error::other("injected fsync failure"));
            }
            Ok(())
        }
        fn disk_full(&self) -> bool {
            self.lock()
                .iter()
                .any(|f| matches!(f, Fault::DiskFullAfter(0)))
        }
    }

    #[derive(Debug)]
    struct FaultyFile {
        inner: StdFile,
        fs: FaultyFs,
    }

    impl SegmentFile for FaultyFile {
        fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
            match self.fs.admit_write(buf.len()) {
                Ok(n) => self.inner.write_at(&buf[..n], pos),
                Err((n, err)) => {
                    if n > 0 {
                        self.inner.0.write_all_at(&buf[..n], pos)?;
                    }
                    Err(err)
                }
            }
        }
        fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
            self.inner.read_at(buf, pos)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.fs.admit_sync()?;
            self.inner.sync_data()
        }
        fn sync_all(&self) -> io::Result<()> {
            self.fs.admit_sync()?;
            self.inner.sync_all()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
    }

    impl FileSystem for FaultyFs {
        fn open_segment(&self, path: &Path, create: bool) -> io::Result<Arc<dyn SegmentFile>> {
            Ok(Arc::new(FaultyFile {
                inner: StdFile(open_rw(path, create)?),
                fs: self.clone(),
            }))
        }
        fn open_index(&self, path: &Path, create: bool) -> io::Result<File> {
            StdFs.open_index(path, create)
        }
        fn allocate(&self, file: &File, len: u64) -> io::Result<()> {
            if self.disk_full() {
                return Err(io::Error::from_raw_os_error(28));
            }
            StdFs.allocate(file, len)
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            StdFs.create_dir_all(path)
        }
        fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
            StdFs.list(dir)
        }
        fn remove(&self, path: &Path) -> io::Result<()> {
            StdFs.remove(path)
        }
        fn exists(&self, path: &Path) -> bool {
            StdFs.exists(path)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            StdFs.read(path)
        }
        fn write_atomic(&self, path: &Path, data: &[u8]) -> io::Result<()> {
            if self.disk_full() {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.admit_sync()?;
            StdFs.write_atomic(path, data)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            StdFs.sync_dir(dir)
        }
    }
}
