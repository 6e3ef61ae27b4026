//! Dot-product kernels: `out[r] = XOR over j of c[r][j] * in[j]`, byte-wise
//! over equal-length buffers, optionally XORed into the existing `out[r]`.
//!
//! Encoding, decoding and parity update are all this one operation with
//! different coefficient matrices. [`Tables`] holds a coefficient matrix
//! prepared for one [`Kernel`]; kernels are chosen at run time from what the
//! CPU supports ([`Kernel::best`]).
//!
//! Invariants: every kernel writes exactly the bytes of [`Kernel::Scalar`]
//! for any lengths and alignments (SIMD kernels run whole vectors and finish
//! the tail with the scalar code). Outputs never alias inputs or each other
//! (the safe callers in `codec` guarantee this through borrows).

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::error::EcError;
use crate::gf;
use crate::matrix::Matrix;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// A multiply-accumulate implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Portable: one 256-byte lookup table per coefficient.
    Scalar,
    /// SSSE3 `pshufb` on 16-byte vectors with 4-bit (nibble) tables.
    Ssse3,
    /// AVX2 `vpshufb` on 32-byte vectors with nibble tables.
    Avx2,
    /// GFNI `vgf2p8affineqb` on 32-byte vectors (AVX2 CPUs with GFNI).
    GfniAvx2,
    /// GFNI `vgf2p8affineqb` on 64-byte vectors with AVX-512.
    GfniAvx512,
}

impl Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Kernel; 5] = [
        Kernel::Scalar,
        Kernel::Ssse3,
        Kernel::Avx2,
        Kernel::GfniAvx2,
        Kernel::GfniAvx512,
    ];

    /// The name used on the command line and in `SEPIA_EC_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Ssse3 => "ssse3",
            Kernel::Avx2 => "avx2",
            Kernel::GfniAvx2 => "gfni-avx2",
            Kernel::GfniAvx512 => "gfni-avx512",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::GfniAvx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::GfniAvx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU supports, slowest first.
    pub fn supported() -> Vec<Kernel> {
        Kernel::ALL
            .into_iter()
            .filter(|k| k.is_supported())
            .collect()
    }

    /// The fastest supported kernel, detected once. `SEPIA_EC_KERNEL=<name>`
    /// overrides it when that kernel is supported (for debugging and
    /// benchmarking); an unknown or unsupported name is ignored.
    pub fn best() -> Kernel {
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            if let Ok(name) = std::env::var("SEPIA_EC_KERNEL") {
                if let Ok(k) = name.parse::<Kernel>() {
                    if k.is_supported() {
                        return k;
                    }
                }
            }
            Kernel::ALL
                .into_iter()
                .rev()
                .find(|k| k.is_supported())
                .unwrap_or(Kernel::Scalar)
        })
    }

    /// Bytes of prepared table per coefficient.
    fn coef_bytes(self) -> usize {
        match self {
            Kernel::Scalar => 1,
            Kernel::Ssse3 => 32,
            Kernel::Avx2 => 64,
            Kernel::GfniAvx2 => 32,
            Kernel::GfniAvx512 => 8,
        }
    }

    /// Appends the prepared form of coefficient `c`.
    fn prepare(self, c: u8, out: &mut Vec<u8>) {
        match self {
            Kernel::Scalar => out.push(c),
            Kernel::Ssse3 => {
                let (lo, hi) = gf::nibble_tables(c);
                out.extend_from_slice(&lo);
                out.extend_from_slice(&hi);
            }
            Kernel::Avx2 => {
                // Each 16-byte table twice: vpshufb looks up per 128-bit lane.
                let (lo, hi) = gf::nibble_tables(c);
                out.extend_from_slice(&lo);
                out.extend_from_slice(&lo);
                out.extend_from_slice(&hi);
                out.extend_from_slice(&hi);
            }
            Kernel::GfniAvx2 => {
                // Full 32-byte operand so the VEX instruction can read it
                // straight from memory.
                let q = gf::gfni_matrix(c).to_le_bytes();
                for _ in 0..4 {
                    out.extend_from_slice(&q);
                }
            }
            Kernel::GfniAvx512 => out.extend_from_slice(&gf::gfni_matrix(c).to_le_bytes()),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernel {
    type Err = EcError;
    fn from_str(s: &str) -> Result<Self, EcError> {
        Kernel::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| EcError::UnknownName {
                what: "kernel",
                name: s.to_string(),
            })
    }
}

/// A coefficient matrix (rows = outputs, cols = inputs) prepared for one
/// kernel.
#[derive(Clone)]
pub struct Tables {
    kernel: Kernel,
    rows: usize,
    cols: usize,
    coefs: Vec<u8>,
    prepared: Vec<u8>,
    /// A row whose coefficients are all 1 (rs parity 0): computed with plain
    /// XOR instead of multiplications. At most one is treated this way.
    ones_row: Option<usize>,
}

impl fmt::Debug for Tables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tables")
            .field("kernel", &self.kernel)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("ones_row", &self.ones_row)
            .finish()
    }
}

impl Tables {
    /// Prepares `m` (rows = outputs, cols = inputs) for `kernel`.
    pub fn new(kernel: Kernel, m: &Matrix) -> Tables {
        let (rows, cols) = (m.rows(), m.cols());
        let mut prepared = Vec::with_capacity(rows * cols * kernel.coef_bytes());
        for &c in m.as_bytes() {
            kernel.prepare(c, &mut prepared);
        }
        let ones_row = (0..rows).find(|&r| cols > 0 && m.row(r).iter().all(|&c| c == 1));
        Tables {
            kernel,
            rows,
            cols,
            coefs: m.as_bytes().to_vec(),
            prepared,
            ones_row,
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The coefficients, row-major.
    pub fn coefs(&self) -> &[u8] {
        &self.coefs
    }

    /// Computes every output row over `len` bytes.
    ///
    /// # Safety
    /// `ins` has `cols` pointers and `outs` has `rows` pointers, each valid
    /// for `len` bytes (reads, resp. reads and writes); no output overlaps
    /// an input or another output; the kernel is supported by this CPU.
    pub unsafe fn apply_raw(
        &self,
        ins: &[*const u8],
        outs: &[*mut u8],
        len: usize,
        accumulate: bool,
    ) {
        assert!(ins.len() == self.cols && outs.len() == self.rows);
        if len == 0 || self.rows == 0 {
            return;
        }
        let job = Job {
            t: self,
            ins,
            outs,
            len,
            accumulate,
        };
        match self.kernel {
            Kernel::Scalar => scalar::run(&job, 0),
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => x86::run_ssse3(&job),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::run_avx2(&job),
            #[cfg(target_arch = "x86_64")]
            Kernel::GfniAvx2 => x86::run_gfni_avx2(&job),
            #[cfg(target_arch = "x86_64")]
            Kernel::GfniAvx512 => x86::run_gfni_avx512(&job),
            #[cfg(not(target_arch = "x86_64"))]
            _ => scalar::run(&job, 0),
        }
    }

    /// Safe form of [`Tables::apply_raw`] over slices. Panics if the counts
    /// or lengths disagree: callers validate untrusted input before this.
    pub fn apply(&self, ins: &[&[u8]], outs: &mut [&mut [u8]], accumulate: bool) {
        assert!(ins.len() == self.cols && outs.len() == self.rows);
        let len = outs.first().map_or(0, |o| o.len());
        assert!(ins.iter().all(|s| s.len() == len) && outs.iter().all(|s| s.len() == len));
        let mut ip = PtrArray::<*const u8>::new();
        let mut op = PtrArray::<*mut u8>::new();
        for s in ins {
            ip.push(s.as_ptr());
        }
        for s in outs.iter_mut() {
            op.push(s.as_mut_ptr());
        }
        // SAFETY: lengths checked above; `outs` are distinct &mut borrows so
        // they cannot overlap each other or the shared `ins`; the kernel was
        // checked as supported when the tables' owner was built.
        unsafe { self.apply_raw(ip.as_slice(), op.as_slice(), len, accumulate) }
    }
}

/// Up to `chunks_max` pointers on the stack, without zeroing the unused
/// slots (a 4 KiB chunk encodes in ~200 ns; clearing two 2 KiB arrays per
/// call would cost a sizeable share of that).
pub(crate) struct PtrArray<P: Copy> {
    buf: [std::mem::MaybeUninit<P>; crate::limits::chunks_max],
    len: usize,
}

impl<P: Copy> PtrArray<P> {
    #[inline]
    pub fn new() -> Self {
        PtrArray {
            buf: [std::mem::MaybeUninit::uninit(); crate::limits::chunks_max],
            len: 0,
        }
    }

    /// Appends; panics past `chunks_max` (callers bound counts by k + m).
    #[inline]
    pub fn push(&mut self, p: P) {
        self.buf[self.len] = std::mem::MaybeUninit::new(p);
        self.len += 1;
    }

    #[inline]
    pub fn as_slice(&self) -> &[P] {
        // SAFETY: the first `len` slots were written by `push`.
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr() as *const P, self.len) }
    }
}

/// One call's arguments, shared by the kernel drivers.
pub(crate) struct Job<'a> {
    pub t: &'a Tables,
    pub ins: &'a [*const u8],
    pub outs: &'a [*mut u8],
    pub len: usize,
    pub accumulate: bool,
}

impl Job<'_> {
    /// Prepared coefficient (r, j).
    #[inline(always)]
    pub fn coef_ptr(&self, r: usize, j: usize) -> *const u8 {
        let cb = self.t.kernel.coef_bytes();
        // SAFETY: r < rows and j < cols by the callers' loops.
        unsafe { self.t.prepared.as_ptr().add((r * self.t.cols + j) * cb) }
    }
}
