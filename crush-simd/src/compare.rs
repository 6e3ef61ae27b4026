//! Measuring mappers side by side: mappings per second of a [`BatchMap`],
//! and of Ceph's `crushtool` on the same map, rule, num-rep and inputs.
//!
//! This is the one module of the library that does I/O: it runs
//! `crushtool` (Debian's `ceph-base`) as a child process for the baseline.

use std::path::Path;
use std::time::Instant;

use crate::model::{Bucket, BucketAlg, CrushMap, Rule, Step, Tunables, RULE_TYPE_ERASURE, RULE_TYPE_REPLICATED};
use crate::tester::BatchMap;

/// Inputs per batch call while timing.
const timing_batch_inputs: u32 = 4096;

/// Maps x = 0..inputs; returns (mappings per second, checksum of results).
/// The checksum lets callers prove two mappers agreed on what they timed.
pub fn time_mapper(mapper: &mut dyn BatchMap, rule: i32, num_rep: usize, inputs: u32, weights: &[u32]) -> (f64, u64) {
    let mut lens = Vec::new();
    let mut items = Vec::new();
    let mut xs = Vec::with_capacity(timing_batch_inputs as usize);
    let mut checksum = 0u64;
    let start = Instant::now();
    let mut x = 0u32;
    while x < inputs {
        let end = x.saturating_add(timing_batch_inputs).min(inputs);
        xs.clear();
        xs.extend((x..end).map(|v| v as i32));
        mapper.map_batch(rule, &xs, num_rep, weights, &mut lens, &mut items);
        for (i, &len) in lens.iter().enumerate() {
            for &item in &items[i * num_rep..i * num_rep + len] {
                checksum = checksum.wrapping_mul(31).wrapping_add(item as u64);
            }
        }
        x = end;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    (inputs as f64 / secs, checksum)
}

/// Compiles `map_text` with `crushtool -c` and times `crushtool --test
/// --show-statistics` pinned to core 0 for `inputs` inputs. Process start
/// and map loading are measured with an empty run and subtracted.
pub fn time_crushtool(map_text: &Path, rule: i32, num_rep: i32, inputs: u32) -> Result<f64, String> {
    let dir = std::env::temp_dir().join(format!("sepia-crush-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let bin = dir.join("map.bin");
    let compile = std::process::Command::new("crushtool")
        .arg("-c")
        .arg(map_text)
        .arg("-o")
        .arg(&bin)
        .output()
        .map_err(|e| format!("running crushtool (install Debian's ceph-base): {e}"))?;
    if !compile.status.success() {
        return Err(format!("crushtool -c failed: {}", String::from_utf8_lossy(&compile.stderr)));
    }
    let run = |max_x: u32| -> Result<f64, String> {
        let start = Instant::now();
        let out = std::process::Command::new("taskset")
            .args(["-c", "0", "crushtool", "-i"])
            .arg(&bin)
            .args(["--test", "--show-statistics", "--rule"])
            .arg(rule.to_string())
            .arg("--num-rep")
            .arg(num_rep.to_string())
            .args(["--min-x", "0", "--max-x"])
            .arg(max_x.to_string())
            .output()
            .map_err(|e| format!("running crushtool: {e}"))?;
        if !out.status.success() {
            return Err(format!("crushtool --test failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let empty = run(0)?;
    let full = run(inputs.saturating_sub(1))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(inputs as f64 / (full - empty).max(1e-9))
}

/// A straw2 map shaped like a real cluster: `racks` × `hosts_per_rack` ×
/// `osds_per_host`, jewel tunables, weights varying per OSD, with rule 0 =
/// `chooseleaf firstn 0 type host` and rule 1 = EC `chooseleaf indep 0 type
/// host` (tries 5/100).
pub fn synthetic_map(racks: usize, hosts_per_rack: usize, osds_per_host: usize) -> CrushMap {
    let mut map = CrushMap::new();
    map.tunables = Tunables::JEWEL;
    for (id, name) in [(0, "osd"), (1, "host"), (3, "rack"), (11, "root")] {
        map.add_type(id, name).expect("fresh map");
    }
    let mut next_dev = 0;
    let mut next_bucket = -2;
    let mut rack_ids = Vec::new();
    let mut rack_weights = Vec::new();
    for r in 0..racks {
        let mut host_ids = Vec::new();
        let mut host_weights = Vec::new();
        for h in 0..hosts_per_rack {
            let mut items = Vec::new();
            let mut weights = Vec::new();
            for o in 0..osds_per_host {
                map.add_device(next_dev, &format!("osd.{next_dev}"), None).expect("fresh id");
                items.push(next_dev);
                // 1.819 .. 3.638 TB drives, like a mixed fleet.
                weights.push(119_209 + ((o * 7 + h * 3) % 5) as u32 * 29_802);
                next_dev += 1;
            }
            let b = Bucket::new(next_bucket, 1, BucketAlg::Straw2, 0, items, weights, 1).expect("valid bucket");
            host_weights.push(b.weight);
            map.add_bucket(&format!("host{r}-{h}"), b).expect("fresh bucket");
            host_ids.push(next_bucket);
            next_bucket -= 1;
        }
        let b = Bucket::new(next_bucket, 3, BucketAlg::Straw2, 0, host_ids, host_weights, 1).expect("valid bucket");
        rack_weights.push(b.weight);
        map.add_bucket(&format!("rack{r}"), b).expect("fresh bucket");
        rack_ids.push(next_bucket);
        next_bucket -= 1;
    }
    let root = Bucket::new(-1, 11, BucketAlg::Straw2, 0, rack_ids, rack_weights, 1).expect("valid bucket");
    map.add_bucket("default", root).expect("fresh bucket");
    let leaf = |indep: bool| if indep { Step::ChooseLeafIndep { n: 0, type_id: 1 } } else { Step::ChooseLeafFirstN { n: 0, type_id: 1 } };
    map.add_rule(Rule {
        id: 0,
        name: "replicated_rule".into(),
        rule_type: RULE_TYPE_REPLICATED,
        min_size: 1,
        max_size: 10,
        steps: vec![Step::Take(-1), leaf(false), Step::Emit],
    })
    .expect("fresh rule");
    map.add_rule(Rule {
        id: 1,
        name: "ec_rule".into(),
        rule_type: RULE_TYPE_ERASURE,
        min_size: 3,
        max_size: 20,
        steps: vec![Step::SetChooseLeafTries(5), Step::SetChooseTries(100), Step::Take(-1), leaf(true), Step::Emit],
    })
    .expect("fresh rule");
    map
}
