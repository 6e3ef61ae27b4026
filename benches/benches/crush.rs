//! Criterion benches of CRUSH placement: the scalar oracle and the batched
//! mapper (best kernel) on the 1000-OSD `big` fixture (rule 0 rep 3, EC
//! rule 1 rep 6) and on `hosts8x4` (rule 0 rep 3), 4096 inputs per
//! iteration. Throughput is reported in mappings per second.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crush_simd::batch::BatchMapper;
use crush_simd::tester::{weight_vector, BatchMap, ScalarBatch};
use crush_simd::{text, CrushMap};

const INPUTS: usize = 4096;

fn fixture(name: &str) -> Option<CrushMap> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/crush");
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    text::parse(&text).ok()
}

fn bench_map(c: &mut Criterion, label: &str, map: &CrushMap, rule: i32, num_rep: usize) {
    let weights = weight_vector(map, &[]);
    let xs: Vec<i32> = (0..INPUTS as i32).collect();
    let mut group = c.benchmark_group(format!("crush/{label}"));
    group.throughput(Throughput::Elements(INPUTS as u64));
    let (mut lens, mut items) = (Vec::new(), Vec::new());
    let mut scalar = ScalarBatch::new(map);
    group.bench_function("scalar", |b| {
        b.iter(|| scalar.map_batch(rule, &xs, num_rep, &weights, &mut lens, &mut items))
    });
    let mut batched = BatchMapper::new(map);
    let kernel = batched.kernel_name();
    group.bench_function(format!("batched-{kernel}"), |b| {
        b.iter(|| batched.map_batch(rule, &xs, num_rep, &weights, &mut lens, &mut items))
    });
    group.finish();
}

fn crush(c: &mut Criterion) {
    match fixture("big.txt") {
        Some(big) => {
            bench_map(c, "big-rule0-rep3", &big, 0, 3);
            bench_map(c, "big-rule1-rep6", &big, 1, 6);
        }
        None => eprintln!("crush bench: shared/fixtures/crush/big.txt not found; skipped"),
    }
    if let Some(hosts) = fixture("hosts8x4.txt") {
        bench_map(c, "hosts8x4-rule0-rep3", &hosts, 0, 3);
    }
}

criterion_group!(benches, crush);
criterion_main!(benches);
