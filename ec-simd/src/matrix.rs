//! Matrices over GF(2^8): ISA-L's generator constructions and inversion.
//!
//! Generators are (k+m) x k, row-major, rows 0..k the identity (systematic
//! code), rows k..k+m the parity coefficients:
//! - `rs` (ISA-L `gf_gen_rs_matrix`, Ceph `reed_sol_van`): parity row p holds
//!   g^0, g^1, ... g^(k-1) with g = 2^p. Not MDS for every (k, m); see
//!   [`rs_is_safe`] for ISA-L's documented safe ranges, which we enforce.
//! - `cauchy` (ISA-L `gf_gen_cauchy1_matrix`): row r, column j holds
//!   1 / (r XOR j). MDS for every k + m <= 255.

use crate::error::EcError;
use crate::gf;
use crate::limits;
use std::fmt;
use std::str::FromStr;

/// Which generator construction to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatrixKind {
    /// ISA-L `gf_gen_rs_matrix` (Vandermonde-like; Ceph `reed_sol_van`).
    Rs,
    /// ISA-L `gf_gen_cauchy1_matrix` (Ceph `cauchy`).
    Cauchy,
}

impl MatrixKind {
    /// The name used on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            MatrixKind::Rs => "rs",
            MatrixKind::Cauchy => "cauchy",
        }
    }
}

impl fmt::Display for MatrixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatrixKind {
    type Err = EcError;
    fn from_str(s: &str) -> Result<Self, EcError> {
        match s {
            "rs" | "reed_sol_van" | "vandermonde" => Ok(MatrixKind::Rs),
            "cauchy" | "cauchy1" => Ok(MatrixKind::Cauchy),
            _ => Err(EcError::UnknownName {
                what: "matrix",
                name: s.to_string(),
            }),
        }
    }
}

/// A dense row-major matrix over GF(2^8).
#[derive(Clone, PartialEq, Eq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

impl fmt::Debug for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Matrix {}x{}", self.rows, self.cols)?;
        for r in 0..self.rows {
            for b in self.row(r) {
                write!(f, "{b:02x} ")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl Matrix {
    /// All-zero matrix.
    pub fn zero(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows,
            cols,
            data: vec![0; rows * cols],
        }
    }

    /// n x n identity.
    pub fn identity(n: usize) -> Matrix {
        let mut m = Matrix::zero(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1;
        }
        m
    }

    /// Builds from row-major bytes; `None` if the length is not rows * cols.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<u8>) -> Option<Matrix> {
        (rows.checked_mul(cols)? == data.len()).then_some(Matrix { rows, cols, data })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row-major bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn get(&self, r: usize, c: usize) -> u8 {
        self.data[r * self.cols + c]
    }

    pub fn set(&mut self, r: usize, c: usize, v: u8) {
        self.data[r * self.cols + c] = v;
    }

    /// The matrix made of the given rows, in the given order.
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(rows.len() * self.cols);
        for &r in rows {
            data.extend_from_slice(self.row(r));
        }
        Matrix {
            rows: rows.len(),
            cols: self.cols,
            data,
        }
    }

    /// Matrix product `self * other`; `None` if the shapes do not fit.
    pub fn mul(&self, other: &Matrix) -> Option<Matrix> {
        if self.cols != other.rows {
            return None;
        }
        let mut out = Matrix::zero(self.rows, other.cols);
        for r in 0..self.rows {
            for i in 0..self.cols {
                let a = self.get(r, i);
                if a == 0 {
                    continue;
                }
                let mul_row = &gf::MUL[a as usize];
                for c in 0..other.cols {
                    out.data[r * other.cols + c] ^= mul_row[other.get(i, c) as usize];
                }
            }
        }
        Some(out)
    }

    /// Inverse by Gauss-Jordan elimination with row swaps (the algorithm of
    /// ISA-L's `gf_invert_matrix`; the inverse is unique, so any correct
    /// method gives ISA-L's bytes). `None` if singular or not square.
    pub fn invert(&self) -> Option<Matrix> {
        if self.rows != self.cols {
            return None;
        }
        let n = self.rows;
        let mut a = self.clone();
        let mut inv = Matrix::identity(n);
        for i in 0..n {
            if a.get(i, i) == 0 {
                let j = (i + 1..n).find(|&j| a.get(j, i) != 0)?;
                for c in 0..n {
                    a.data.swap(i * n + c, j * n + c);
                    inv.data.swap(i * n + c, j * n + c);
                }
            }
            let pivot_inv = gf::inv(a.get(i, i));
            for c in 0..n {
                a.data[i * n + c] = gf::mul(a.data[i * n + c], pivot_inv);
                inv.data[i * n + c] = gf::mul(inv.data[i * n + c], pivot_inv);
            }
            for j in 0..n {
                if j == i {
                    continue;
                }
                let f = a.get(j, i);
                if f == 0 {
                    continue;
                }
                let mul_row = &gf::MUL[f as usize];
                for c in 0..n {
                    a.data[j * n + c] ^= mul_row[a.data[i * n + c] as usize];
                    inv.data[j * n + c] ^= mul_row[inv.data[i * n + c] as usize];
                }
            }
        }
        Some(inv)
    }
}

/// Checks the shape every construction shares: k >= 1, m >= 1, k + m <= 255.
pub fn check_params(k: usize, m: usize) -> Result<(), EcError> {
    if k == 0 {
        return Err(EcError::InvalidParams {
            k,
            m,
            reason: "k must be at least 1",
        });
    }
    if m == 0 {
        return Err(EcError::InvalidParams {
            k,
            m,
            reason: "m must be at least 1",
        });
    }
    if k.saturating_add(m) > limits::chunks_max {
        return Err(EcError::InvalidParams {
            k,
            m,
            reason: "k + m must be at most 255",
        });
    }
    Ok(())
}

/// ISA-L's documented safe ranges for `gf_gen_rs_matrix` (its header lists
/// them in terms of total rows; here m counts parity rows): every erasure
/// pattern of at most m chunks is decodable when one of these holds.
pub fn rs_is_safe(k: usize, m: usize) -> bool {
    k <= limits::rs_k_max_any_m
        || m <= limits::rs_m_max_any_k
        || (m == 4 && k <= limits::rs_k_max_for_m4)
        || (k == 4 && m <= limits::rs_m_max_for_k4)
        || (k == 5 && m <= limits::rs_m_max_for_k5)
}

/// ISA-L `gf_gen_rs_matrix` without the safety check (for tests and for
/// comparing with ISA-L outside the safe range).
pub fn rs_matrix_unchecked(k: usize, m: usize) -> Matrix {
    let n = k + m;
    let mut a = Matrix::zero(n, k);
    for i in 0..k {
        a.set(i, i, 1);
    }
    let mut gen = 1u8;
    for r in k..n {
        let mut p = 1u8;
        for j in 0..k {
            a.set(r, j, p);
            p = gf::mul(p, gen);
        }
        gen = gf::mul(gen, 2);
    }
    a
}

/// ISA-L `gf_gen_rs_matrix(a, k + m, k)`, refused outside the safe ranges.
pub fn rs_matrix(k: usize, m: usize) -> Result<Matrix, EcError> {
    check_params(k, m)?;
    if !rs_is_safe(k, m) {
        return Err(EcError::UnsafeRs { k, m });
    }
    Ok(rs_matrix_unchecked(k, m))
}

/// ISA-L `gf_gen_cauchy1_matrix(a, k + m, k)`.
pub fn cauchy1_matrix(k: usize, m: usize) -> Result<Matrix, EcError> {
    check_params(k, m)?;
    let n = k + m;
    let mut a = Matrix::zero(n, k);
    for i in 0..k {
        a.set(i, i, 1);
    }
    for r in k..n {
        for j in 0..k {
            // r >= k > j, so r ^ j != 0, and both are < 256.
            a.set(r, j, gf::inv((r ^ j) as u8));
        }
    }
    Ok(a)
}

/// The generator for `kind`.
pub fn generator(kind: MatrixKind, k: usize, m: usize) -> Result<Matrix, EcError> {
    match kind {
        MatrixKind::Rs => rs_matrix(k, m),
        MatrixKind::Cauchy => cauchy1_matrix(k, m),
    }
}

/// Whether every square submatrix of the parity block (rows k..k+m) is
/// invertible, i.e. whether the systematic code is MDS. Exhaustive, so only
/// for tests on modest sizes; `max_size` caps the submatrix order checked.
pub fn parity_block_is_mds(gen: &Matrix, k: usize, max_size: usize) -> bool {
    let m = gen.rows() - k;
    let top = max_size.min(m).min(k);
    for s in 1..=top {
        let mut rows: Vec<usize> = (0..s).collect();
        loop {
            let mut cols: Vec<usize> = (0..s).collect();
            loop {
                let mut sub = Matrix::zero(s, s);
                for (a, &r) in rows.iter().enumerate() {
                    for (b, &c) in cols.iter().enumerate() {
                        sub.set(a, b, gen.get(k + r, c));
                    }
                }
                if sub.invert().is_none() {
                    return false;
                }
                if !next_combination(&mut cols, k) {
                    break;
                }
            }
            if !next_combination(&mut rows, m) {
                break;
            }
        }
    }
    true
}

/// Advances `c` (strictly increasing indices below n) to the next
/// combination in lexicographic order; false after the last one.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let s = c.len();
    let mut i = s;
    while i > 0 {
        i -= 1;
        if c[i] < n - s + i {
            c[i] += 1;
            for j in i + 1..s {
                c[j] = c[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rs_rows_are_powers() {
        let a = rs_matrix(4, 3).unwrap();
        assert_eq!(a.row(4), &[1, 1, 1, 1]);
        assert_eq!(a.row(5), &[1, 2, 4, 8]);
        assert_eq!(a.row(6), &[1, 4, 16, 64]);
    }

    #[test]
    fn invert_roundtrip() {
        let a = cauchy1_matrix(6, 4).unwrap();
        let sub = a.select_rows(&[1, 3, 6, 7, 8, 9]);
        let inv = sub.invert().unwrap();
        assert_eq!(sub.mul(&inv).unwrap(), Matrix::identity(6));
        assert_eq!(inv.mul(&sub).unwrap(), Matrix::identity(6));
        let singular = Matrix::from_vec(2, 2, vec![1, 2, 1, 2]).unwrap();
        assert!(singular.invert().is_none());
    }

    #[test]
    fn params_are_checked() {
        assert!(matches!(
            rs_matrix(0, 2),
            Err(EcError::InvalidParams { .. })
        ));
        assert!(matches!(
            cauchy1_matrix(4, 0),
            Err(EcError::InvalidParams { .. })
        ));
        assert!(matches!(
            cauchy1_matrix(200, 56),
            Err(EcError::InvalidParams { .. })
        ));
        assert!(cauchy1_matrix(200, 55).is_ok());
        assert!(matches!(
            rs_matrix(22, 4),
            Err(EcError::UnsafeRs { k: 22, m: 4 })
        ));
        assert!(matches!(rs_matrix(6, 5), Err(EcError::UnsafeRs { .. })));
        assert!(rs_matrix(21, 4).is_ok());
        assert!(rs_matrix(200, 3).is_ok());
        let msg = rs_matrix(22, 4).unwrap_err().to_string();
        assert!(msg.contains("k=22, m=4") && msg.contains("cauchy"), "{msg}");
    }

    #[test]
    fn safe_rs_ranges_are_mds() {
        // ISA-L's documented ranges, checked exhaustively at their edges.
        for k in 1..=limits::rs_k_max_for_m4 {
            assert!(
                parity_block_is_mds(&rs_matrix(k, 4).unwrap(), k, 4),
                "k={k} m=4"
            );
        }
        for m in 1..=limits::rs_m_max_for_k4 {
            assert!(
                parity_block_is_mds(&rs_matrix(4, m).unwrap(), 4, 4),
                "k=4 m={m}"
            );
        }
        for m in 1..=limits::rs_m_max_for_k5 {
            assert!(
                parity_block_is_mds(&rs_matrix(5, m).unwrap(), 5, 5),
                "k=5 m={m}"
            );
        }
        for k in [10, 32, 64] {
            assert!(
                parity_block_is_mds(&rs_matrix(k, 3).unwrap(), k, 3),
                "k={k} m=3"
            );
        }
        for m in [10, 40] {
            assert!(
                parity_block_is_mds(&rs_matrix(3, m).unwrap(), 3, 3),
                "k=3 m={m}"
            );
        }
    }

    #[test]
    fn unsafe_rs_really_is_unsafe_somewhere() {
        // Outside the ranges the construction does lose MDS for some
        // (k, m); this is why rs_matrix refuses them.
        let bad = (6..=12)
            .flat_map(|k| (5..=8).map(move |m| (k, m)))
            .find(|&(k, m)| !parity_block_is_mds(&rs_matrix_unchecked(k, m), k, 3));
        assert!(bad.is_some());
    }

    #[test]
    fn cauchy_is_mds() {
        for (k, m) in [(4, 2), (8, 3), (10, 4), (12, 4), (6, 6)] {
            assert!(parity_block_is_mds(&cauchy1_matrix(k, m).unwrap(), k, 4));
        }
    }
}
