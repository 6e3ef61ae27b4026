//! Criterion benches of ec-simd: encode and decode (m data chunks lost,
//! decode tables cached and not) for the headline cases 4+2 @ 4 KiB,
//! 8+3 @ 64 KiB and 10+4 @ 1 MiB, beside ISA-L when built with
//! `--features isal`, and beside the `reed-solomon-erasure` (GF(2^8),
//! galois_8) and `reed-solomon-simd` (GF(2^16) FFT) crates. `EC_BENCH_FULL=1` runs the whole grid
//! (2+1, 4+2, 6+3, 8+3, 10+4, 12+4) x (4 KiB, 64 KiB, 1 MiB).
//! Throughput is data bytes (k x chunk) per call.
//!
//! `cargo bench -p ec-simd --features isal --bench ec`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ec_simd::bench::Stripe;
use ec_simd::{Codec, MatrixKind};
use std::time::Duration;

fn cases() -> Vec<(usize, usize, usize)> {
    if std::env::var_os("EC_BENCH_FULL").is_some() {
        let mut v = Vec::new();
        for (k, m) in [(2, 1), (4, 2), (6, 3), (8, 3), (10, 4), (12, 4)] {
            for cs in [4 << 10, 64 << 10, 1 << 20] {
                v.push((k, m, cs));
            }
        }
        v
    } else {
        vec![(4, 2, 4 << 10), (8, 3, 64 << 10), (10, 4, 1 << 20)]
    }
}

fn label(k: usize, m: usize, cs: usize) -> String {
    if cs >= 1 << 20 {
        format!("{k}+{m}@{}MiB", cs >> 20)
    } else {
        format!("{k}+{m}@{}KiB", cs >> 10)
    }
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (k, m, cs) in cases() {
        let id = label(k, m, cs);
        g.throughput(Throughput::Bytes((k * cs) as u64));
        let codec = Codec::new(k, m, MatrixKind::Rs).unwrap();
        let mut s = Stripe::new(k, m, cs);
        let (d, mut p) = s.split(k);
        g.bench_function(
            BenchmarkId::new(format!("sepia-{}", codec.kernel()), &id),
            |b| b.iter(|| codec.encode(&d, &mut p).unwrap()),
        );
        {
            let rse = reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).unwrap();
            let mut s3 = Stripe::new(k, m, cs);
            let (d3, mut p3) = s3.split(k);
            g.bench_function(BenchmarkId::new("reed-solomon-erasure", &id), |b| {
                b.iter(|| rse.encode_sep(&d3, &mut p3).unwrap())
            });
            let mut enc = reed_solomon_simd::ReedSolomonEncoder::new(k, m, cs).unwrap();
            let s4 = Stripe::new(k, m, cs);
            g.bench_function(BenchmarkId::new("reed-solomon-simd", &id), |b| {
                b.iter(|| {
                    for chunk in &s4.chunks[..k] {
                        enc.add_original_shard(chunk.as_slice()).unwrap();
                    }
                    let result = enc.encode().unwrap();
                    result.recovery_iter().map(|r| r[0]).fold(0u8, |a, x| a ^ x)
                })
            });
        }
        #[cfg(feature = "isal")]
        {
            let gen = codec.generator().as_bytes();
            let t = ec_simd::isal::IsalTables::new(k, m, &gen[k * k..]);
            let mut s2 = Stripe::new(k, m, cs);
            let (d2, mut p2) = s2.split(k);
            g.bench_function(BenchmarkId::new("isa-l", &id), |b| {
                b.iter(|| t.apply(&d2, &mut p2))
            });
        }
    }
    g.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (k, m, cs) in cases() {
        let id = label(k, m, cs);
        g.throughput(Throughput::Bytes((k * cs) as u64));
        let codec = Codec::new(k, m, MatrixKind::Rs).unwrap();
        let erased: Vec<usize> = (0..m.min(k)).collect();
        let mut s = Stripe::new(k, m, cs);
        {
            let (d, mut p) = s.split(k);
            codec.encode(&d, &mut p).unwrap();
        }
        let mut all = s.all_mut();
        g.bench_function(BenchmarkId::new("sepia-cached", &id), |b| {
            b.iter(|| codec.reconstruct_data(&mut all, &erased).unwrap())
        });
        g.bench_function(BenchmarkId::new("sepia-uncached", &id), |b| {
            b.iter(|| {
                codec.clear_cache();
                codec.reconstruct_data(&mut all, &erased).unwrap()
            })
        });
        #[cfg(feature = "isal")]
        {
            use ec_simd::isal::{invert_matrix, IsalTables};
            let gen = codec.generator().as_bytes().to_vec();
            let survivors: Vec<usize> = (erased.len()..erased.len() + k).collect();
            let tables = || {
                let mut sub = Vec::with_capacity(k * k);
                for &r in &survivors {
                    sub.extend_from_slice(&gen[r * k..(r + 1) * k]);
                }
                let inv = invert_matrix(&sub).unwrap();
                IsalTables::new(k, erased.len(), &inv[..erased.len() * k])
            };
            let cached = tables();
            let mut s2 = Stripe::new(k, m, cs);
            let (lost, rest) = s2.chunks.split_at_mut(erased.len());
            let ins: Vec<&[u8]> = rest.iter().map(|c| c.as_slice()).collect();
            let mut outs: Vec<&mut [u8]> = lost.iter_mut().map(|c| c.as_mut_slice()).collect();
            g.bench_function(BenchmarkId::new("isa-l-cached", &id), |b| {
                b.iter(|| cached.apply(&ins, &mut outs))
            });
            g.bench_function(BenchmarkId::new("isa-l-uncached", &id), |b| {
                b.iter(|| tables().apply(&ins, &mut outs))
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_encode, bench_decode
}
criterion_main!(benches);
