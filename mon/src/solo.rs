//! A one-monitor log: the consensus of a quorum of one, in `DIR/solo.log`.
//!
//! The file is a sequence of records `[len u32 LE][crc32 u32 LE][payload]`.
//! The first record may be a snapshot (the high bit of its length word
//! set): the whole monitor state (`ClusterState::snapshot`: maps, the
//! bounded incremental history, auth, service keys) after the log entries
//! it replaced. Every other record is one log entry (a serialized
//! `Batch`), appended and fsynced before it counts as committed.
//!
//! Compaction, like the Paxos path's: once `compact_min_entries` applied
//! entries follow the snapshot, the file is rewritten as a new snapshot of
//! the applied state plus the entries not applied yet — written to a
//! temporary file, fsynced, renamed over the log, and the directory
//! fsynced — so a crash leaves the old file or the new one, never a mix,
//! and the file stays bounded (one snapshot and at most about
//! `compact_min_entries` entries). Restart = the snapshot, then the tail.
//!
//! Invariants: an entry is returned by `take_committed` only after it is on
//! stable storage, and start-up replays exactly the snapshot and the
//! entries that were; a torn tail from a crash is cut off; a snapshot that
//! fails its crc or does not decode is an error at start, never an empty
//! store; a snapshot folds only entries the monitor applied (`state` must
//! reflect exactly the entries taken).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::daemon::{Committed, Consensus};
use crate::services::state::ClusterState;

/// Bounds of the solo log. Units last.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// The largest entry we accept (a batch of many map changes fits).
    pub const entry_bytes_max: usize = 64 << 20;
    /// The largest snapshot we read back (a big cluster's maps and auth
    /// database fit; it must stay below the length word's flag bit).
    pub const snapshot_bytes_max: usize = 1 << 30;
}

/// The length word's flag of a snapshot record.
const SNAPSHOT_FLAG: u32 = 1 << 31;

const LOG: &str = "solo.log";
const LOG_TMP: &str = "solo.log.tmp";

fn corrupt(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is corrupt: {why}", path.display()))
}

fn record(flag: u32, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(payload.len() + 8);
    r.extend_from_slice(&(payload.len() as u32 | flag).to_le_bytes());
    r.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    r.extend_from_slice(payload);
    r
}

pub struct SoloLog {
    dir: PathBuf,
    file: File,
    /// Entries on disk, not taken yet.
    committed: Vec<Vec<u8>>,
    /// What was on disk at start-up (the snapshot first), replayed first.
    replay: Vec<Committed>,
    /// Entry records in the file after its snapshot.
    entries_in_file: usize,
    /// Log index of the newest entry taken (the snapshot counts as the
    /// entries it replaced).
    taken: u64,
    /// Applied entries kept past the snapshot before the next compaction.
    compact_min_entries: usize,
    /// Set when the log cannot take entries any more (its file was
    /// replaced and could not be reopened): every proposal is refused.
    failed: Option<String>,
}

impl SoloLog {
    /// Opens (or creates) the log in `dir`; compacts once
    /// `compact_min_entries` applied entries follow the snapshot.
    pub fn open(dir: &Path, compact_min_entries: usize) -> std::io::Result<SoloLog> {
        std::fs::create_dir_all(dir)?;
        // A rewrite that crashed before its rename: the old file is whole.
        let _ = std::fs::remove_file(dir.join(LOG_TMP));
        let path = dir.join(LOG);
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut replay = Vec::new();
        let mut pos = 0usize;
        let mut base = 0u64;
        // The snapshot, if the file starts with one: all or an error.
        if bytes.len() >= 4 && u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) & SNAPSHOT_FLAG != 0 {
            if bytes.len() < 8 {
                return Err(corrupt(&path, "a snapshot record without its header"));
            }
            let len = (u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) & !SNAPSHOT_FLAG) as usize;
            let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
            if len > limits::snapshot_bytes_max || 8 + len > bytes.len() || crc32fast::hash(&bytes[8..8 + len]) != crc {
                return Err(corrupt(&path, "the snapshot record fails its check"));
            }
            let state = ClusterState::restore(&bytes[8..8 + len]).map_err(|e| corrupt(&path, &format!("the snapshot does not decode: {e}")))?;
            base = state.applied;
            replay.push(Committed::State(Box::new(state)));
            pos = 8 + len;
        }
        let mut entries = 0usize;
        while pos + 8 <= bytes.len() {
            let word = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes"));
            let len = word as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let end = pos + 8 + len;
            if word & SNAPSHOT_FLAG != 0 || len > limits::entry_bytes_max || end > bytes.len() || crc32fast::hash(&bytes[pos + 8..end]) != crc {
                break;
            }
            replay.push(Committed::Entry(bytes[pos + 8..end].to_vec()));
            entries += 1;
            pos = end;
        }
        if pos < bytes.len() {
            // A torn or corrupt tail: it was never acknowledged. Cut it.
            file.set_len(pos as u64)?;
            file.seek(SeekFrom::End(0))?;
            file.sync_all()?;
        }
        Ok(SoloLog {
            dir: dir.to_path_buf(),
            file,
            committed: Vec::new(),
            replay,
            entries_in_file: entries,
            taken: base,
            compact_min_entries: compact_min_entries.max(1),
            failed: None,
        })
    }

    /// Bytes in the log file now.
    pub fn file_bytes(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Rewrites the file as a snapshot of `state` (everything taken) plus
    /// the entries not taken yet: temporary file, fsync, rename, fsync dir.
    fn rewrite(&mut self, state: &ClusterState) -> std::io::Result<()> {
        let snapshot = state.snapshot();
        if snapshot.is_empty() || snapshot.len() > limits::snapshot_bytes_max {
            return Err(std::io::Error::other(format!("a snapshot of {} bytes cannot be written", snapshot.len())));
        }
        let tmp = self.dir.join(LOG_TMP);
        let path = self.dir.join(LOG);
        let mut out = record(SNAPSHOT_FLAG, &snapshot);
        for e in &self.committed {
            out.extend_from_slice(&record(0, e));
        }
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The new file is the log now: appends must go to it.
        match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => self.file = f,
            Err(e) => {
                self.failed = Some(format!("the log was rewritten but cannot be reopened: {e}"));
                return Err(e);
            }
        }
        self.entries_in_file = self.committed.len();
        File::open(&self.dir)?.sync_all()
    }
}

impl Consensus for SoloLog {
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String> {
        if let Some(why) = &self.failed {
            return Err(why.clone());
        }
        if entry.len() > limits::entry_bytes_max {
            return Err(format!("entry of {} bytes exceeds {}", entry.len(), limits::entry_bytes_max));
        }
        self.file.write_all(&record(0, &entry)).map_err(|e| e.to_string())?;
        self.file.sync_data().map_err(|e| e.to_string())?;
        self.committed.push(entry);
        self.entries_in_file += 1;
        Ok(())
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        let mut out = std::mem::take(&mut self.replay);
        out.extend(self.committed.drain(..).map(Committed::Entry));
        self.taken += out.iter().filter(|c| matches!(c, Committed::Entry(_))).count() as u64;
        out
    }

    fn compact(&mut self, state: &ClusterState) -> Option<u64> {
        let applied_in_file = self.entries_in_file - self.committed.len();
        // Only what was taken and applied, and only the state that
        // reflects exactly that, is folded.
        if !self.replay.is_empty() || applied_in_file < self.compact_min_entries || state.applied != self.taken {
            return None;
        }
        match self.rewrite(state) {
            Ok(()) => Some(self.taken),
            Err(e) => {
                // The old file is whole: keep appending to it, retry later.
                eprintln!("solo log: compaction failed (the log keeps growing until it works): {e}");
                None
            }
        }
    }

    fn tick(&mut self) {}

    fn have_quorum(&self) -> bool {
        true
    }

    fn is_leader(&self) -> bool {
        true
    }

    fn leader(&self) -> Option<u64> {
        Some(1)
    }

    fn quorum_members(&self) -> Vec<u64> {
        vec![1]
    }

    fn election_epoch(&self) -> u64 {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(c: Vec<Committed>) -> Vec<Vec<u8>> {
        c.into_iter()
            .map(|c| match c {
                Committed::Entry(e) => e,
                Committed::State(_) => panic!("the solo log has no snapshots"),
            })
            .collect()
    }

    #[test]
    fn entries_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = std::env::temp_dir().join(format!("sepia-solo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let mut log = SoloLog::open(&dir, 1000).unwrap();
            log.propose(b"one".to_vec()).unwrap();
            log.propose(b"two".to_vec()).unwrap();
            assert_eq!(entries(log.take_committed()), vec![b"one".to_vec(), b"two".to_vec()]);
        }
        // A crash mid-append leaves half a record.
        let mut f = OpenOptions::new().append(true).open(dir.join("solo.log")).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let mut log = SoloLog::open(&dir, 1000).unwrap();
        assert_eq!(entries(log.take_committed()), vec![b"one".to_vec(), b"two".to_vec()]);
        log.propose(b"three".to_vec()).unwrap();
        drop(log);
        let mut log = SoloLog::open(&dir, 1000).unwrap();
        assert_eq!(log.take_committed().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A bootstrapped state and entries that each replace one entity's key
    /// (the state stays the same size however many there are).
    struct Cluster {
        state: ClusterState,
    }

    impl Cluster {
        fn bootstrap() -> (Cluster, Vec<u8>) {
            use crate::services::service::{MonConfig, MonServices};
            let monmap = sepia_proto::monmap::MonMap::new([3; 16], &[("a".into(), "127.0.0.1:3300".into())], 0).unwrap();
            let osdmap = sepia_proto::osdmap::OsdMap::new([3; 16], crush_simd::edit::default_map("osd").unwrap(), 0);
            let entry = MonServices::new(1, MonConfig::default()).bootstrap_entry(monmap, &osdmap, Vec::new());
            (Cluster { state: ClusterState::new() }, entry)
        }

        fn key_change(i: usize) -> Vec<u8> {
            use crate::services::state::{AuthEntry, Batch, Tx};
            let entry = AuthEntry { key: format!("key-{i:08}"), caps: [("mon".to_string(), "allow r".to_string())].into() };
            Batch { proposer: 1, seq: i as u64, txs: vec![Tx::AuthSet { entity: format!("client.c{}", i % 3), entry }] }.encode()
        }

        /// Applies what the log hands over, as the daemon does.
        fn apply(&mut self, c: Vec<Committed>) {
            for step in c {
                match step {
                    Committed::Entry(e) => {
                        self.state.apply_entry(&e).unwrap();
                    }
                    Committed::State(s) => self.state = *s,
                }
            }
        }
    }

    #[test]
    fn the_log_compacts_into_a_snapshot_stays_bounded_and_restarts_whole() {
        let dir = std::env::temp_dir().join(format!("sepia-solo-compact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        const TRIM: usize = 20;
        let (mut live, boot) = Cluster::bootstrap();
        let mut log = SoloLog::open(&dir, TRIM).unwrap();
        log.propose(boot).unwrap();
        live.apply(log.take_committed());
        let mut compactions = Vec::new();
        let mut largest = 0u64;
        for i in 0..(TRIM * 10 + 7) {
            log.propose(Cluster::key_change(i)).unwrap();
            live.apply(log.take_committed());
            if let Some(idx) = log.compact(&live.state) {
                assert_eq!(idx, live.state.applied);
                compactions.push(idx);
            }
            largest = largest.max(log.file_bytes().unwrap());
        }
        assert_eq!(compactions.len(), 10, "one compaction per {TRIM} applied entries: {compactions:?}");
        // Bounded: one snapshot and fewer than TRIM entries, whatever the count.
        let record_max = (8 + Cluster::key_change(0).len()) as u64;
        let snapshot = 8 + live.state.snapshot().len() as u64;
        assert!(largest <= snapshot + TRIM as u64 * record_max, "{largest} > {snapshot} + {TRIM} x {record_max}");
        assert!(!dir.join(LOG_TMP).exists());
        // A restart finds everything: the snapshot, then the tail.
        drop(log);
        let mut log = SoloLog::open(&dir, TRIM).unwrap();
        let replay = log.take_committed();
        assert!(matches!(replay.first(), Some(Committed::State(_))), "the snapshot comes first");
        // The bootstrap and TRIM x 10 + 7 changes: 208 entries, folded at
        // 20, 40, ... 200.
        assert_eq!(replay.len(), 1 + 8, "the snapshot and the 8 entries after the last compaction");
        let mut restarted = Cluster { state: ClusterState::new() };
        restarted.apply(replay);
        assert_eq!(restarted.state, live.state);
        assert_eq!(
            restarted.state.auth.get("client.c1").map(|e| e.key.as_str()),
            Some(format!("key-{:08}", (0..TRIM * 10 + 7).rev().find(|i| i % 3 == 1).unwrap()).as_str())
        );
        // And goes on from there: entries proposed but not yet applied at a
        // compaction are kept after the new snapshot.
        for i in 0..TRIM {
            log.propose(Cluster::key_change(1000 + i)).unwrap();
            restarted.apply(log.take_committed());
        }
        log.propose(Cluster::key_change(5000)).unwrap();
        assert!(log.compact(&restarted.state).is_some());
        drop(log);
        let mut log = SoloLog::open(&dir, TRIM).unwrap();
        let replay = log.take_committed();
        assert_eq!(replay.len(), 2, "the snapshot and the entry it did not fold");
        let mut again = Cluster { state: ClusterState::new() };
        again.apply(replay);
        restarted.apply(vec![Committed::Entry(Cluster::key_change(5000))]);
        assert_eq!(again.state, restarted.state);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_state_that_is_not_the_taken_prefix_is_not_folded() {
        let dir = std::env::temp_dir().join(format!("sepia-solo-nofold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut live, boot) = Cluster::bootstrap();
        let mut log = SoloLog::open(&dir, 2).unwrap();
        log.propose(boot).unwrap();
        live.apply(log.take_committed());
        for i in 0..3 {
            log.propose(Cluster::key_change(i)).unwrap();
        }
        // Not taken yet: nothing to fold.
        assert_eq!(log.compact(&live.state), None);
        // Taken but not applied: the state lags the log, nothing is folded.
        let taken = log.take_committed();
        assert_eq!(log.compact(&live.state), None);
        live.apply(taken);
        assert_eq!(log.compact(&live.state), Some(4));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_snapshot_is_an_error_and_a_leftover_rewrite_is_ignored() {
        let dir = std::env::temp_dir().join(format!("sepia-solo-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut live, boot) = Cluster::bootstrap();
        let mut log = SoloLog::open(&dir, 1).unwrap();
        log.propose(boot).unwrap();
        live.apply(log.take_committed());
        log.propose(Cluster::key_change(1)).unwrap();
        live.apply(log.take_committed());
        assert!(log.compact(&live.state).is_some());
        drop(log);
        // A crash mid-rewrite leaves a temporary file: the log is whole.
        std::fs::write(dir.join(LOG_TMP), b"half a rewrite").unwrap();
        let mut log = SoloLog::open(&dir, 1).unwrap();
        let mut back = Cluster { state: ClusterState::new() };
        back.apply(log.take_committed());
        assert_eq!(back.state, live.state);
        assert!(!dir.join(LOG_TMP).exists());
        drop(log);
        // A flipped bit in the snapshot: an error, not an empty store.
        let path = dir.join(LOG);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let e = SoloLog::open(&dir, 1).err().expect("a corrupt snapshot is refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
