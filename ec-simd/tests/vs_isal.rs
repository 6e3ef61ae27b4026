//! Direct cross-checks against ISA-L on random inputs (feature `isal`):
//! field ops, both matrix constructions (inside and outside rs's safe
//! range), encode output and decode matrices for random erasures.
#![cfg(feature = "isal")]

use ec_simd::isal::{self, IsalTables};
use ec_simd::matrix::rs_matrix_unchecked;
use ec_simd::{gf, Codec, Kernel, MatrixKind};
use proptest::prelude::*;

#[test]
fn field_matches_isal() {
    for a in 0..=255u8 {
        assert_eq!(gf::inv(a), isal::gf_inv(a), "inv {a}");
        for b in 0..=255u8 {
            assert_eq!(gf::mul(a, b), isal::gf_mul(a, b), "mul {a} {b}");
        }
    }
}

#[test]
fn matrices_match_isal() {
    for k in 1..=32 {
        for m in 1..=12 {
            if k + m > 255 {
                continue;
            }
            let ours = rs_matrix_unchecked(k, m);
            assert_eq!(
                ours.as_bytes(),
                &isal::gen_rs_matrix(k, m)[..],
                "rs k={k} m={m}"
            );
            let ours = ec_simd::matrix::cauchy1_matrix(k, m).unwrap();
            assert_eq!(
                ours.as_bytes(),
                &isal::gen_cauchy1_matrix(k, m)[..],
                "cauchy k={k} m={m}"
            );
        }
    }
    let ours = ec_simd::matrix::cauchy1_matrix(200, 55).unwrap();
    assert_eq!(ours.as_bytes(), &isal::gen_cauchy1_matrix(200, 55)[..]);
}

fn data(k: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    (0..k)
        .map(|_| {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn encode_and_decode_match_isal(
        k in 1usize..20,
        m in 1usize..6,
        cauchy in any::<bool>(),
        len in 1usize..3000,
        seed in any::<u64>(),
        pick in proptest::collection::vec(any::<u32>(), 6),
    ) {
        let kind = if cauchy || !ec_simd::matrix::rs_is_safe(k, m) { MatrixKind::Cauchy } else { MatrixKind::Rs };
        let n = k + m;
        let d = data(k, len, seed);
        let dr: Vec<&[u8]> = d.iter().map(|b| &b[..]).collect();
        let gen = ec_simd::matrix::generator(kind, k, m).unwrap();
        let mut want = vec![vec![0u8; len]; m];
        {
            let mut w: Vec<&mut [u8]> = want.iter_mut().map(|b| &mut b[..]).collect();
            IsalTables::new(k, m, &gen.as_bytes()[k * k..]).apply(&dr, &mut w);
        }
        // Random erasures: up to m distinct chunks.
        let mut idx: Vec<usize> = (0..n).collect();
        for (i, p) in pick.iter().enumerate().take(n.min(6)) {
            idx.swap(i, i + (*p as usize) % (n - i));
        }
        let mut erased: Vec<usize> = idx[..1 + pick[0] as usize % m].to_vec();
        erased.sort_unstable();
        for kernel in Kernel::supported() {
            let codec = Codec::with_kernel(k, m, kind, kernel).unwrap();
            let mut got = vec![vec![0u8; len]; m];
            {
                let mut g: Vec<&mut [u8]> = got.iter_mut().map(|b| &mut b[..]).collect();
                codec.encode(&dr, &mut g).unwrap();
            }
            prop_assert!(got == want, "encode differs from ISA-L: kernel {} k={} m={} {}", kernel, k, m, kind);

            // ISA-L decode: invert the survivors' rows, take the wanted rows
            // (parity rows multiplied through), and run ec_encode_data.
            let plan = codec.plan(&erased, false).unwrap();
            let mut sub = Vec::new();
            for &s in &plan.survivors { sub.extend_from_slice(gen.row(s)); }
            let inv = isal::invert_matrix(&sub).expect("safe ranges are invertible");
            let mut dm = Vec::new();
            for &w in &erased {
                for c in 0..k {
                    let v = (0..k).fold(0u8, |acc, i| acc ^ gf::mul(gen.get(w, i), inv[i * k + c]));
                    dm.push(if w < k { inv[w * k + c] } else { v });
                }
            }
            prop_assert_eq!(plan.matrix(), &dm[..]);
            let stripe: Vec<Vec<u8>> = d.iter().cloned().chain(want.iter().cloned()).collect();
            let surv: Vec<&[u8]> = plan.survivors.iter().map(|&s| &stripe[s][..]).collect();
            let mut isal_out = vec![vec![0u8; len]; erased.len()];
            {
                let mut o: Vec<&mut [u8]> = isal_out.iter_mut().map(|b| &mut b[..]).collect();
                IsalTables::new(k, erased.len(), &dm).apply(&surv, &mut o);
            }
            let mut ours = stripe.clone();
            for &e in &erased { ours[e].fill(0); }
            let mut shards: Vec<&mut [u8]> = ours.iter_mut().map(|b| &mut b[..]).collect();
            codec.reconstruct(&mut shards, &erased).unwrap();
            for (i, &e) in erased.iter().enumerate() {
                prop_assert!(ours[e] == isal_out[i], "chunk {} differs from ISA-L decode", e);
                prop_assert!(ours[e] == stripe[e], "chunk {} not rebuilt", e);
            }
        }
    }
}
