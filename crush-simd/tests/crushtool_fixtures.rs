//! Every output captured from Ceph's `crushtool --test` in
//! `shared/fixtures/crush/` must be reproduced byte for byte, by the scalar
//! oracle and by the batched mapper with every kernel this CPU has.

use std::path::{Path, PathBuf};

use crush_simd::batch::{BatchMapper, Kernel};
use crush_simd::tester::{self, ScalarBatch, TestOptions};
use crush_simd::{text, CrushMap};

fn fixtures_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [here.join("../../shared/fixtures/crush"), here.join("../shared/fixtures/crush")] {
        if candidate.join("MANIFEST").exists() {
            return candidate;
        }
    }
    panic!("shared/fixtures/crush not found beside the workspace");
}

fn load(dir: &Path, bin_name: &str) -> CrushMap {
    let txt = dir.join(bin_name.replace(".bin", ".txt"));
    let src = std::fs::read_to_string(&txt).unwrap();
    text::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", txt.display()))
}

/// Parses a crushtool command line from the MANIFEST into options.
fn options_from_command(cmd: &str) -> (String, TestOptions) {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(args[0], "crushtool");
    let mut opts = TestOptions::default();
    let mut map = String::new();
    let mut i = 1;
    while i < args.len() {
        let a = args[i];
        let next = |k: usize| args[i + k].to_string();
        match a {
            "-i" => {
                map = next(1);
                i += 1;
            }
            "--test" => {}
            "--rule" => {
                opts.rule = Some(next(1).parse().unwrap());
                i += 1;
            }
            "--num-rep" => {
                let n = next(1).parse().unwrap();
                opts.min_rep = Some(n);
                opts.max_rep = Some(n);
                i += 1;
            }
            "--min-x" => {
                opts.min_x = Some(next(1).parse().unwrap());
                i += 1;
            }
            "--max-x" => {
                opts.max_x = Some(next(1).parse().unwrap());
                i += 1;
            }
            "--weight" => {
                opts.weights.push((next(1).parse().unwrap(), next(2).parse().unwrap()));
                i += 2;
            }
            "--show-mappings" => opts.show_mappings = true,
            "--show-statistics" => opts.show_statistics = true,
            "--show-utilization" => opts.show_utilization = true,
            "--show-utilization-all" => opts.show_utilization_all = true,
            "--show-bad-mappings" => opts.show_bad_mappings = true,
            "--show-choose-tries" => opts.show_choose_tries = true,
            other => panic!("flag {other} not handled by the test"),
        }
        i += 1;
    }
    (map, opts)
}

/// (output file, command) for every captured case.
fn cases(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for manifest in ["MANIFEST", "MANIFEST.other"] {
        let text = std::fs::read_to_string(dir.join(manifest)).unwrap();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split('\t').collect();
            out.push((fields[0].to_string(), fields.last().unwrap().to_string()));
        }
    }
    assert!(out.len() >= 60, "expected the full fixture set, found {}", out.len());
    out
}

fn render(map: &CrushMap, opts: &TestOptions, mapper: &mut dyn tester::BatchMap) -> String {
    let mut out = Vec::new();
    let mut err = Vec::new();
    tester::run(map, opts, mapper, &mut out, &mut err).unwrap();
    String::from_utf8(out).unwrap()
}

fn first_difference(got: &str, want: &str) -> String {
    for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        if g != w {
            return format!("line {}: got '{g}', want '{w}'", n + 1);
        }
    }
    format!("line counts differ: got {}, want {}", got.lines().count(), want.lines().count())
}

#[test]
fn scalar_mapper_reproduces_every_crushtool_output() {
    let dir = fixtures_dir();
    let mut failures = Vec::new();
    for (file, cmd) in cases(&dir) {
        let (map_name, opts) = options_from_command(&cmd);
        let map = load(&dir, &map_name);
        let mut scalar = ScalarBatch::new(&map);
        if opts.show_choose_tries {
            scalar.enable_choose_tries();
        }
        let got = render(&map, &opts, &mut scalar);
        let want = std::fs::read_to_string(dir.join(&file)).unwrap();
        if got != want {
            failures.push(format!("{file}: {}", first_difference(&got, &want)));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn batched_mapper_reproduces_every_mapping_file_with_every_kernel() {
    let dir = fixtures_dir();
    let mut failures = Vec::new();
    for kernel in Kernel::available() {
        for (file, cmd) in cases(&dir) {
            let (map_name, opts) = options_from_command(&cmd);
            if opts.show_choose_tries {
                continue; // the histogram is a property of the scalar walk
            }
            let map = load(&dir, &map_name);
            let mut batch = BatchMapper::with_kernel(&map, kernel);
            let got = render(&map, &opts, &mut batch);
            let want = std::fs::read_to_string(dir.join(&file)).unwrap();
            if got != want {
                failures.push(format!("{} {file}: {}", kernel.name(), first_difference(&got, &want)));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
