//! End-to-end: `sepia-ec encode` -> lose chunk files -> `sepia-ec decode`
//! reproduces the input byte for byte; too many losses is a clear error.

use ec_simd::{Codec, MatrixKind};
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sepia-ec")
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sepia-ec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn input(len: usize, salt: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ salt;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run sepia-ec")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn encode_lose_m_decode_roundtrip() {
    for (k, m, matrix, chunk, len) in [
        (4usize, 2usize, "rs", 4096usize, 100_000usize),
        (8, 3, "cauchy", 1000, 8 * 1000 * 3),
        (10, 4, "rs", 512, 1),
        (3, 2, "cauchy", 64, 0),
    ] {
        let dir = tmpdir(&format!("rt-{k}-{m}-{matrix}"));
        let inp = dir.join("input");
        let data = input(len, k as u64);
        std::fs::write(&inp, &data).unwrap();
        let out = dir.join("chunks");
        let o = run(&[
            "encode",
            "-k",
            &k.to_string(),
            "-m",
            &m.to_string(),
            "--matrix",
            matrix,
            "--chunk-size",
            &chunk.to_string(),
            s(&inp),
            s(&out),
        ]);
        assert!(
            o.status.success(),
            "encode: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let man: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(man["k"], k);
        assert_eq!(man["m"], m);
        assert_eq!(man["matrix"], matrix);
        assert_eq!(man["chunk_size"], chunk);
        assert_eq!(man["input_length"], len);
        assert_eq!(man["crc32"].as_array().unwrap().len(), k + m);
        // Lose m chunks: a mix of data and parity.
        for i in 0..m {
            let victim = if i % 2 == 0 { i } else { k + i };
            std::fs::remove_file(out.join(format!("chunk.{victim}"))).unwrap();
        }
        let back = dir.join("output");
        let o = run(&["decode", s(&out), s(&back)]);
        assert!(
            o.status.success(),
            "decode: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            std::fs::read(&back).unwrap() == data,
            "k={k} m={m} {matrix}: output differs"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn corrupt_and_truncated_chunks_count_as_erasures() {
    let dir = tmpdir("corrupt");
    let inp = dir.join("input");
    let data = input(50_000, 7);
    std::fs::write(&inp, &data).unwrap();
    let out = dir.join("chunks");
    let o = run(&[
        "encode",
        "-k",
        "4",
        "-m",
        "2",
        "--chunk-size",
        "4096",
        s(&inp),
        s(&out),
    ]);
    assert!(o.status.success());
    // Flip one byte of chunk 1, truncate chunk 4: two erasures, decodable.
    let p1 = out.join("chunk.1");
    let mut c1 = std::fs::read(&p1).unwrap();
    c1[100] ^= 1;
    std::fs::write(&p1, c1).unwrap();
    let p4 = out.join("chunk.4");
    let c4 = std::fs::read(&p4).unwrap();
    std::fs::write(&p4, &c4[..c4.len() - 1]).unwrap();
    let back = dir.join("output");
    let o = run(&["decode", s(&out), s(&back)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&back).unwrap() == data);
    // A third loss is one too many: the error names every bad chunk.
    std::fs::remove_file(out.join("chunk.3")).unwrap();
    let o = run(&["decode", s(&out), s(&back)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("chunk.1 (crc32"), "{err}");
    assert!(err.contains("chunk.3 (missing)"), "{err}");
    assert!(err.contains("chunk.4 ("), "{err}");
    assert!(err.contains("at most 2"), "{err}");
    // A garbage manifest is refused, not a panic.
    std::fs::write(out.join("manifest.json"), b"{\"k\": 4").unwrap();
    let o = run(&["decode", s(&out), s(&back)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad manifest"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn single_stripe_parity_is_the_codec_output() {
    // chunk.0..k-1 are the input slices and the parity files equal encode
    // (which the fixture and ISA-L tests tie to ISA-L's ec_encode_data).
    let (k, m, chunk) = (4, 2, 4096);
    let dir = tmpdir("single");
    let inp = dir.join("input");
    let data: Vec<u8> = (0..k)
        .flat_map(|j| (0..chunk).map(move |i| ((i * 31 + j * 17 + 7) & 0xff) as u8))
        .collect();
    std::fs::write(&inp, &data).unwrap();
    let out = dir.join("chunks");
    let o = run(&[
        "encode",
        "-k",
        "4",
        "-m",
        "2",
        "--matrix",
        "cauchy",
        "--chunk-size",
        "4096",
        s(&inp),
        s(&out),
    ]);
    assert!(o.status.success());
    let codec = Codec::new(k, m, MatrixKind::Cauchy).unwrap();
    let d: Vec<&[u8]> = data.chunks(chunk).collect();
    let mut parity = vec![vec![0u8; chunk]; m];
    let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|b| &mut b[..]).collect();
    codec.encode(&d, &mut p).unwrap();
    for (j, slice) in d.iter().enumerate() {
        assert!(std::fs::read(out.join(format!("chunk.{j}"))).unwrap() == *slice);
    }
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/ec/k4m2/cauchy1/parity.bin");
    let isal = std::fs::read(fixture).unwrap();
    for (i, want) in parity.iter().enumerate() {
        let got = std::fs::read(out.join(format!("chunk.{}", k + i))).unwrap();
        assert!(got == *want);
        assert!(
            got[..] == isal[i * chunk..(i + 1) * chunk],
            "parity {i} differs from ISA-L's"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tmpdir("args");
    let inp = dir.join("input");
    std::fs::write(&inp, b"hello").unwrap();
    let o = run(&["encode", "-k", "22", "-m", "4", s(&inp), s(&dir.join("o"))]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("safe range"));
    let o = run(&[
        "encode",
        "-k",
        "4",
        "-m",
        "2",
        "--chunk-size",
        "0",
        s(&inp),
        s(&dir.join("o")),
    ]);
    assert!(!o.status.success());
    let o = run(&["decode", s(&dir.join("nothing")), s(&dir.join("x"))]);
    assert!(!o.status.success());
    let o = run(&[
        "bench",
        "-k",
        "4",
        "-m",
        "2",
        "--chunk-size",
        "4096",
        "--seconds",
        "0.01",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in [
        "k",
        "m",
        "chunk_bytes",
        "matrix",
        "encode_gbps",
        "decode_gbps",
    ] {
        assert!(v.get(f).is_some(), "json lacks {f}: {v}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
