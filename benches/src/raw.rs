//! The raw-disk baseline: what the device gives with nothing in between.
//!
//! Our own io_uring loop (the `io-uring` crate) on a preallocated file with
//! `O_DIRECT`: 4 KiB random writes with `O_DSYNC` (every write durable, the
//! same promise an acknowledged Sepia write makes) and 4 KiB random reads, at
//! a fixed number of I/Os in flight. Every Sepia IOPS figure is printed as a
//! ratio against this loop run in the same process on the same file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, types, IoUring};

/// Block size of every I/O.
pub const io_bytes: usize = 4096;
/// Deepest queue we drive: the ring and the buffer pool are sized by it.
pub const queue_depth_max: u32 = 256;

/// One measured case, in the shape of `sepia-bench --format json` rows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub name: String,
    pub iops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub cpu_us_per_io: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    Read,
}

/// 4 KiB-aligned buffers for O_DIRECT, owned for the whole run.
struct AlignedBufs {
    ptr: *mut u8,
    layout: std::alloc::Layout,
    count: usize,
}

impl AlignedBufs {
    fn new(count: usize) -> AlignedBufs {
        let layout = std::alloc::Layout::from_size_align(count * io_bytes, io_bytes).expect("valid layout");
        // SAFETY: non-zero size; freed in Drop with the same layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocating {} bytes of I/O buffers failed", count * io_bytes);
        AlignedBufs { ptr, layout, count }
    }

    fn slot(&self, i: usize) -> *mut u8 {
        assert!(i < self.count);
        // SAFETY: i < count, so the slot is inside the allocation.
        unsafe { self.ptr.add(i * io_bytes) }
    }
}

impl Drop for AlignedBufs {
    fn drop(&mut self) {
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Creates `path` with `bytes` of real (non-sparse) data, so reads hit the
/// device and O_DIRECT opens work on every filesystem.
pub fn preallocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    if std::fs::metadata(path).map(|m| m.len() >= bytes).unwrap_or(false) {
        return Ok(());
    }
    let mut f = File::create(path)?;
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

/// User + system CPU time of this process (`RUSAGE_SELF`) or of its
/// reaped children (`RUSAGE_CHILDREN`).
pub fn cpu_time_of(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(who, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of this process so far.
pub fn cpu_time() -> Duration {
    cpu_time_of(libc::RUSAGE_SELF)
}

/// SplitMix64 for offsets: cheap, and the same sequence every run.
struct Offsets {
    state: u64,
    blocks: u64,
}

impl Offsets {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % self.blocks) * io_bytes as u64
    }
}

/// Drives `depth` 4 KiB random `op`s against `path` for `duration`.
pub fn run(path: &Path, file_bytes: u64, op: Op, depth: u32, duration: Duration) -> std::io::Result<Row> {
    let depth = depth.clamp(1, queue_depth_max);
    let mut flags = libc::O_DIRECT;
    if op == Op::Write {
        flags |= libc::O_DSYNC;
    }
    let file: File = OpenOptions::new().read(true).write(op == Op::Write).custom_flags(flags).open(path)?;
    let blocks = (file_bytes / io_bytes as u64).max(1);
    let mut offsets = Offsets { state: depth as u64 * 7919 + op as u64, blocks };
    let mut ring = IoUring::new(depth.next_power_of_two())?;
    let bufs = AlignedBufs::new(depth as usize);
    for i in 0..depth as usize {
        // SAFETY: each slot is io_bytes long and owned by `bufs`.
        unsafe { std::ptr::write_bytes(bufs.slot(i), (i as u8).wrapping_add(1), io_bytes) };
    }
    let fd = types::Fd(file.as_raw_fd());
    let mut started = vec![Instant::now(); depth as usize];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    let submit = |ring: &mut IoUring, slot: usize, offset: u64| -> std::io::Result<()> {
        let entry = match op {
            Op::Write => opcode::Write::new(fd, bufs.slot(slot), io_bytes as u32).offset(offset).build(),
            Op::Read => opcode::Read::new(fd, bufs.slot(slot), io_bytes as u32).offset(offset).build(),
        }
        .user_data(slot as u64);
        // SAFETY: the buffer outlives the I/O (bufs lives until the ring is
        // drained below) and the slot is not reused until its completion.
        unsafe { ring.submission().push(&entry) }.map_err(|_| std::io::Error::other("submission queue full"))
    };
    let cpu_start = cpu_time();
    let wall_start = Instant::now();
    for (slot, start) in started.iter_mut().enumerate() {
        *start = Instant::now();
        submit(&mut ring, slot, offsets.next())?;
    }
    let mut in_flight = depth as usize;
    let mut done: u64 = 0;
    let mut stopping = false;
    while in_flight > 0 {
        ring.submit_and_wait(1)?;
        let completed: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (slot, res) in completed {
            let slot = slot as usize;
            if res < 0 {
                return Err(std::io::Error::from_raw_os_error(-res));
            }
            if res as usize != io_bytes {
                return Err(std::io::Error::other(format!("short {op:?}: {res} bytes")));
            }
            hist.record(started[slot].elapsed().as_nanos().max(1) as u64).ok();
            done += 1;
            in_flight -= 1;
            if !stopping && wall_start.elapsed() >= duration {
                stopping = true;
            }
            if !stopping {
                started[slot] = Instant::now();
                submit(&mut ring, slot, offsets.next())?;
                in_flight += 1;
            }
        }
    }
    let wall = wall_start.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu_start).as_secs_f64();
    let name = format!("raw.{}.qd{depth}", if op == Op::Write { "write" } else { "read" });
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Row {
        name,
        iops: done as f64 / wall,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
        cpu_us_per_io: cpu * 1e6 / done.max(1) as f64,
    })
}

/// The data file for a run: `DIR/sepia-raw.dat`.
pub fn data_file(dir: &Path) -> PathBuf {
    dir.join("sepia-raw.dat")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_loop_completes_real_io_at_depth_1_and_8() {
        let dir = std::env::temp_dir().join(format!("sepia-raw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = data_file(&dir);
        preallocate(&path, 8 << 20).unwrap();
        for (op, depth) in [(Op::Write, 1), (Op::Read, 8)] {
            let row = run(&path, 8 << 20, op, depth, Duration::from_millis(200)).unwrap();
            assert!(row.iops > 0.0, "{row:?}");
            assert!(row.p50_us <= row.p99_us && row.p99_us <= row.p999_us, "{row:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
