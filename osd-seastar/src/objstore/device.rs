//! Block devices the store runs on: [`DmaDevice`] (a file or block device
//! through glommio's O_DIRECT io_uring files) and [`SimDevice`] (memory, for
//! tests: it remembers what was made durable and can lose, tear, fail and
//! rot the rest).
//!
//! Invariant: offsets and lengths are multiples of [`BLOCK`]; a write is
//! durable only after a later `sync` returned Ok.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

/// The store's block: the unit of allocation, checksumming and I/O.
pub const BLOCK: usize = 4096;

/// Bytes a read returned, in the buffer they arrived in (the device's I/O
/// buffer, or the store's cached block), so that a reply can be encoded
/// from them without copying them out first (that copy was 3.6% of the
/// OSDs' samples at size-1 depth-32 reads).
pub enum ReadBytes {
    Owned(Vec<u8>),
    Shared(Rc<Vec<u8>>),
    Dma(glommio::io::ReadResult),
}

impl AsRef<[u8]> for ReadBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            ReadBytes::Owned(v) => v,
            ReadBytes::Shared(v) => v,
            ReadBytes::Dma(r) => r,
        }
    }
}

impl ReadBytes {
    /// Owned bytes (a copy unless they were owned already).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            ReadBytes::Owned(v) => v,
            ReadBytes::Shared(v) => Rc::try_unwrap(v).unwrap_or_else(|v| v.as_ref().clone()),
            ReadBytes::Dma(r) => r.to_vec(),
        }
    }
}

#[allow(async_fn_in_trait)]
pub trait Device {
    /// Writes `data` (a multiple of BLOCK) at `offset` (block aligned).
    async fn write(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Writes `parts` back to back at `offset`: one device write, each
    /// part copied once into the I/O buffer (no joined copy first).
    async fn write_parts(&self, offset: u64, parts: &[Rc<Vec<u8>>]) -> io::Result<()> {
        let mut joined = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            joined.extend_from_slice(p);
        }
        self.write(offset, &joined).await
    }
    /// [`Device::read`], in the device's own buffer where it has one.
    async fn read_bytes(&self, offset: u64, len: usize) -> io::Result<ReadBytes> {
        Ok(ReadBytes::Owned(self.read(offset, len).await?))
    }
    /// Reads `len` bytes (a multiple of BLOCK) at `offset`.
    async fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Makes every completed write durable (fdatasync).
    async fn sync(&self) -> io::Result<()>;
    /// Writes and makes durable just this write (O_DSYNC / FUA); writes
    /// before it are not made durable by it.
    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write(offset, data).await?;
        self.sync().await
    }
    fn len(&self) -> u64;
}

fn check_aligned(offset: u64, len: usize, dev_len: u64) -> io::Result<()> {
    if !offset.is_multiple_of(BLOCK as u64) || !len.is_multiple_of(BLOCK) || offset.checked_add(len as u64).is_none_or(|end| end > dev_len) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("unaligned or out-of-range I/O at {offset}+{len}")));
    }
    Ok(())
}

fn gerr(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::other(e.to_string())
}

/// A file or block device through glommio DMA (O_DIRECT, io_uring).
pub struct DmaDevice {
    file: glommio::io::DmaFile,
    /// The same file opened O_DSYNC: each write durable on completion (FUA
    /// on devices that have it), for journal records.
    dsync: glommio::io::DmaFile,
    len: u64,
}

impl DmaDevice {
    /// Opens an existing file or device. For a file, create it with
    /// [`DmaDevice::preallocate`] first: glommio probes a new DMA file by
    /// reading it, and on an empty file that probe misleads it.
    pub async fn open(path: &std::path::Path) -> io::Result<DmaDevice> {
        let file = glommio::io::OpenOptions::new().read(true).write(true).dma_open(path).await.map_err(gerr)?;
        let dsync = glommio::io::OpenOptions::new().read(true).write(true).custom_flags(libc::O_DSYNC).dma_open(path).await.map_err(gerr)?;
        let len = Self::size_of(path)?;
        Ok(DmaDevice { file, dsync, len: len / BLOCK as u64 * BLOCK as u64 })
    }

    /// Bytes in a file or block device. A block device's metadata says 0
    /// bytes; seeking to its end tells its size.
    pub fn size_of(path: &std::path::Path) -> io::Result<u64> {
        use std::io::Seek;
        let mut f = std::fs::File::open(path)?;
        f.seek(std::io::SeekFrom::End(0))
    }

    /// Whether `path` is a block device (it is never created or extended).
    pub fn is_block_device(path: &std::path::Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
    }

    /// Creates (or extends) a regular file of `len` bytes filled with real
    /// zeros, with ordinary writes, so it can then be opened for DMA.
    pub fn preallocate(path: &std::path::Path, len: u64) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        let have = f.metadata()?.len();
        if have >= len {
            return Ok(());
        }
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(have))?;
        let chunk = vec![0u8; 1 << 20];
        let mut left = len - have;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    }
}

impl DmaDevice {
    /// One DMA write of `data`, copied into a glommio buffer.
    async fn write_piece(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut buf = self.file.alloc_dma_buffer(data.len());
        buf.as_bytes_mut().copy_from_slice(data);
        let n = self.file.write_at(buf, offset).await.map_err(gerr)?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write {n} of {}", data.len())));
        }
        Ok(())
    }
}

/// Runs `writes` together and waits for all of them; the first error wins.
async fn join_writes<F: std::future::Future<Output = io::Result<()>>>(writes: Vec<F>) -> io::Result<()> {
    let mut writes: Vec<Option<std::pin::Pin<Box<F>>>> = writes.into_iter().map(|w| Some(Box::pin(w))).collect();
    let mut first_error = None;
    std::future::poll_fn(|cx| {
        for slot in writes.iter_mut() {
            if let Some(w) = slot {
                if let std::task::Poll::Ready(r) = w.as_mut().poll(cx) {
                    *slot = None;
                    if let Err(e) = r {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if writes.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    first_error.map_or(Ok(()), Err)
}

impl Device for DmaDevice {
    async fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        use super::limits::{dma_write_piece_bytes, dma_write_pieces_in_flight_max};
        check_aligned(offset, data.len(), self.len)?;
        if data.len() <= dma_write_piece_bytes {
            return self.write_piece(offset, data).await;
        }
        // A torn big write is already possible (the kernel splits it too):
        // whoever writes one checks it with a crc before trusting it.
        let wave_bytes = dma_write_piece_bytes * dma_write_pieces_in_flight_max;
        for (w, wave) in data.chunks(wave_bytes).enumerate() {
            let wave_offset = offset + (w * wave_bytes) as u64;
            let pieces = wave.chunks(dma_write_piece_bytes).enumerate().map(|(i, piece)| self.write_piece(wave_offset + (i * dma_write_piece_bytes) as u64, piece)).collect();
            join_writes(pieces).await?;
        }
        Ok(())
    }

    async fn write_parts(&self, offset: u64, parts: &[Rc<Vec<u8>>]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        check_aligned(offset, len, self.len)?;
        let mut buf = self.file.alloc_dma_buffer(len);
        let mut at = 0;
        for p in parts {
            buf.as_bytes_mut()[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let n = self.file.write_at(buf, offset).await.map_err(gerr)?;
        if n != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write {n} of {len}")));
        }
        Ok(())
    }

    async fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        Ok(self.read_bytes(offset, len).await?.into_vec())
    }

    async fn read_bytes(&self, offset: u64, len: usize) -> io::Result<ReadBytes> {
        check_aligned(offset, len, self.len)?;
        let r = self.file.read_at_aligned(offset, len).await.map_err(gerr)?;
        if r.len() != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("short read {} of {len}", r.len())));
        }
        Ok(ReadBytes::Dma(r))
    }

    async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(gerr)
    }

    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_aligned(offset, data.len(), self.len)?;
        let mut buf = self.dsync.alloc_dma_buffer(data.len());
        buf.as_bytes_mut().copy_from_slice(data);
        let n = self.dsync.write_at(buf, offset).await.map_err(gerr)?;
        if n != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write {n} of {}", data.len())));
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// What a simulated crash does to writes that were not synced.
#[derive(Debug, Clone, Copy)]
pub struct CrashPlan {
    pub seed: u64,
}

struct SimState {
    durable: Vec<u8>,
    /// Completed but unsynced writes, oldest first.
    pending: Vec<(u64, Vec<u8>)>,
    /// Durable writes submitted and not yet completed (id, offset, data):
    /// each may or may not reach the medium if the power fails first, in
    /// any combination — a later one without an earlier one too.
    in_flight: Vec<(u64, u64, Vec<u8>)>,
    next_id: u64,
    /// Device operations left before the device "loses power": later
    /// writes vanish and syncs fail.
    ops_left: Option<u64>,
    dead: bool,
    eio_ranges: Vec<(u64, u64)>,
    /// Polls a plain (not durable) write stays in flight: tests keep a
    /// data-area write pending while journal records come and go.
    write_polls: u32,
    /// Plain writes submitted and not completed, and the most seen at once
    /// since the last `take_plain_writes_peak`.
    plain_in_flight: usize,
    plain_in_flight_peak: usize,
}

impl SimState {
    /// A medium with nothing in flight and no faults armed.
    fn fresh(durable: Vec<u8>) -> SimState {
        SimState { durable, pending: Vec::new(), in_flight: Vec::new(), next_id: 0, ops_left: None, dead: false, eio_ranges: Vec::new(), write_polls: 1, plain_in_flight: 0, plain_in_flight_peak: 0 }
    }
}

/// An in-memory device for tests. Clones share the same medium.
#[derive(Clone)]
pub struct SimDevice {
    state: Rc<RefCell<SimState>>,
    len: u64,
}

impl SimDevice {
    pub fn new(len: u64) -> SimDevice {
        let len = len / BLOCK as u64 * BLOCK as u64;
        SimDevice {
            state: Rc::new(RefCell::new(SimState::fresh(vec![0; len as usize]))),
            len,
        }
    }

    /// The medium's size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// Plain writes stay in flight for `n` polls (at least one).
    pub fn set_write_polls(&self, n: u32) {
        self.state.borrow_mut().write_polls = n.max(1);
    }

    /// After `n` more writes or syncs the power goes out.
    pub fn fail_after(&self, n: u64) {
        self.state.borrow_mut().ops_left = Some(n);
    }

    /// Reads and writes touching `[start, end)` fail with EIO.
    pub fn inject_eio(&self, start: u64, end: u64) {
        self.state.borrow_mut().eio_ranges.push((start, end));
    }

    /// Flips one bit of the durable medium.
    pub fn flip_bit(&self, offset: u64, bit: u8) {
        let mut s = self.state.borrow_mut();
        s.durable[offset as usize] ^= 1 << (bit % 8);
    }

    /// Power loss: each unsynced write survives or not at random, the last
    /// surviving one may be torn at a 512-byte boundary. Returns a device
    /// holding what the medium holds afterwards.
    pub fn crash(&self, plan: CrashPlan) -> SimDevice {
        let mut s = self.state.borrow_mut();
        let mut x = plan.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut pending = std::mem::take(&mut s.pending);
        pending.extend(std::mem::take(&mut s.in_flight).into_iter().map(|(_, off, data)| (off, data)));
        let n = pending.len();
        let mut medium = s.durable.clone();
        for (i, (off, data)) in pending.into_iter().enumerate() {
            if next() % 2 == 0 {
                continue;
            }
            let keep = if i + 1 == n && next() % 2 == 0 { (next() as usize % (data.len() / 512 + 1)) * 512 } else { data.len() };
            medium[off as usize..off as usize + keep].copy_from_slice(&data[..keep]);
        }
        SimDevice {
            state: Rc::new(RefCell::new(SimState::fresh(medium))),
            len: self.len,
        }
    }

    /// Power loss that keeps exactly the in-flight durable writes chosen
    /// by `keep` (by submission order) and drops every unsynced one: the
    /// device finished a later write but not an earlier one.
    pub fn crash_keeping_in_flight(&self, keep: &[bool]) -> SimDevice {
        let s = self.state.borrow();
        let mut medium = s.durable.clone();
        for (i, (_, off, data)) in s.in_flight.iter().enumerate() {
            if keep.get(i).copied().unwrap_or(false) {
                medium[*off as usize..*off as usize + data.len()].copy_from_slice(data);
            }
        }
        SimDevice {
            state: Rc::new(RefCell::new(SimState::fresh(medium))),
            len: self.len,
        }
    }

    /// The most plain writes in flight at once since the last call.
    pub fn take_plain_writes_peak(&self) -> usize {
        std::mem::take(&mut self.state.borrow_mut().plain_in_flight_peak)
    }

    /// Durable writes submitted and not completed.
    pub fn in_flight_writes(&self) -> usize {
        self.state.borrow().in_flight.len()
    }

    fn spend(s: &mut SimState) -> bool {
        if s.dead {
            return false;
        }
        if let Some(left) = s.ops_left.as_mut() {
            if *left == 0 {
                s.dead = true;
                return false;
            }
            *left -= 1;
        }
        true
    }

    fn eio(s: &SimState, offset: u64, len: usize) -> bool {
        s.eio_ranges.iter().any(|&(a, b)| offset < b && offset + len as u64 > a)
    }
}

/// Lets other tasks run, as a real device's I/O would (so concurrent
/// submits meet in one group commit in tests too).
pub(crate) async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

impl Device for SimDevice {
    async fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_aligned(offset, data.len(), self.len)?;
        let polls = {
            let mut s = self.state.borrow_mut();
            s.plain_in_flight += 1;
            s.plain_in_flight_peak = s.plain_in_flight_peak.max(s.plain_in_flight);
            s.write_polls
        };
        for _ in 0..polls {
            yield_once().await;
        }
        let mut s = self.state.borrow_mut();
        s.plain_in_flight -= 1;
        if Self::eio(&s, offset, data.len()) {
            return Err(io::Error::other("injected EIO"));
        }
        if Self::spend(&mut s) {
            s.pending.push((offset, data.to_vec()));
        }
        Ok(())
    }

    async fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        check_aligned(offset, len, self.len)?;
        let s = self.state.borrow();
        if Self::eio(&s, offset, len) {
            return Err(io::Error::other("injected EIO"));
        }
        let mut out = s.durable[offset as usize..offset as usize + len].to_vec();
        for (o, d) in &s.pending {
            let (a, b) = (*o.max(&offset), (*o + d.len() as u64).min(offset + len as u64));
            if a < b {
                out[(a - offset) as usize..(b - offset) as usize].copy_from_slice(&d[(a - o) as usize..(b - o) as usize]);
            }
        }
        Ok(out)
    }

    async fn write_durable(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        check_aligned(offset, data.len(), self.len)?;
        let id = {
            let mut s = self.state.borrow_mut();
            if Self::eio(&s, offset, data.len()) {
                return Err(io::Error::other("injected EIO"));
            }
            if s.dead {
                return Err(io::Error::other("device lost power"));
            }
            // Submitted: from here a power loss may or may not keep it.
            let id = s.next_id;
            s.next_id += 1;
            s.in_flight.push((id, offset, data.to_vec()));
            id
        };
        yield_once().await;
        let mut s = self.state.borrow_mut();
        if !Self::spend(&mut s) {
            return Err(io::Error::other("device lost power"));
        }
        s.in_flight.retain(|(i, _, _)| *i != id);
        s.durable[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        // A later read must not see an older pending write over it.
        s.pending.retain(|(o, d)| *o + d.len() as u64 <= offset || *o >= offset + data.len() as u64);
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        yield_once().await;
        let mut s = self.state.borrow_mut();
        if !Self::spend(&mut s) {
            return Err(io::Error::other("device lost power"));
        }
        let pending = std::mem::take(&mut s.pending);
        for (o, d) in pending {
            s.durable[o as usize..o as usize + d.len()].copy_from_slice(&d);
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}
