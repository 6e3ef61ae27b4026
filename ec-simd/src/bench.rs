//! `sepia-ec bench`: encode and cached-decode throughput, in the shape of
//! Ceph's `ceph_erasure_code_benchmark`, optionally beside ISA-L.
//!
//! Throughput is GB/s (10^9 bytes) of data bytes: k x chunk per call, for
//! encode and for decode alike. Decode rebuilds `erasures` data chunks
//! (0..erasures) from the first k survivors, with the decode tables cached
//! (the codec's cache for us, tables built once for ISA-L).

use crate::codec::Codec;
use crate::error::EcError;
use crate::limits;
use crate::matrix::MatrixKind;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub k: usize,
    pub m: usize,
    pub chunk_bytes: usize,
    pub erasures: usize,
    pub matrix: MatrixKind,
    /// Wall time spent per measured figure.
    pub seconds: f64,
    pub vs_isal: bool,
}

/// The figures; field names are the `--format json` output.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub k: usize,
    pub m: usize,
    pub chunk_bytes: usize,
    pub matrix: String,
    pub kernel: String,
    pub erasures: usize,
    pub encode_gbps: f64,
    pub decode_gbps: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isal_encode_gbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isal_decode_gbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encode_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_ratio: Option<f64>,
}

/// A zeroed buffer whose start is 64-byte aligned (as ISA-L's own
/// benchmarks allocate), so both coders see the same alignment.
pub struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let raw = vec![0u8; len + 64];
        let off = raw.as_ptr().align_offset(64).min(64);
        AlignedBuf { raw, off, len }
    }
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.off..self.off + self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
}

/// A stripe of k + m aligned chunks filled with the fixtures' generator.
pub struct Stripe {
    pub chunks: Vec<AlignedBuf>,
}

impl Stripe {
    pub fn new(k: usize, m: usize, chunk: usize) -> Stripe {
        let mut chunks: Vec<AlignedBuf> = (0..k + m).map(|_| AlignedBuf::new(chunk)).collect();
        for (j, c) in chunks.iter_mut().take(k).enumerate() {
            for (i, b) in c.as_mut_slice().iter_mut().enumerate() {
                *b = ((i * 31 + j * 17 + 7) & 0xff) as u8;
            }
        }
        Stripe { chunks }
    }
    /// Data chunks and parity chunks as the codec wants them.
    pub fn split(&mut self, k: usize) -> (Vec<&[u8]>, Vec<&mut [u8]>) {
        let (d, p) = self.chunks.split_at_mut(k);
        (
            d.iter().map(|c| c.as_slice()).collect(),
            p.iter_mut().map(|c| c.as_mut_slice()).collect(),
        )
    }
    pub fn all_mut(&mut self) -> Vec<&mut [u8]> {
        self.chunks.iter_mut().map(|c| c.as_mut_slice()).collect()
    }
}

/// Calls per second of each closure: the time is cut into slices of about
/// 20 ms, the closures take turns slice by slice (so a noisy neighbour
/// hurts all of them alike) and each one's best slice is reported (the
/// usual way to measure on a shared machine: interference only slows down).
pub fn rates(seconds: f64, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let slice = Duration::from_millis(20);
    // Warm-up and calibration: calls per slice for each closure.
    let mut per_slice = Vec::with_capacity(fs.len());
    for f in fs.iter_mut() {
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < slice {
            f();
            n += 1;
        }
        per_slice.push(n.max(1));
    }
    let mut best = vec![0f64; fs.len()];
    let rounds = ((seconds / slice.as_secs_f64()) as usize / fs.len().max(1)).max(3);
    let mut calls = 0u64;
    for _ in 0..rounds {
        for (i, f) in fs.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..per_slice[i] {
                f();
            }
            let r = per_slice[i] as f64 / t.elapsed().as_secs_f64();
            best[i] = best[i].max(r);
            calls += per_slice[i];
        }
        if calls >= limits::bench_iterations_max {
            break;
        }
    }
    best
}

/// Measures per the config.
pub fn run(cfg: &BenchConfig) -> Result<BenchResult, EcError> {
    let codec = Codec::new(cfg.k, cfg.m, cfg.matrix)?;
    if cfg.erasures == 0 || cfg.erasures > cfg.m.min(cfg.k) {
        return Err(EcError::InvalidParams {
            k: cfg.k,
            m: cfg.m,
            reason: "erasures must be between 1 and min(k, m)",
        });
    }
    let (k, m, cs) = (cfg.k, cfg.m, cfg.chunk_bytes);
    let data_bytes = (k * cs) as f64;
    let erased: Vec<usize> = (0..cfg.erasures).collect();
    // Separate stripes per coder so neither writes what the other reads.
    let mut ours = Stripe::new(k, m, cs);
    let mut theirs = Stripe::new(k, m, cs);
    let mut isal = if cfg.vs_isal {
        Some(IsalRun::new(cfg, &codec, &erased)?)
    } else {
        None
    };
    let (enc, isal_enc) = {
        let (d, mut p) = ours.split(k);
        let mut f = || codec.encode(&d, &mut p).expect("valid stripe");
        match isal.as_mut() {
            Some(run) => {
                let mut g = run.encoder(&mut theirs);
                let r = rates(cfg.seconds, &mut [&mut f, &mut *g]);
                (r[0], Some(r[1]))
            }
            None => (rates(cfg.seconds, &mut [&mut f])[0], None),
        }
    };
    let (dec, isal_dec) = {
        let mut all = ours.all_mut();
        let mut f = || {
            codec
                .reconstruct_data(&mut all, &erased)
                .expect("valid stripe")
        };
        match isal.as_mut() {
            Some(run) => {
                let mut g = run.decoder(&mut theirs, &erased);
                let r = rates(cfg.seconds, &mut [&mut f, &mut *g]);
                (r[0], Some(r[1]))
            }
            None => (rates(cfg.seconds, &mut [&mut f])[0], None),
        }
    };
    let gbps = |calls: f64| calls * data_bytes / 1e9;
    let mut res = BenchResult {
        k,
        m,
        chunk_bytes: cs,
        matrix: cfg.matrix.name().to_string(),
        kernel: codec.kernel().name().to_string(),
        erasures: cfg.erasures,
        encode_gbps: gbps(enc),
        decode_gbps: gbps(dec),
        isal_encode_gbps: isal_enc.map(gbps),
        isal_decode_gbps: isal_dec.map(gbps),
        encode_ratio: None,
        decode_ratio: None,
    };
    res.encode_ratio = res.isal_encode_gbps.map(|i| res.encode_gbps / i);
    res.decode_ratio = res.isal_decode_gbps.map(|i| res.decode_gbps / i);
    Ok(res)
}

/// ISA-L's side of the benchmark: its tables for encode and for the decode
/// matrix (inverted by ISA-L itself).
#[cfg(feature = "isal")]
struct IsalRun {
    enc: crate::isal::IsalTables,
    dec: crate::isal::IsalTables,
    survivors: Vec<usize>,
}

#[cfg(feature = "isal")]
impl IsalRun {
    fn new(cfg: &BenchConfig, codec: &Codec, erased: &[usize]) -> Result<IsalRun, EcError> {
        use crate::isal::IsalTables;
        let k = cfg.k;
        let gen = codec.generator().as_bytes();
        let enc = IsalTables::new(k, cfg.m, &gen[k * k..]);
        let plan = codec.plan(erased, true)?;
        let mut sub = Vec::with_capacity(k * k);
        for &s in &plan.survivors {
            sub.extend_from_slice(&gen[s * k..(s + 1) * k]);
        }
        let inv = crate::isal::invert_matrix(&sub).ok_or(EcError::Singular {
            erased: erased.to_vec(),
        })?;
        let mut dm = Vec::with_capacity(erased.len() * k);
        for &e in erased {
            dm.extend_from_slice(&inv[e * k..(e + 1) * k]);
        }
        let dec = IsalTables::new(k, erased.len(), &dm);
        Ok(IsalRun {
            enc,
            dec,
            survivors: plan.survivors.clone(),
        })
    }

    fn encoder<'a>(&'a self, s: &'a mut Stripe) -> Box<dyn FnMut() + 'a> {
        let k = self.survivors.len();
        let (d, mut p) = s.split(k);
        Box::new(move || self.enc.apply(&d, &mut p))
    }

    fn decoder<'a>(&'a self, s: &'a mut Stripe, erased: &[usize]) -> Box<dyn FnMut() + 'a> {
        let mut survivors = Vec::new();
        let mut outs = Vec::new();
        for (i, c) in s.chunks.iter_mut().enumerate() {
            if erased.contains(&i) {
                outs.push(c.as_mut_slice());
            } else if self.survivors.contains(&i) {
                survivors.push(&*c.as_mut_slice());
            }
        }
        Box::new(move || self.dec.apply(&survivors, &mut outs))
    }
}

/// Without the `isal` feature `--vs-isal` is refused.
#[cfg(not(feature = "isal"))]
struct IsalRun;

#[cfg(not(feature = "isal"))]
impl IsalRun {
    fn new(_: &BenchConfig, _: &Codec, _: &[usize]) -> Result<IsalRun, EcError> {
        Err(EcError::IsalNotBuilt("--vs-isal"))
    }
    fn encoder<'a>(&'a self, _: &'a mut Stripe) -> Box<dyn FnMut() + 'a> {
        Box::new(|| {})
    }
    fn decoder<'a>(&'a self, _: &'a mut Stripe, _: &[usize]) -> Box<dyn FnMut() + 'a> {
        Box::new(|| {})
    }
}

/// Encode and decode GB/s of every supported kernel, measured interleaved
/// in one run (`sepia-ec bench --all-kernels`).
pub fn compare_kernels(cfg: &BenchConfig) -> Result<Vec<(crate::Kernel, f64, f64)>, EcError> {
    let kernels = crate::Kernel::supported();
    let codecs = kernels
        .iter()
        .map(|&kn| Codec::with_kernel(cfg.k, cfg.m, cfg.matrix, kn))
        .collect::<Result<Vec<_>, _>>()?;
    if cfg.erasures == 0 || cfg.erasures > cfg.m.min(cfg.k) {
        return Err(EcError::InvalidParams {
            k: cfg.k,
            m: cfg.m,
            reason: "erasures must be between 1 and min(k, m)",
        });
    }
    let (k, m, cs) = (cfg.k, cfg.m, cfg.chunk_bytes);
    let erased: Vec<usize> = (0..cfg.erasures).collect();
    let mut stripes: Vec<Stripe> = kernels.iter().map(|_| Stripe::new(k, m, cs)).collect();
    let enc = {
        let mut fs: Vec<Box<dyn FnMut() + '_>> = codecs
            .iter()
            .zip(stripes.iter_mut())
            .map(|(c, s)| {
                let (d, mut p) = s.split(k);
                Box::new(move || c.encode(&d, &mut p).expect("valid stripe")) as Box<dyn FnMut()>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut()> = fs
            .iter_mut()
            .map(|f| &mut **f as &mut dyn FnMut())
            .collect();
        rates(cfg.seconds, &mut refs)
    };
    let dec = {
        let mut fs: Vec<Box<dyn FnMut() + '_>> = codecs
            .iter()
            .zip(stripes.iter_mut())
            .map(|(c, s)| {
                let mut all = s.all_mut();
                let e = erased.clone();
                Box::new(move || c.reconstruct_data(&mut all, &e).expect("valid stripe"))
                    as Box<dyn FnMut()>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut()> = fs
            .iter_mut()
            .map(|f| &mut **f as &mut dyn FnMut())
            .collect();
        rates(cfg.seconds, &mut refs)
    };
    let gb = (k * cs) as f64 / 1e9;
    Ok(kernels
        .into_iter()
        .zip(enc)
        .zip(dec)
        .map(|((kn, e), d)| (kn, e * gb, d * gb))
        .collect())
}
