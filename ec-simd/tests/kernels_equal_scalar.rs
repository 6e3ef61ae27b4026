//! Property tests: every SIMD kernel produces the scalar kernel's bytes
//! over random shapes, coefficients, lengths, buffer offsets and erasure
//! patterns; decode inverts encode; update equals re-encoding.

use ec_simd::kernel::Tables;
use ec_simd::{Codec, Kernel, Matrix, MatrixKind};
use proptest::prelude::*;

fn simd_kernels() -> Vec<Kernel> {
    Kernel::supported()
        .into_iter()
        .filter(|&k| k != Kernel::Scalar)
        .collect()
}

/// `n` buffers of `len` bytes starting at byte `off` of a larger allocation
/// (to exercise misaligned loads and stores).
fn buffers(seed: &[u8], n: usize, len: usize, off: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            (0..off + len)
                .map(|b| seed[(b * 7 + i * 131) % seed.len()] ^ (b as u8).wrapping_mul(i as u8 | 1))
                .collect()
        })
        .collect()
}

fn apply(t: &Tables, ins: &[Vec<u8>], outs: &mut [Vec<u8>], off: usize, acc: bool) {
    let is: Vec<&[u8]> = ins.iter().map(|b| &b[off..]).collect();
    let mut os: Vec<&mut [u8]> = outs.iter_mut().map(|b| &mut b[off..]).collect();
    t.apply(&is, &mut os, acc);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn dot_product_kernels_equal_scalar(
        rows in 1usize..20,
        cols in 1usize..24,
        len in 0usize..700,
        off in 0usize..70,
        coefs in proptest::collection::vec(any::<u8>(), 20 * 24),
        special in 0u8..4,
        seed in proptest::collection::vec(any::<u8>(), 1..64),
        accumulate in any::<bool>(),
    ) {
        let mut data = coefs[..rows * cols].to_vec();
        // Exercise the XOR-only row, zero and identity coefficients.
        match special {
            1 => data[..cols].fill(1),
            2 => data[(rows - 1) * cols..].fill(0),
            3 => { data[..cols].fill(1); if rows > 1 { data[cols..2 * cols].fill(1); } }
            _ => {}
        }
        let m = Matrix::from_vec(rows, cols, data).unwrap();
        let ins = buffers(&seed, cols, len, off);
        let init = buffers(&seed[..seed.len() / 2 + 1], rows, len, off);
        let mut want = init.clone();
        apply(&Tables::new(Kernel::Scalar, &m), &ins, &mut want, off, accumulate);
        for kernel in simd_kernels() {
            let mut got = init.clone();
            apply(&Tables::new(kernel, &m), &ins, &mut got, off, accumulate);
            prop_assert!(got == want, "kernel {} rows={} cols={} len={} off={}", kernel, rows, cols, len, off);
        }
    }

    #[test]
    fn codec_roundtrip_every_kernel(
        k in 1usize..16,
        m in 1usize..7,
        cauchy in any::<bool>(),
        len in 0usize..600,
        off in 0usize..64,
        seed in proptest::collection::vec(any::<u8>(), 1..64),
        pick in proptest::collection::vec(any::<u32>(), 8),
        data_only in any::<bool>(),
    ) {
        let kind = if cauchy || !ec_simd::matrix::rs_is_safe(k, m) { MatrixKind::Cauchy } else { MatrixKind::Rs };
        let n = k + m;
        let mut stripe = buffers(&seed, n, len, off);
        // Random erasure pattern of 0..=m distinct chunks.
        let mut idx: Vec<usize> = (0..n).collect();
        for (i, p) in pick.iter().enumerate().take(n.min(8)) {
            idx.swap(i, i + (*p as usize) % (n - i));
        }
        let count = pick[0] as usize % (m + 1);
        let erased: Vec<usize> = idx[..count].to_vec();

        let reference = Codec::with_kernel(k, m, kind, Kernel::Scalar).unwrap();
        {
            let (d, p) = stripe.split_at_mut(k);
            let d: Vec<&[u8]> = d.iter().map(|b| &b[off..]).collect();
            let mut p: Vec<&mut [u8]> = p.iter_mut().map(|b| &mut b[off..]).collect();
            reference.encode(&d, &mut p).unwrap();
        }
        for kernel in Kernel::supported() {
            let codec = Codec::with_kernel(k, m, kind, kernel).unwrap();
            let mut enc = stripe.clone();
            for b in enc[k..].iter_mut() { b[off..].fill(0xee); }
            {
                let (d, p) = enc.split_at_mut(k);
                let d: Vec<&[u8]> = d.iter().map(|b| &b[off..]).collect();
                let mut p: Vec<&mut [u8]> = p.iter_mut().map(|b| &mut b[off..]).collect();
                codec.encode(&d, &mut p).unwrap();
            }
            prop_assert!(enc == stripe, "encode differs: kernel {}", kernel);

            let mut damaged = stripe.clone();
            for &e in &erased { damaged[e][off..].iter_mut().for_each(|b| *b = !*b); }
            let mut shards: Vec<&mut [u8]> = damaged.iter_mut().map(|b| &mut b[off..]).collect();
            if data_only {
                codec.reconstruct_data(&mut shards, &erased).unwrap();
                for i in 0..n {
                    if i < k || !erased.contains(&i) {
                        prop_assert!(damaged[i] == stripe[i], "chunk {} not rebuilt: kernel {} erased {:?}", i, kernel, erased);
                    }
                }
            } else {
                codec.reconstruct(&mut shards, &erased).unwrap();
                prop_assert!(damaged == stripe, "rebuild differs: kernel {} erased {:?}", kernel, erased);
            }
        }
    }

    #[test]
    fn update_equals_reencode(
        k in 1usize..12,
        m in 1usize..5,
        len in 0usize..500,
        which in any::<usize>(),
        seed in proptest::collection::vec(any::<u8>(), 1..64),
        seed2 in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let j = which % k;
        for kernel in Kernel::supported() {
            let codec = Codec::with_kernel(k, m, MatrixKind::Cauchy, kernel).unwrap();
            let data = buffers(&seed, k, len, 0);
            let mut parity = vec![vec![0u8; len]; m];
            {
                let d: Vec<&[u8]> = data.iter().map(|b| &b[..]).collect();
                let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|b| &mut b[..]).collect();
                codec.encode(&d, &mut p).unwrap();
            }
            let new = buffers(&seed2, 1, len, 0).pop().unwrap();
            {
                let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|b| &mut b[..]).collect();
                codec.update(j, &data[j], &new, &mut p).unwrap();
            }
            let mut data2 = data.clone();
            data2[j] = new;
            let mut want = vec![vec![0u8; len]; m];
            {
                let d: Vec<&[u8]> = data2.iter().map(|b| &b[..]).collect();
                let mut p: Vec<&mut [u8]> = want.iter_mut().map(|b| &mut b[..]).collect();
                codec.encode(&d, &mut p).unwrap();
            }
            prop_assert!(parity == want, "update differs: kernel {}", kernel);
        }
    }
}

#[test]
fn all_erasure_patterns_of_4_plus_2_and_10_plus_4() {
    for (k, m) in [(4, 2), (10, 4)] {
        for kind in [MatrixKind::Rs, MatrixKind::Cauchy] {
            let codec = Codec::new(k, m, kind).unwrap();
            let n = k + m;
            let len = 192 + 5;
            let mut stripe: Vec<Vec<u8>> = (0..n)
                .map(|i| (0..len).map(|b| (b * 13 + i * 101) as u8).collect())
                .collect();
            {
                let (d, p) = stripe.split_at_mut(k);
                let d: Vec<&[u8]> = d.iter().map(|b| &b[..]).collect();
                let mut p: Vec<&mut [u8]> = p.iter_mut().map(|b| &mut b[..]).collect();
                codec.encode(&d, &mut p).unwrap();
            }
            for mask in 0u32..(1 << n) {
                if mask.count_ones() as usize > m {
                    continue;
                }
                let erased: Vec<usize> = (0..n).filter(|i| mask >> i & 1 != 0).collect();
                let mut damaged = stripe.clone();
                for &e in &erased {
                    damaged[e].fill(0);
                }
                let mut shards: Vec<&mut [u8]> = damaged.iter_mut().map(|b| &mut b[..]).collect();
                codec.reconstruct(&mut shards, &erased).unwrap();
                assert!(damaged == stripe, "k={k} m={m} {kind} erased {erased:?}");
            }
        }
    }
}
