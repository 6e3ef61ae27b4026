//! The `sepia-crush` binary as an operator runs it: same output as
//! `crushtool --test`, and clear errors with a non-zero exit on bad input.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/crush")
}

fn sepia_crush(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sepia-crush")).args(args).output().expect("run sepia-crush")
}

#[test]
fn test_subcommand_prints_what_crushtool_printed() {
    // Rebuild the exact crushtool command of a manifest line as sepia-crush
    // arguments (the `.bin` map becomes its `.txt` source).
    let dir = fixtures();
    let manifest = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    for file in ["racks.rule1.rep4.out-rack1.mappings", "flat.rule2.rep8.mappings", "sparse.rule0.rep3.w7-0_w11-0.25.mappings"] {
        let line = manifest.lines().find(|l| l.starts_with(file)).unwrap();
        let command = line.split('\t').next_back().unwrap();
        let mut args = vec!["test".to_string()];
        for word in command.split_whitespace().skip(1) {
            args.push(if word.ends_with(".bin") { dir.join(word.replace(".bin", ".txt")).display().to_string() } else { word.to_string() });
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sepia_crush(&refs);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let want = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(String::from_utf8(out.stdout).unwrap() == want, "{file} differs");
    }
}

#[test]
fn statistics_and_choose_tries_match_crushtool() {
    let dir = fixtures();
    let map = dir.join("hosts8x4.txt");
    let out = sepia_crush(&[
        "test",
        "-i",
        map.to_str().unwrap(),
        "--show-statistics",
        "--rule",
        "0",
        "--num-rep",
        "3",
        "--min-x",
        "0",
        "--max-x",
        "9999",
    ]);
    assert!(out.status.success());
    let want = std::fs::read_to_string(dir.join("hosts8x4.rule0.rep3.stats")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

#[test]
fn missing_map_is_an_error_not_a_panic() {
    let out = sepia_crush(&["test", "-i", "/nonexistent/map.txt", "--show-mappings"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/map.txt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn malformed_map_reports_line_and_column() {
    let dir = std::env::temp_dir().join(format!("sepia-crush-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "# begin crush map\ndevice 0 osd.0\ntype 0 osd\nhost h { id -1 alg nope hash 0 }\n").unwrap();
    let out = sepia_crush(&["test", "-i", bad.to_str().unwrap(), "--show-mappings"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 4"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn binary_map_is_refused_with_advice() {
    let dir = fixtures();
    let out = sepia_crush(&["test", "-i", dir.join("flat.bin").to_str().unwrap(), "--show-mappings"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("crushtool -d"), "{err}");
}

#[test]
fn decompile_round_trips_a_fixture() {
    let dir = fixtures();
    let out = sepia_crush(&["decompile", "-i", dir.join("classes.txt").to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), std::fs::read_to_string(dir.join("classes.txt")).unwrap());
}

#[test]
fn bench_repeats_and_checks_the_batched_mapper_against_the_scalar_one() {
    // No timing is asserted: only that both mappers ran the rounds asked
    // for and agreed (a disagreement is an error exit).
    let map = fixtures().join("big.txt");
    let map = map.to_str().unwrap();
    let out = sepia_crush(&["bench", map, "--rule", "1", "--num-rep", "6", "--inputs", "3000", "--repeat", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("best of 2"), "{stdout}");
    assert!(stdout.contains("sepia scalar :") && stdout.contains("sepia batched:"), "{stdout}");
    let out = sepia_crush(&["bench", map, "--inputs", "3000", "--skip-scalar"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8(out.stdout).unwrap().contains("sepia scalar"));
    let out = sepia_crush(&["bench", map, "--repeat", "0"]);
    assert!(!out.status.success(), "--repeat 0 is refused");
}
