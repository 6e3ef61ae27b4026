//! Typed errors for everything a caller (or a file) can get wrong.

use thiserror::Error;

/// Errors of the erasure coder; every one names what was wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EcError {
    /// k or m out of range (k >= 1, m >= 1, k + m <= 255).
    #[error("invalid code parameters k={k}, m={m}: {reason}")]
    InvalidParams {
        k: usize,
        m: usize,
        reason: &'static str,
    },
    /// The rs (Vandermonde) matrix is not guaranteed invertible for every
    /// erasure pattern with these parameters.
    #[error(
        "k={k}, m={m} is outside the safe range of the rs (Vandermonde) matrix \
         (k <= 3; or m <= 3; or m = 4 with k <= 21; or k = 4 with m <= 21; or k = 5 with m <= 5): \
         some erasure patterns could not be decoded; use the cauchy matrix"
    )]
    UnsafeRs { k: usize, m: usize },
    /// Wrong number of chunk buffers.
    #[error("expected {expected} {what} chunks, got {got}")]
    ChunkCount {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    /// A chunk buffer's length differs from the first one's.
    #[error("chunk {index} is {got} bytes, expected {expected}")]
    ChunkLength {
        index: usize,
        expected: usize,
        got: usize,
    },
    /// An erasure index outside the stripe.
    #[error("erasure index {index} out of range (stripe has {n} chunks)")]
    ErasureIndex { index: usize, n: usize },
    /// The same chunk listed twice as erased.
    #[error("chunk {index} listed twice as erased")]
    DuplicateErasure { index: usize },
    /// More chunks lost than the code can rebuild.
    #[error("{} chunks lost ({erased:?}), at most {max} can be rebuilt", erased.len())]
    TooManyErasures { erased: Vec<usize>, max: usize },
    /// A data index outside 0..k (incremental update).
    #[error("data chunk index {index} out of range (k = {k})")]
    DataIndex { index: usize, k: usize },
    /// The survivors' matrix has no inverse (cannot happen inside the safe
    /// ranges; reported rather than trusted).
    #[error("decode matrix for erasures {erased:?} is singular")]
    Singular { erased: Vec<usize> },
    /// A kernel was requested that this CPU (or build) cannot run.
    #[error("kernel {0} is not supported on this CPU")]
    KernelUnsupported(&'static str),
    /// An ISA-L comparison was asked of a build without the `isal` feature.
    #[error("{0} needs a build with the cargo feature `isal`")]
    IsalNotBuilt(&'static str),
    /// An unknown kernel or matrix name.
    #[error("unknown {what} name {name:?}")]
    UnknownName { what: &'static str, name: String },
}
