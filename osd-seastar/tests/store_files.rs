//! The store on real files through glommio (O_DIRECT, io_uring): format,
//! write, unmount, remount, read; bit rot in the file is caught and deep
//! scrub names the object; a different OSD's file is refused.

use std::os::unix::fs::FileExt;

use sepia_osd::objstore::layout::{RegionHeader, Superblock};
use sepia_osd::objstore::{CollId, DmaDevice, Expect, MkfsOptions, Op, Store, StoreError, Transaction, BLOCK};

const C: CollId = CollId { pool: 7, seed: 3 };

fn run<F: std::future::Future<Output = T> + 'static, T: Send + 'static>(f: impl FnOnce() -> F + Send + 'static) -> T {
    glommio::LocalExecutorBuilder::default().spawn(f).expect("glommio executor (io_uring)").join().expect("executor thread")
}

#[test]
fn real_file_round_trip_and_bit_rot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osd.0");
    DmaDevice::preallocate(&path, 64 << 20).unwrap();
    let p = path.clone();
    run(move || async move {
        let dev = DmaDevice::open(&p).await.unwrap();
        let opts = MkfsOptions { fsid: [4; 16], osd: 0, shards: 2, journal_bytes: Some(1 << 20), checkpoint_bytes: Some(1 << 20) };
        Store::mkfs(&dev, &opts).await.unwrap();
        let s = Store::mount(dev, 1, Expect { fsid: Some([4; 16]), osd: 0, shards: 2 }).await.unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        s.submit(Transaction { ops: vec![Op::CreateCollection(C), Op::Write { coll: C, obj: "big".into(), offset: 0, data: big.clone() }, Op::Write { coll: C, obj: "small".into(), offset: 10, data: b"hello".to_vec() }] })
            .await
            .unwrap();
        assert_eq!(s.read(&C, "big", 0, 0).await.unwrap(), big);
        s.umount().await.unwrap();
    });
    // Remount in a new executor (a new process would see the same).
    let p = path.clone();
    let (block_dev, data_off) = run(move || async move {
        let dev = DmaDevice::open(&p).await.unwrap();
        assert!(matches!(Store::mount(DmaDevice::open(&p).await.unwrap(), 1, Expect { fsid: None, osd: 5, shards: 2 }).await, Err(StoreError::WrongDevice(_))));
        let s = Store::mount(dev, 1, Expect { fsid: Some([4; 16]), osd: 0, shards: 2 }).await.unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(s.read(&C, "big", 0, 0).await.unwrap(), big);
        assert_eq!(s.read(&C, "small", 10, 5).await.unwrap(), b"hello");
        let b = s.meta_snapshot().onode(&C, "big").unwrap().blocks[&20].dev;
        let sb = Superblock { fsid: [4; 16], osd: 0, shards: 2, device_bytes: 64 << 20 };
        let (base, _) = sb.region(1);
        let mut hdr = vec![0u8; BLOCK];
        std::fs::File::open(&p).unwrap().read_exact_at(&mut hdr, base).unwrap();
        let h = RegionHeader::decode(&hdr, &[4; 16], 0).unwrap();
        s.umount().await.unwrap();
        (b, base + h.data_offset())
    });
    // Rot one byte of block 20 of "big" in the file itself.
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = data_off + block_dev * BLOCK as u64 + 77;
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let p = path.clone();
    run(move || async move {
        let s = Store::mount(DmaDevice::open(&p).await.unwrap(), 1, Expect { fsid: Some([4; 16]), osd: 0, shards: 2 }).await.unwrap();
        let err = s.read(&C, "big", 0, 0).await.unwrap_err();
        assert_eq!(err, StoreError::Checksum { coll: C, obj: "big".into(), block: 20 });
        assert_eq!(s.read(&C, "small", 10, 5).await.unwrap(), b"hello");
        assert_eq!(s.deep_scrub().await, vec![(C, "big".to_string(), 20)]);
    });
}
