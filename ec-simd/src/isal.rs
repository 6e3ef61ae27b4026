//! Intel ISA-L, for cross-checks and side-by-side benchmarks (feature
//! `isal`, linking Debian's `libisal`).
//!
//! Matrix generation and inversion go through the `isa-l` crate. The coding
//! call uses `libisal-sys` directly with pointer arrays built once, because
//! the `isa-l` crate's `ec_encode_data` allocates two vectors per call,
//! which would bias small-chunk benchmarks against ISA-L.

use std::os::raw::c_int;

/// ISA-L `gf_mul`.
pub fn gf_mul(a: u8, b: u8) -> u8 {
    isa_l::gf_mul(a, b)
}

/// ISA-L `gf_inv`.
pub fn gf_inv(a: u8) -> u8 {
    isa_l::gf_inv(a)
}

/// ISA-L `gf_gen_rs_matrix(a, k + m, k)`: (k + m) x k, row-major.
pub fn gen_rs_matrix(k: usize, m: usize) -> Vec<u8> {
    isa_l::gf_gen_rs_matrix(k, k + m)
}

/// ISA-L `gf_gen_cauchy1_matrix(a, k + m, k)`.
pub fn gen_cauchy1_matrix(k: usize, m: usize) -> Vec<u8> {
    isa_l::gf_gen_cauchy1_matrix(k, k + m)
}

/// ISA-L `gf_invert_matrix` of a square row-major matrix.
pub fn invert_matrix(a: &[u8]) -> Option<Vec<u8>> {
    isa_l::gf_invert_matrix(a.to_vec())
}

/// ISA-L's expanded tables for a `rows x k` coefficient matrix.
pub struct IsalTables {
    k: usize,
    rows: usize,
    tables: Vec<u8>,
}

impl IsalTables {
    /// `ec_init_tables(k, rows, coefs)`; `coefs` is rows x k, row-major.
    pub fn new(k: usize, rows: usize, coefs: &[u8]) -> IsalTables {
        assert_eq!(coefs.len(), k * rows);
        let mut tables = vec![0u8; 32 * k * rows];
        isa_l::ec_init_tables(k, rows, coefs, &mut tables[..]);
        IsalTables { k, rows, tables }
    }

    /// `ec_encode_data(len, k, rows, tables, ins, outs)`. Panics on
    /// mismatched counts or lengths (test and bench code only).
    pub fn apply(&self, ins: &[&[u8]], outs: &mut [&mut [u8]]) {
        assert!(ins.len() == self.k && outs.len() == self.rows);
        let len = outs.first().map_or(0, |o| o.len());
        assert!(ins.iter().all(|s| s.len() == len) && outs.iter().all(|s| s.len() == len));
        let len = c_int::try_from(len).expect("ISA-L takes an int length");
        let mut ip = [std::ptr::null::<u8>(); 256];
        let mut op = [std::ptr::null_mut::<u8>(); 256];
        for (p, s) in ip.iter_mut().zip(ins) {
            *p = s.as_ptr();
        }
        for (p, s) in op.iter_mut().zip(outs.iter_mut()) {
            *p = s.as_mut_ptr();
        }
        // SAFETY: k input and `rows` output pointers, each valid for `len`
        // bytes, outputs distinct &mut borrows; tables sized 32*k*rows.
        unsafe {
            libisal_sys::ec_encode_data(
                len,
                self.k as c_int,
                self.rows as c_int,
                self.tables.as_ptr(),
                ip.as_ptr(),
                op.as_mut_ptr(),
            );
        }
    }
}
