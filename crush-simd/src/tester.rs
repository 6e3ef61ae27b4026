//! `crushtool --test`, line for line: mappings, statistics, utilization,
//! bad mappings and the choose-tries histogram, with the same flags and
//! defaults as Ceph's `CrushTester`.
//!
//! The mapping itself is delegated to a [`BatchMap`] so the same report can
//! be produced by the scalar oracle or by the batched mapper; the report
//! code never depends on which one ran.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::hash::hash32_2;
use crate::mapper::{Mapper, Workspace};
use crate::model::{CrushMap, ITEM_NONE, WEIGHT_ONE};

/// Inputs mapped per batch call: large enough to amortize dispatch, small
/// enough that results stay in cache.
const batch_inputs_max: usize = 4096;

/// Maps many inputs with one rule. Results are written flat: input `i`
/// occupies `items[i * result_max ..][.. lens[i]]`.
pub trait BatchMap {
    fn map_batch(
        &mut self,
        rule: i32,
        xs: &[i32],
        result_max: usize,
        weights: &[u32],
        lens: &mut Vec<usize>,
        items: &mut Vec<i32>,
    );

    /// The choose-tries histogram, when this mapper records one.
    fn choose_tries(&self) -> Option<&[u64]> {
        None
    }
}

/// The scalar oracle as a [`BatchMap`].
pub struct ScalarBatch<'m> {
    mapper: Mapper<'m>,
    ws: Workspace,
    scratch: Vec<i32>,
}

impl<'m> ScalarBatch<'m> {
    pub fn new(map: &'m CrushMap) -> ScalarBatch<'m> {
        ScalarBatch { mapper: Mapper::new(map), ws: Workspace::new(), scratch: Vec::new() }
    }

    /// Records the choose-tries histogram from now on.
    pub fn enable_choose_tries(&mut self) {
        let tries = self.mapper.map().tunables.choose_total_tries;
        self.ws.enable_choose_tries(tries);
    }
}

impl BatchMap for ScalarBatch<'_> {
    fn map_batch(
        &mut self,
        rule: i32,
        xs: &[i32],
        result_max: usize,
        weights: &[u32],
        lens: &mut Vec<usize>,
        items: &mut Vec<i32>,
    ) {
        lens.clear();
        items.clear();
        items.resize(xs.len() * result_max, 0);
        for (i, &x) in xs.iter().enumerate() {
            let n = self.mapper.do_rule(rule, x, result_max, weights, &mut self.ws, &mut self.scratch);
            items[i * result_max..i * result_max + n].copy_from_slice(&self.scratch[..n]);
            lens.push(n);
        }
    }

    fn choose_tries(&self) -> Option<&[u64]> {
        self.ws.choose_tries()
    }
}

/// The flags of `crushtool --test` that Sepia supports.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// `--rule R`: only this rule (default: every rule id).
    pub rule: Option<i32>,
    /// `--num-rep N` (both bounds), or `--min-rep`/`--max-rep`.
    pub min_rep: Option<i32>,
    pub max_rep: Option<i32>,
    /// `--min-x`/`--max-x`; absent or negative means 0 / 1023.
    pub min_x: Option<i64>,
    pub max_x: Option<i64>,
    /// `--weight DEV W` overrides in order (a later one wins).
    pub weights: Vec<(i64, f32)>,
    /// `--pool-id P`: hash x with the pool id first.
    pub pool_id: Option<i64>,
    pub show_mappings: bool,
    pub show_statistics: bool,
    pub show_utilization: bool,
    pub show_utilization_all: bool,
    pub show_bad_mappings: bool,
    pub show_choose_tries: bool,
}

/// crushtool's `--weight` conversion: `(int)(float * 0x10000)` clamped.
pub fn reweight_from_float(f: f32) -> u32 {
    let w = (f * 65536.0f32) as i32;
    w.clamp(0, WEIGHT_ONE as i32) as u32
}

/// The device weight vector crushtool tests with.
pub fn weight_vector(map: &CrushMap, overrides: &[(i64, f32)]) -> Vec<u32> {
    let max = map.max_devices.max(0) as usize;
    let mut present = vec![false; max];
    for b in map.buckets() {
        for &item in &b.items {
            if item >= 0 && (item as usize) < max {
                present[item as usize] = true;
            }
        }
    }
    let mut weights: Vec<u32> = present.iter().map(|&p| if p { WEIGHT_ONE } else { 0 }).collect();
    for &(dev, f) in overrides {
        if dev >= 0 && (dev as usize) < max {
            weights[dev as usize] = reweight_from_float(f);
        }
    }
    weights
}

/// crushtool's estimate of how many distinct items a rule can place
/// (`CrushTester::get_maximum_affected_by_rule`), quirks included: every
/// step with op >= 2 except emit counts, set_* steps as type 0, and shadow
/// buckets count as buckets of their type.
fn maximum_affected_by_rule(map: &CrushMap, rule: i32) -> i64 {
    let Some(rule) = map.rule(rule) else {
        return 0;
    };
    let mut affected_types = Vec::new();
    let mut replications_by_type: BTreeMap<i32, i64> = BTreeMap::new();
    for step in &rule.steps {
        let op = step.op_code();
        if op >= 2 && op != 4 {
            let (arg1, arg2) = step.args();
            affected_types.push(arg2);
            replications_by_type.insert(arg2, arg1 as i64);
        }
    }
    let mut max_devices_of_type: BTreeMap<i32, i64> = BTreeMap::new();
    for &t in &affected_types {
        let count = map.item_names.keys().filter(|&&id| map.bucket(id).is_some_and(|b| b.type_id == t)).count();
        *max_devices_of_type.entry(t).or_insert(0) += count as i64;
    }
    for &t in &affected_types {
        let want = replications_by_type.get(&t).copied().unwrap_or(0);
        let have = max_devices_of_type.entry(t).or_insert(0);
        if want > 0 && want < *have {
            *have = want;
        }
    }
    let mut max_affected = (map.max_buckets() as i64).max(map.max_devices as i64);
    for t in &affected_types {
        let have = max_devices_of_type.get(t).copied().unwrap_or(0);
        if have > 0 && have < max_affected {
            max_affected = have;
        }
    }
    max_affected
}

/// Formats like C++ `ostream << float` with the default precision 6 (`%g`).
pub fn format_g6(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return if v.is_nan() { "nan".into() } else if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{:.5e}", v);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let decimals = (5 - exp).max(0) as usize;
    strip_zeros(&format!("{:.*}", decimals, v)).to_string()
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn write_vec(out: &mut impl Write, items: &[i32]) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "{item}")?;
    }
    out.write_all(b"]")
}

/// Runs the test and writes crushtool's stdout lines to `out` (and its one
/// stderr line, the hex weights of `--show-utilization-all`, to `err`).
pub fn run(
    map: &CrushMap,
    opts: &TestOptions,
    mapper: &mut dyn BatchMap,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<()> {
    let output_statistics = opts.show_statistics || opts.show_utilization || opts.show_utilization_all;
    let weights = weight_vector(map, &opts.weights);
    if opts.show_utilization_all {
        write!(err, "devices weights (hex): [")?;
        for (i, w) in weights.iter().enumerate() {
            if i > 0 {
                write!(err, ",")?;
            }
            write!(err, "{w:x}")?;
        }
        writeln!(err, "]")?;
    }
    let min_x = opts.min_x.filter(|&v| v >= 0).unwrap_or(0);
    let max_x = opts.max_x.filter(|&v| v >= 0).unwrap_or(1023);
    let (min_rule, max_rule) = match opts.rule {
        Some(r) => (r as i64, r as i64),
        None => (0, map.max_rules() as i64 - 1),
    };
    let num_devices = weights.len();
    let total_weight: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut lens = Vec::new();
    let mut items = Vec::new();
    let mut xs: Vec<i32> = Vec::with_capacity(batch_inputs_max);
    let mut r = min_rule.max(0);
    while r < map.max_rules() as i64 && r <= max_rule {
        let rule_id = r as i32;
        r += 1;
        let Some(rule) = map.rule(rule_id) else {
            if output_statistics {
                writeln!(out, "rule {rule_id} dne")?;
            }
            continue;
        };
        let (minr, maxr) = match (opts.min_rep, opts.max_rep) {
            (Some(a), Some(b)) if a >= 0 && b >= 0 => (a, b),
            _ => (rule.min_size, rule.max_size),
        };
        if output_statistics {
            writeln!(out, "rule {rule_id} ({}), x = {min_x}..{max_x}, numrep = {minr}..{maxr}", rule.name)?;
        }
        for nr in minr..=maxr {
            if total_weight == 0 {
                continue;
            }
            let result_max = nr.max(0) as usize;
            let mut per = vec![0u64; num_devices];
            let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
            let num_objects = max_x - min_x + 1;
            let max_affected = maximum_affected_by_rule(map, rule_id);
            let expected_objects = (nr as i64).min(max_affected) as f32 * num_objects as f32;
            let mut x = min_x;
            while x <= max_x {
                xs.clear();
                let batch_end = (x + batch_inputs_max as i64 - 1).min(max_x);
                for xi in x..=batch_end {
                    let real_x = match opts.pool_id {
                        Some(pool) => hash32_2(xi as u32, pool as u32) as i32,
                        None => xi as i32,
                    };
                    xs.push(real_x);
                }
                mapper.map_batch(rule_id, &xs, result_max, &weights, &mut lens, &mut items);
                for (i, &len) in lens.iter().enumerate() {
                    let xi = x + i as i64;
                    let result = &items[i * result_max..i * result_max + len];
                    if opts.show_mappings {
                        write!(out, "CRUSH rule {rule_id} x {xi} ")?;
                        write_vec(out, result)?;
                        out.write_all(b"\n")?;
                    }
                    if opts.show_bad_mappings && (len != nr as usize || result.contains(&ITEM_NONE)) {
                        write!(out, "bad mapping rule {rule_id} x {xi} num_rep {nr} result ")?;
                        write_vec(out, result)?;
                        out.write_all(b"\n")?;
                    }
                    for &item in result {
                        if item != ITEM_NONE && item >= 0 && (item as usize) < num_devices {
                            per[item as usize] += 1;
                        }
                    }
                    *sizes.entry(len).or_insert(0) += 1;
                }
                x = batch_end + 1;
            }
            if output_statistics {
                for (size, count) in &sizes {
                    writeln!(
                        out,
                        "rule {rule_id} ({}) num_rep {nr} result size == {size}:\t{count}/{num_objects}",
                        rule.name
                    )?;
                }
                for (i, &stored) in per.iter().enumerate() {
                    let proportional = weights[i] as f32 / total_weight as f32;
                    let expected = proportional * expected_objects;
                    let show = if opts.show_utilization {
                        expected > 0.0 && stored > 0
                    } else {
                        opts.show_utilization_all
                    };
                    if show {
                        writeln!(
                            out,
                            "  device {i}:\t\t stored : {stored}\t expected : {}",
                            format_g6(expected as f64)
                        )?;
                    }
                }
            }
        }
    }
    if opts.show_choose_tries {
        if let Some(hist) = mapper.choose_tries() {
            let n = map.tunables.choose_total_tries as usize;
            for (i, v) in hist.iter().take(n).enumerate() {
                writeln!(out, "{i:>2}: {v:>9}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g6_matches_cpp_stream_formatting() {
        assert_eq!(format_g6(967.741_94), "967.742");
        assert_eq!(format_g6(1904.7619), "1904.76");
        assert_eq!(format_g6(30000.0), "30000");
        assert_eq!(format_g6(1234567.0), "1.23457e+06");
        assert_eq!(format_g6(0.000_012_5), "1.25e-05");
        assert_eq!(format_g6(0.5), "0.5");
    }

    #[test]
    fn reweight_conversion_matches_crushtool() {
        assert_eq!(reweight_from_float(0.5), 0x8000);
        assert_eq!(reweight_from_float(0.3), 0x4ccc);
        assert_eq!(reweight_from_float(0.85), 0xd999);
        assert_eq!(reweight_from_float(0.999_999), 0xffff);
        assert_eq!(reweight_from_float(1.5), 0x10000);
        assert_eq!(reweight_from_float(-1.0), 0);
    }
}
