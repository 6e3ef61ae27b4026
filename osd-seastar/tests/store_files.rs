//! The store on real files through glommio (O_DIRECT, io_uring): format,
//! write, unmount, remount, read; bit rot in the file is caught and deep
//! scrub names the object; a different OSD's file is refused; the same on
//! a loop block device (O_DIRECT through the block layer, size from the
//! device itself); writes of megabytes, which go out as several DMA pieces.

use std::os::unix::fs::FileExt;

use sepia_osd::objstore::layout::{RegionHeader, Superblock};
use sepia_osd::objstore::{CollId, Device, DmaDevice, Expect, MkfsOptions, Op, Store, StoreError, Transaction, BLOCK};

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
        let opts = MkfsOptions { fsid: [4; 16], osd: 0, shards: 2, osd_uuid: [6; 16], journal_bytes: Some(1 << 20), checkpoint_bytes: Some(1 << 20) };
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
        let sb = Superblock { fsid: [4; 16], osd: 0, shards: 2, device_bytes: 64 << 20, osd_uuid: [6; 16] };
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

#[test]
fn writes_bigger_than_a_dma_piece_land_whole() {
    // Full checkpoints and deltas of megabytes go out as several DMA
    // writes in flight together: every byte must land where it belongs,
    // and a store whose checkpoint spans several pieces must remount whole.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("osd.0");
    DmaDevice::preallocate(&path, 64 << 20).unwrap();
    let p = path.clone();
    let pattern: Vec<u8> = (0..(5 << 20) + 3 * BLOCK as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let expected = pattern.clone();
    run(move || async move {
        let dev = DmaDevice::open(&p).await.unwrap();
        dev.write(2 * BLOCK as u64, &pattern).await.unwrap();
        assert_eq!(dev.read(2 * BLOCK as u64, pattern.len()).await.unwrap(), pattern);
        // Past the end: refused before any piece is written.
        assert!(dev.write(dev.len() - (1 << 20), &pattern).await.is_err());
    });
    let mut on_disk = vec![0u8; expected.len()];
    std::fs::File::open(&path).unwrap().read_exact_at(&mut on_disk, 2 * BLOCK as u64).unwrap();
    assert!(on_disk == expected, "the file differs from what was written");

    // ~3 MB of omap: its full checkpoint is several pieces.
    let value = |i: u32| -> Vec<u8> { (0..1024u32).map(|j| (i * 7 + j) as u8).collect() };
    let p = path.clone();
    let opts = MkfsOptions { fsid: [4; 16], osd: 0, shards: 1, osd_uuid: [6; 16], journal_bytes: Some(1 << 20), checkpoint_bytes: Some(16 << 20) };
    run(move || async move {
        let dev = DmaDevice::open(&p).await.unwrap();
        Store::mkfs(&dev, &opts).await.unwrap();
        let s = Store::mount(dev, 0, Expect { fsid: Some([4; 16]), osd: 0, shards: 1 }).await.unwrap();
        s.submit(Transaction { ops: vec![Op::CreateCollection(C)] }).await.unwrap();
        for batch in 0..30u32 {
            let ops = (0..100u32)
                .map(|i| {
                    let n = batch * 100 + i;
                    Op::OmapSetKeys { coll: C, obj: format!("object-{n}"), entries: std::collections::BTreeMap::from([(format!("key-{n}"), value(n))]) }
                })
                .collect();
            s.submit(Transaction { ops }).await.unwrap();
        }
        s.umount().await.unwrap();
    });
    let p = path.clone();
    run(move || async move {
        let s = Store::mount(DmaDevice::open(&p).await.unwrap(), 0, Expect { fsid: Some([4; 16]), osd: 0, shards: 1 }).await.unwrap();
        let checkpoint_bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&s.meta_snapshot()).unwrap().len();
        assert!(checkpoint_bytes > 3 << 20, "a checkpoint of {checkpoint_bytes} bytes fits one piece");
        for n in 0..3000u32 {
            let (_, omap) = s.omap_get(&C, &format!("object-{n}")).unwrap();
            assert_eq!(omap.get(&format!("key-{n}")), Some(&value(n)), "object-{n}");
        }
    });
}

/// A loop device over a file, detached on drop.
struct LoopDevice {
    path: std::path::PathBuf,
}

impl LoopDevice {
    /// `None` when this machine gives us no loop device (not root, no
    /// /dev/loop-control, no losetup): the test says so and stops, unless
    /// SEPIA_REQUIRE_LOOP is set.
    fn attach(backing: &std::path::Path) -> Option<LoopDevice> {
        let out = std::process::Command::new("losetup").args(["--find", "--show", "--direct-io=on"]).arg(backing).output().ok()?;
        if !out.status.success() {
            eprintln!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        let path = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Some(LoopDevice { path })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

#[test]
fn loop_block_device_round_trip_and_remount() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("backing");
    // Sparse is fine: the loop device reads holes as zeros.
    std::fs::File::create(&backing).unwrap().set_len(96 << 20).unwrap();
    let Some(lo) = LoopDevice::attach(&backing) else {
        assert!(std::env::var_os("SEPIA_REQUIRE_LOOP").is_none(), "SEPIA_REQUIRE_LOOP is set but no loop device could be attached");
        eprintln!("skipped: no loop device on this machine");
        return;
    };
    let dev_path = lo.path.clone();
    assert!(DmaDevice::is_block_device(&dev_path));
    assert_eq!(DmaDevice::size_of(&dev_path).unwrap(), 96 << 20, "a block device's size comes from the device");
    let objects = 500u32;
    let content = |i: u32| -> Vec<u8> { (0..(i % 7 + 1) * 3000).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect() };
    let p = dev_path.clone();
    run(move || async move {
        let dev = DmaDevice::open(&p).await.unwrap();
        assert_eq!(dev.len(), 96 << 20);
        let opts = MkfsOptions { fsid: [7; 16], osd: 2, shards: 2, osd_uuid: [3; 16], journal_bytes: Some(1 << 20), checkpoint_bytes: Some(2 << 20) };
        Store::mkfs(&dev, &opts).await.unwrap();
        assert_eq!(Store::superblock(&dev).await.unwrap().osd_uuid, [3; 16]);
        let s = Store::mount(dev, 0, Expect { fsid: Some([7; 16]), osd: 2, shards: 2 }).await.unwrap();
        s.submit(Transaction { ops: vec![Op::CreateCollection(C)] }).await.unwrap();
        // Enough records to wrap the 1 MiB journal several times.
        for i in 0..objects {
            s.submit(Transaction { ops: vec![Op::Write { coll: C, obj: format!("obj{i}"), offset: 0, data: content(i) }] }).await.unwrap();
        }
        assert!(s.counters().deltas > 0, "the journal wrapped into deltas: {:?}", s.counters());
        // No umount: the remount rebuilds the metadata from the checkpoint,
        // its deltas and the journal, as after `kill -9`.
        drop(s);
    });
    let p = dev_path.clone();
    run(move || async move {
        let s = Store::mount(DmaDevice::open(&p).await.unwrap(), 0, Expect { fsid: Some([7; 16]), osd: 2, shards: 2 }).await.unwrap();
        for i in 0..objects {
            assert_eq!(s.read(&C, &format!("obj{i}"), 0, 0).await.unwrap(), content(i), "obj{i}");
        }
        assert!(s.deep_scrub().await.is_empty());
        let (names, more) = s.list(&C, "", 10_000).unwrap();
        assert_eq!(names.len(), objects as usize);
        assert!(!more);
    });
    drop(lo);
}
