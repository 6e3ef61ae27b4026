//! The portable kernel: the reference every SIMD kernel must match.

use super::Job;
use crate::gf;

/// Computes bytes `start..len` of every output row.
///
/// # Safety
/// The job's pointers are valid as documented on `Tables::apply_raw`.
pub(crate) unsafe fn run(job: &Job<'_>, start: usize) {
    let t = job.t;
    let n = job.len - start;
    if n == 0 {
        return;
    }
    for r in 0..t.rows {
        let out = std::slice::from_raw_parts_mut(job.outs[r].add(start), n);
        if !job.accumulate {
            out.fill(0);
        }
        for j in 0..t.cols {
            let input = std::slice::from_raw_parts(job.ins[j].add(start), n);
            let c = t.coefs[r * t.cols + j];
            match c {
                0 => {}
                1 => out.iter_mut().zip(input).for_each(|(o, &i)| *o ^= i),
                _ => {
                    let table = &gf::MUL[c as usize];
                    out.iter_mut()
                        .zip(input)
                        .for_each(|(o, &i)| *o ^= table[i as usize]);
                }
            }
        }
    }
}
