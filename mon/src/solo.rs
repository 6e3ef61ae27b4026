//! A one-monitor log: the consensus of a quorum of one. Entries are
//! appended to `DIR/solo.log` (length + crc32 framed) and fsynced before
//! they count as committed; a torn tail from a crash is cut off at
//! start-up. Multi-monitor clusters use the Paxos log (`crate::paxos`).
//!
//! Invariant: an entry is returned by `take_committed` only after it is on
//! stable storage, and start-up replays exactly the entries that were.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::daemon::{Committed, Consensus};

/// The largest entry we accept (a batch of many map changes fits).
#[allow(non_upper_case_globals)]
const entry_bytes_max: usize = 64 << 20;

pub struct SoloLog {
    file: File,
    committed: Vec<Vec<u8>>,
    /// Entries already on disk at start-up, replayed first.
    replay: Vec<Vec<u8>>,
}

impl SoloLog {
    pub fn open(dir: &Path) -> std::io::Result<SoloLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("solo.log");
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut replay = Vec::new();
        let mut pos = 0usize;
        while pos + 8 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
            let end = pos + 8 + len;
            if len > entry_bytes_max || end > bytes.len() || crc32fast::hash(&bytes[pos + 8..end]) != crc {
                break;
            }
            replay.push(bytes[pos + 8..end].to_vec());
            pos = end;
        }
        if pos < bytes.len() {
            // A torn or corrupt tail: it was never acknowledged. Cut it.
            file.set_len(pos as u64)?;
            file.seek(SeekFrom::End(0))?;
            file.sync_all()?;
        }
        Ok(SoloLog { file, committed: Vec::new(), replay })
    }
}

impl Consensus for SoloLog {
    fn propose(&mut self, entry: Vec<u8>) -> Result<(), String> {
        if entry.len() > entry_bytes_max {
            return Err(format!("entry of {} bytes exceeds {entry_bytes_max}", entry.len()));
        }
        let mut record = Vec::with_capacity(entry.len() + 8);
        record.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&entry).to_le_bytes());
        record.extend_from_slice(&entry);
        self.file.write_all(&record).map_err(|e| e.to_string())?;
        self.file.sync_data().map_err(|e| e.to_string())?;
        self.committed.push(entry);
        Ok(())
    }

    fn take_committed(&mut self) -> Vec<Committed> {
        let mut out = std::mem::take(&mut self.replay);
        out.append(&mut self.committed);
        out.into_iter().map(Committed::Entry).collect()
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
            let mut log = SoloLog::open(&dir).unwrap();
            log.propose(b"one".to_vec()).unwrap();
            log.propose(b"two".to_vec()).unwrap();
            assert_eq!(entries(log.take_committed()), vec![b"one".to_vec(), b"two".to_vec()]);
        }
        // A crash mid-append leaves half a record.
        let mut f = OpenOptions::new().append(true).open(dir.join("solo.log")).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let mut log = SoloLog::open(&dir).unwrap();
        assert_eq!(entries(log.take_committed()), vec![b"one".to_vec(), b"two".to_vec()]);
        log.propose(b"three".to_vec()).unwrap();
        drop(log);
        let mut log = SoloLog::open(&dir).unwrap();
        assert_eq!(log.take_committed().len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
