//! `sepia-ec encode` / `decode`: a file as k + m chunk files and a manifest.
//!
//! Layout of OUTDIR: `chunk.0 .. chunk.(k+m-1)` and `manifest.json`. The
//! input is cut into stripes of k x chunk_size bytes (the last one
//! zero-padded); stripe s contributes bytes `s*chunk_size..` to every chunk
//! file, so chunk file i is the concatenation of chunk i of every stripe.
//! For a single stripe, `chunk.0..k-1` are the input slices and the parity
//! files equal ISA-L's `ec_encode_data` with the same matrix.
//!
//! Decoding trusts nothing in OUTDIR: the manifest is size-bounded and
//! validated, a missing chunk file, one of the wrong length or with a crc32
//! mismatch counts as an erasure, and more than m erasures is an error that
//! names each bad chunk and why.

use crate::codec::Codec;
use crate::error::EcError;
use crate::limits;
use crate::matrix::MatrixKind;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Name of the manifest in OUTDIR.
pub const MANIFEST: &str = "manifest.json";

/// What `manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub k: usize,
    pub m: usize,
    /// `rs` or `cauchy`.
    pub matrix: String,
    /// Bytes of one chunk of one stripe.
    pub chunk_size: usize,
    /// Bytes of the original input (the rest of the last stripe is padding).
    pub input_length: u64,
    /// Stripes in every chunk file.
    pub stripes: u64,
    /// crc32 (IEEE) of each whole chunk file, index = chunk number.
    pub crc32: Vec<u32>,
}

/// Errors of the file tool.
#[derive(Debug, Error)]
pub enum FileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ec(#[from] EcError),
    #[error("bad manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("bad argument: {0}")]
    Arg(String),
    #[error(
        "{} of {n} chunks are missing or corrupt, at most {m} can be rebuilt: {}",
        bad.len(),
        bad.iter().map(|(i, why)| format!("chunk.{i} ({why})")).collect::<Vec<_>>().join(", ")
    )]
    TooManyBad {
        bad: Vec<(usize, String)>,
        n: usize,
        m: usize,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Path of chunk file `i` in `dir`.
pub fn chunk_path(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("chunk.{i}"))
}

/// Reads as many bytes as are available up to `buf.len()`; returns the count.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Encodes `input` into `outdir` (created if needed). Returns the manifest.
pub fn encode_file(
    codec: &Codec,
    chunk_size: usize,
    input: &Path,
    outdir: &Path,
) -> Result<Manifest, FileError> {
    if chunk_size == 0 || chunk_size > limits::chunk_bytes_max {
        return Err(FileError::Arg(format!(
            "chunk size {chunk_size} must be between 1 and {}",
            limits::chunk_bytes_max
        )));
    }
    let (k, m) = (codec.k(), codec.m());
    let n = k + m;
    if n * chunk_size > limits::stripe_bytes_max {
        return Err(FileError::Arg(format!(
            "a stripe of {n} x {chunk_size} bytes exceeds {} bytes",
            limits::stripe_bytes_max
        )));
    }
    std::fs::create_dir_all(outdir).map_err(io_err(outdir))?;
    let mut reader = BufReader::new(File::open(input).map_err(io_err(input))?);
    let mut writers = Vec::with_capacity(n);
    for i in 0..n {
        let p = chunk_path(outdir, i);
        writers.push((BufWriter::new(File::create(&p).map_err(io_err(&p))?), p));
    }
    let mut hashers: Vec<crc32fast::Hasher> = (0..n).map(|_| crc32fast::Hasher::new()).collect();
    let mut stripe = vec![0u8; n * chunk_size];
    let mut input_length = 0u64;
    let mut stripes = 0u64;
    loop {
        let (data, parity) = stripe.split_at_mut(k * chunk_size);
        let got = read_full(&mut reader, data).map_err(io_err(input))?;
        if got == 0 {
            break;
        }
        input_length += got as u64;
        if input_length > limits::input_bytes_max {
            return Err(FileError::Arg(format!(
                "input larger than {} bytes",
                limits::input_bytes_max
            )));
        }
        data[got..].fill(0);
        let data_refs: Vec<&[u8]> = data.chunks(chunk_size).collect();
        let mut parity_refs: Vec<&mut [u8]> = parity.chunks_mut(chunk_size).collect();
        codec.encode(&data_refs, &mut parity_refs)?;
        for (i, chunk) in stripe.chunks(chunk_size).enumerate() {
            let (w, p) = &mut writers[i];
            w.write_all(chunk).map_err(io_err(p))?;
            hashers[i].update(chunk);
        }
        stripes += 1;
        if got < k * chunk_size {
            break;
        }
    }
    for (w, p) in writers {
        w.into_inner()
            .map_err(|e| io_err(&p)(e.into_error()))?
            .sync_all()
            .map_err(io_err(&p))?;
    }
    let manifest = Manifest {
        k,
        m,
        matrix: codec.matrix_kind().name().to_string(),
        chunk_size,
        input_length,
        stripes,
        crc32: hashers.into_iter().map(|h| h.finalize()).collect(),
    };
    let mpath = outdir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
    std::fs::write(&mpath, text + "\n").map_err(io_err(&mpath))?;
    Ok(manifest)
}

/// Reads and validates `dir/manifest.json`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, FileError> {
    let path = dir.join(MANIFEST);
    let bad = |reason: String| FileError::Manifest {
        path: path.clone(),
        reason,
    };
    let f = File::open(&path).map_err(io_err(&path))?;
    let mut text = Vec::new();
    f.take(limits::manifest_bytes_max + 1)
        .read_to_end(&mut text)
        .map_err(io_err(&path))?;
    if text.len() as u64 > limits::manifest_bytes_max {
        return Err(bad(format!(
            "larger than {} bytes",
            limits::manifest_bytes_max
        )));
    }
    let man: Manifest = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    crate::matrix::check_params(man.k, man.m)?;
    if man.chunk_size == 0 || man.chunk_size > limits::chunk_bytes_max {
        return Err(bad(format!("chunk_size {} out of range", man.chunk_size)));
    }
    if (man.k + man.m) * man.chunk_size > limits::stripe_bytes_max {
        return Err(bad(format!(
            "stripe larger than {} bytes",
            limits::stripe_bytes_max
        )));
    }
    if man.crc32.len() != man.k + man.m {
        return Err(bad(format!(
            "{} crc32 values for {} chunks",
            man.crc32.len(),
            man.k + man.m
        )));
    }
    let stripe_data = (man.k * man.chunk_size) as u64;
    let need = man.input_length.div_ceil(stripe_data);
    if man.input_length > limits::input_bytes_max || man.stripes != need {
        return Err(bad(format!(
            "{} stripes cannot hold {} input bytes exactly",
            man.stripes, man.input_length
        )));
    }
    Ok(man)
}

/// Why chunk file `i` is unusable, or `None` if it is intact.
fn check_chunk(path: &Path, expect_len: u64, expect_crc: u32) -> Option<String> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some("missing".into()),
        Err(e) => return Some(format!("unreadable: {e}")),
    };
    match f.metadata() {
        Ok(md) if md.len() != expect_len => {
            return Some(format!("{} bytes, expected {expect_len}", md.len()))
        }
        Ok(_) => {}
        Err(e) => return Some(format!("unreadable: {e}")),
    }
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Some(format!("unreadable: {e}")),
        }
    }
    let crc = h.finalize();
    (crc != expect_crc).then(|| format!("crc32 {crc:08x}, expected {expect_crc:08x}"))
}

/// Rebuilds the original input from `dir` into `output`. Returns the
/// indices of the chunks that were treated as erased.
pub fn decode_file(dir: &Path, output: &Path) -> Result<Vec<usize>, FileError> {
    let man = read_manifest(dir)?;
    let kind: MatrixKind = man.matrix.parse()?;
    let codec = Codec::new(man.k, man.m, kind)?;
    let (k, n, cs) = (man.k, man.k + man.m, man.chunk_size);
    let file_len = man.stripes * cs as u64;
    let mut bad = Vec::new();
    for i in 0..n {
        if let Some(why) = check_chunk(&chunk_path(dir, i), file_len, man.crc32[i]) {
            bad.push((i, why));
        }
    }
    if bad.len() > man.m {
        return Err(FileError::TooManyBad { bad, n, m: man.m });
    }
    let erased: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
    let plan = codec.plan(&erased, true)?;
    let mut readers: Vec<Option<(BufReader<File>, PathBuf)>> = Vec::with_capacity(n);
    for i in 0..n {
        // Only the survivors the plan reads, plus intact data chunks.
        let needed = plan.survivors.contains(&i) || (i < k && !erased.contains(&i));
        if needed {
            let p = chunk_path(dir, i);
            readers.push(Some((
                BufReader::new(File::open(&p).map_err(io_err(&p))?),
                p,
            )));
        } else {
            readers.push(None);
        }
    }
    let mut out = BufWriter::new(File::create(output).map_err(io_err(output))?);
    let mut stripe = vec![0u8; n * cs];
    let mut left = man.input_length;
    for _ in 0..man.stripes {
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some((r, p)) = r {
                r.read_exact(&mut stripe[i * cs..(i + 1) * cs])
                    .map_err(io_err(p))?;
            }
        }
        let mut shards: Vec<&mut [u8]> = stripe.chunks_mut(cs).collect();
        codec.reconstruct_data(&mut shards, &erased)?;
        let take = left.min((k * cs) as u64) as usize;
        out.write_all(&stripe[..take]).map_err(io_err(output))?;
        left -= take as u64;
    }
    out.into_inner()
        .map_err(|e| io_err(output)(e.into_error()))?
        .sync_all()
        .map_err(io_err(output))?;
    Ok(erased)
}
