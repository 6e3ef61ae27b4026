//! ISA-L golden vectors (../shared/fixtures/ec): matrices, parity, decode
//! matrices and the inverse table must match byte for byte, for every
//! kernel this CPU runs.

use ec_simd::{gf, Codec, Kernel, MatrixKind};
use std::path::PathBuf;

const CHUNK: usize = 4096;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/ec")
}

fn read_hex(path: &PathBuf) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect()
        })
        .collect()
}

fn generator_data(k: usize) -> Vec<u8> {
    (0..k)
        .flat_map(|j| (0..CHUNK).map(move |i| ((i * 31 + j * 17 + 7) & 0xff) as u8))
        .collect()
}

#[test]
fn inverse_table_matches_isal() {
    let rows = read_hex(&fixtures().join("gf-inv.hex"));
    let flat: Vec<u8> = rows.concat();
    assert_eq!(flat.len(), 256);
    for (x, &want) in flat.iter().enumerate() {
        assert_eq!(gf::inv(x as u8), want, "gf_inv({x})");
    }
}

#[test]
fn every_case_matches_isal() {
    for (k, m) in [(4, 2), (8, 3), (10, 4)] {
        let case = fixtures().join(format!("k{k}m{m}"));
        let data = std::fs::read(case.join("data.bin")).unwrap();
        assert_eq!(
            data,
            generator_data(k),
            "data.bin is the documented generator"
        );
        for (dir, kind) in [("rs", MatrixKind::Rs), ("cauchy1", MatrixKind::Cauchy)] {
            let d = case.join(dir);
            let matrix = read_hex(&d.join("matrix.hex"));
            let parity = std::fs::read(d.join("parity.bin")).unwrap();
            let decode = read_hex(&d.join("decode.hex"));
            for kernel in Kernel::supported() {
                let what = format!("k={k} m={m} {dir} {kernel}");
                let codec = Codec::with_kernel(k, m, kind, kernel).unwrap();
                let gen = codec.generator();
                assert_eq!(gen.rows(), k + m);
                for (r, row) in matrix.iter().enumerate() {
                    assert_eq!(gen.row(r), &row[..], "{what}: matrix row {r}");
                }

                // Encode.
                let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
                let mut out = vec![0xa5u8; m * CHUNK];
                let mut outs: Vec<&mut [u8]> = out.chunks_mut(CHUNK).collect();
                codec.encode(&chunks, &mut outs).unwrap();
                assert!(out == parity, "{what}: parity differs from ISA-L");

                // Lose data chunks 0..m, rebuild from m..k+m.
                let mut stripe = data.clone();
                stripe.extend_from_slice(&parity);
                stripe[..m * CHUNK].fill(0x5a);
                let erased: Vec<usize> = (0..m).collect();
                let plan = codec.plan(&erased, true).unwrap();
                assert_eq!(plan.survivors, (m..k + m).collect::<Vec<_>>());
                assert_eq!(plan.matrix(), &decode.concat()[..], "{what}: decode matrix");
                let mut shards: Vec<&mut [u8]> = stripe.chunks_mut(CHUNK).collect();
                codec.reconstruct(&mut shards, &erased).unwrap();
                assert!(
                    stripe[..k * CHUNK] == data[..],
                    "{what}: rebuilt data differs"
                );
            }
        }
    }
}
