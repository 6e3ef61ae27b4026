//! Fuzz `Codec::reconstruct` over random (k, m, matrix, kernel), lengths,
//! data and erasure lists (including invalid ones: out of range, duplicate,
//! too many). Valid patterns must rebuild the stripe exactly and agree with
//! the scalar kernel; invalid ones must return an error, never panic.
#![no_main]

use ec_simd::{Codec, Kernel, MatrixKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 6 {
        return;
    }
    let (head, body) = input.split_at(6);
    let k = 1 + head[0] as usize % 16;
    let m = 1 + head[1] as usize % 6;
    let kind = if head[2] & 1 == 0 { MatrixKind::Rs } else { MatrixKind::Cauchy };
    let supported = Kernel::supported();
    let kernel = supported[head[2] as usize / 2 % supported.len()];
    let len = head[3] as usize * 3 + head[4] as usize % 7;
    let n_erased = head[5] as usize % 10;
    let (erasure_bytes, data) = body.split_at(n_erased.min(body.len()));
    let erased: Vec<usize> = erasure_bytes.iter().map(|&b| b as usize % 24).collect();

    let codec = match Codec::with_kernel(k, m, kind, kernel) {
        Ok(c) => c,
        Err(_) => return, // unsafe rs parameters: refused, as they should be
    };
    let reference = Codec::with_kernel(k, m, kind, Kernel::Scalar).unwrap();
    let n = k + m;
    let mut stripe: Vec<Vec<u8>> = (0..n)
        .map(|i| (0..len).map(|b| data.get((i * len + b) % data.len().max(1)).copied().unwrap_or(b as u8)).collect())
        .collect();
    {
        let (d, p) = stripe.split_at_mut(k);
        let d: Vec<&[u8]> = d.iter().map(|b| &b[..]).collect();
        let mut p: Vec<&mut [u8]> = p.iter_mut().map(|b| &mut b[..]).collect();
        codec.encode(&d, &mut p).unwrap();
    }
    let mut damaged = stripe.clone();
    for &e in &erased {
        if let Some(c) = damaged.get_mut(e) {
            c.iter_mut().for_each(|b| *b ^= 0x5a);
        }
    }
    let mut scalar = damaged.clone();
    let mut shards: Vec<&mut [u8]> = damaged.iter_mut().map(|b| &mut b[..]).collect();
    let r = codec.reconstruct(&mut shards, &erased);
    let mut sshards: Vec<&mut [u8]> = scalar.iter_mut().map(|b| &mut b[..]).collect();
    let rs = reference.reconstruct(&mut sshards, &erased);
    assert_eq!(r.is_ok(), rs.is_ok());
    let mut uniq = erased.clone();
    uniq.sort_unstable();
    uniq.dedup();
    let valid = uniq.len() == erased.len() && erased.len() <= m && erased.iter().all(|&e| e < n);
    assert_eq!(r.is_ok(), valid, "{:?}", r);
    if valid {
        assert!(damaged == stripe, "rebuild differs");
        assert!(scalar == stripe, "scalar rebuild differs");
    }
});
