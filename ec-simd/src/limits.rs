//! Named bounds of the erasure coder.
//!
//! Parameters and files come from operators and from the network, so every
//! count and size is capped before memory is reserved or a loop runs.
#![allow(non_upper_case_globals)]

/// Total chunks per stripe (k + m): GF(2^8) has 255 non-zero elements, and
/// ISA-L's Cauchy construction needs distinct row and column labels below 256.
pub const chunks_max: usize = 255;
/// Decode tables kept per codec: one entry per erasure pattern. A cluster
/// sees few patterns at a time (the failed OSDs); 256 entries of at most
/// 255 x 255 coefficients (plus kernel tables) stay in the low megabytes.
pub const decode_cache_entries_max: usize = 256;
/// Chunk size accepted by `sepia-ec` (per stripe): the tool holds one stripe
/// of k + m chunks in memory, so 64 MiB x 255 chunks bounds its footprint.
pub const chunk_bytes_max: usize = 64 << 20;
/// One stripe (k + m chunks) held in memory by `sepia-ec`: chunk_bytes_max
/// alone would allow 255 x 64 MiB, so a hostile manifest could ask for 16 GiB.
pub const stripe_bytes_max: usize = 1 << 30;
/// Manifest size read by `sepia-ec decode`: a real one is a few KiB.
pub const manifest_bytes_max: u64 = 1 << 20;
/// Bytes of input `sepia-ec` encodes: u64 file sizes are fine, this only
/// rules out lengths whose stripe count would overflow arithmetic.
pub const input_bytes_max: u64 = 1 << 50;
/// Data chunks in the rs (Vandermonde) construction with exactly 4 parity
/// chunks: ISA-L documents it as invertible for every pattern up to k = 21.
pub const rs_k_max_for_m4: usize = 21;
/// Parity chunks in the rs construction for any k: 3 or fewer are always
/// invertible (ISA-L's "m - k <= 3").
pub const rs_m_max_any_k: usize = 3;
/// Parity chunks in the rs construction when k = 4 (ISA-L: "k = 4, m <= 25"
/// counting all rows, so 21 parity rows).
pub const rs_m_max_for_k4: usize = 21;
/// Parity chunks in the rs construction when k = 5 (ISA-L: "k = 5, m <= 10"
/// counting all rows, so 5 parity rows).
pub const rs_m_max_for_k5: usize = 5;
/// Data chunks for which the rs construction is safe with any parity count
/// (ISA-L: "k <= 3").
pub const rs_k_max_any_m: usize = 3;
/// Iterations of `sepia-ec bench` per measurement: bounds its run time.
pub const bench_iterations_max: u64 = 1 << 24;
