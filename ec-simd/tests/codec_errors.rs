//! Bad input gives typed errors, never a panic; the decode cache is bounded.

use ec_simd::{Codec, EcError, Kernel, MatrixKind};

fn codec() -> Codec {
    Codec::new(4, 2, MatrixKind::Rs).unwrap()
}

#[test]
fn wrong_counts_and_lengths() {
    let c = codec();
    let a = [0u8; 64];
    let b = [0u8; 32];
    let mut p0 = [0u8; 64];
    let mut p1 = [0u8; 64];
    let e = c
        .encode(&[&a, &a, &a], &mut [&mut p0, &mut p1])
        .unwrap_err();
    assert_eq!(
        e,
        EcError::ChunkCount {
            what: "data",
            expected: 4,
            got: 3
        }
    );
    let e = c.encode(&[&a, &a, &a, &a], &mut [&mut p0]).unwrap_err();
    assert_eq!(
        e,
        EcError::ChunkCount {
            what: "parity",
            expected: 2,
            got: 1
        }
    );
    let e = c
        .encode(&[&a, &a, &b, &a], &mut [&mut p0, &mut p1])
        .unwrap_err();
    assert_eq!(
        e,
        EcError::ChunkLength {
            index: 2,
            expected: 64,
            got: 32
        }
    );
    let e = c.update(4, &a, &a, &mut [&mut p0, &mut p1]).unwrap_err();
    assert_eq!(e, EcError::DataIndex { index: 4, k: 4 });
    let e = c.update(0, &a, &b, &mut [&mut p0, &mut p1]).unwrap_err();
    assert!(matches!(e, EcError::ChunkLength { .. }));
}

#[test]
fn bad_erasure_sets() {
    let c = codec();
    let mut bufs = vec![vec![0u8; 64]; 6];
    let mut shards: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    assert_eq!(
        c.reconstruct(&mut shards, &[0, 1, 5]).unwrap_err(),
        EcError::TooManyErasures {
            erased: vec![0, 1, 5],
            max: 2
        }
    );
    assert_eq!(
        c.reconstruct(&mut shards, &[6]).unwrap_err(),
        EcError::ErasureIndex { index: 6, n: 6 }
    );
    assert_eq!(
        c.reconstruct(&mut shards, &[1, 1]).unwrap_err(),
        EcError::DuplicateErasure { index: 1 }
    );
    let msg = c
        .reconstruct(&mut shards, &[3, 0, 5])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("[0, 3, 5]") && msg.contains("at most 2"),
        "{msg}"
    );
    assert!(c.reconstruct(&mut shards[..5], &[0]).is_err());
    c.reconstruct(&mut shards, &[]).unwrap();
}

#[test]
fn bad_parameters() {
    assert!(matches!(
        Codec::new(0, 2, MatrixKind::Rs),
        Err(EcError::InvalidParams { .. })
    ));
    assert!(matches!(
        Codec::new(4, 0, MatrixKind::Cauchy),
        Err(EcError::InvalidParams { .. })
    ));
    assert!(matches!(
        Codec::new(250, 6, MatrixKind::Cauchy),
        Err(EcError::InvalidParams { .. })
    ));
    assert_eq!(
        Codec::new(22, 4, MatrixKind::Rs).unwrap_err(),
        EcError::UnsafeRs { k: 22, m: 4 }
    );
    assert!(Codec::new(22, 4, MatrixKind::Cauchy).is_ok());
    assert!("nope".parse::<MatrixKind>().is_err());
    assert!("nope".parse::<Kernel>().is_err());
    for k in Kernel::ALL {
        assert_eq!(k.name().parse::<Kernel>().unwrap(), k);
        if !k.is_supported() {
            assert_eq!(
                Codec::with_kernel(4, 2, MatrixKind::Rs, k).unwrap_err(),
                EcError::KernelUnsupported(k.name())
            );
        }
    }
}

#[test]
fn decode_cache_hits_and_stays_bounded() {
    let c = Codec::new(6, 3, MatrixKind::Cauchy)
        .unwrap()
        .with_cache_capacity(4);
    let mut bufs = vec![vec![1u8; 128]; 9];
    let mut shards: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    c.reconstruct(&mut shards, &[0, 7]).unwrap();
    c.reconstruct(&mut shards, &[0, 7]).unwrap();
    c.reconstruct(&mut shards, &[7, 0]).unwrap();
    let s = c.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 1, 1));
    // Data-only and full rebuilds of the same loss are different plans.
    c.reconstruct_data(&mut shards, &[0, 7]).unwrap();
    assert_eq!(c.cache_stats().misses, 2);
    for e in 0..9 {
        c.reconstruct(&mut shards, &[e]).unwrap();
    }
    let s = c.cache_stats();
    assert_eq!(s.entries, 4);
    // The most recent pattern is still cached, the oldest is gone.
    c.reconstruct(&mut shards, &[8]).unwrap();
    assert_eq!(c.cache_stats().misses, s.misses);
    c.reconstruct(&mut shards, &[0, 7]).unwrap();
    assert_eq!(c.cache_stats().misses, s.misses + 1);
    c.clear_cache();
    assert_eq!(c.cache_stats().entries, 0);
}
