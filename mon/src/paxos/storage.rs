//! The durable Paxos state of one monitor: omnipaxos's `Storage` on one
//! append-only file.
//!
//! Every mutating call becomes ONE framed record `[len u32 LE][crc32 u32 LE][payload]`
//! (payload = serde_json of `Vec<Rec<T>>`), written with one `write_all` and then
//! `sync_data()` (fdatasync) before the call returns. `write_atomically` puts all its ops
//! in one record, so a crash leaves either all or none of them: on open, the file is
//! replayed and a torn/corrupt tail record is cut off.
//! The whole state is mirrored in memory (fine for a monitor's small log); when the log
//! is trimmed the file is rewritten as a single checkpoint record (tmp + fsync + rename
//! + fsync dir).
//!
//! A trim (compaction: omnipaxos stores the snapshot with it) never appends:
//! it rewrites the file, so the trimmed entries' bytes are really gone.
//!
//! Invariant: a call returns only after its record is on stable storage, so
//! a promise or an accepted entry is never forgotten by a crash; replay
//! stops at the first torn record and cuts the file there; a whole record
//! that fails its crc at the start of the file (the checkpoint) or one
//! whose crc holds but does not decode is an error (`InvalidData`), never
//! silently dropped.
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

#[derive(Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
enum Rec<T: Entry> {
    Append(Vec<T>),
    AppendOnPrefix(usize, Vec<T>),
    Promise(Ballot),
    Decided(usize),
    AccRound(Ballot),
    CompactedIdx(usize),
    Trim(usize),
    StopSign(Option<StopSign>),
    Snapshot(Option<T::Snapshot>),
    /// Full state; first (only) record of a rewritten file.
    Checkpoint {
        log: Vec<T>,
        trimmed_idx: usize,
        promise: Option<Ballot>,
        acc_round: Option<Ballot>,
        decided_idx: usize,
        compacted_idx: usize,
        stopsign: Option<StopSign>,
        snapshot: Option<T::Snapshot>,
    },
}

pub struct FileStorage<T: Entry> {
    path: PathBuf,
    file: File,
    file_len: u64,
    /// fdatasync after every record (must be true for real durability).
    pub sync: bool,
    m: Mirror<T>,
}

/// The in-memory mirror of the file (same semantics as
/// omnipaxos_storage::MemoryStorage).
#[derive(Clone)]
struct Mirror<T: Entry> {
    log: Vec<T>,        // entries with absolute index trimmed_idx..
    trimmed_idx: usize, // absolute index of log[0]
    promise: Option<Ballot>,
    acc_round: Option<Ballot>,
    decided_idx: usize,
    compacted_idx: usize,
    stopsign: Option<StopSign>,
    snapshot: Option<T::Snapshot>,
}

impl<T: Entry> Mirror<T> {
    fn new() -> Self {
        Mirror { log: vec![], trimmed_idx: 0, promise: None, acc_round: None, decided_idx: 0, compacted_idx: 0, stopsign: None, snapshot: None }
    }

    fn apply(&mut self, r: Rec<T>) {
        match r {
            Rec::Append(mut e) => self.log.append(&mut e),
            Rec::AppendOnPrefix(from, mut e) => {
                self.log.truncate(from.saturating_sub(self.trimmed_idx));
                self.log.append(&mut e);
            }
            Rec::Promise(b) => self.promise = Some(b),
            Rec::Decided(i) => self.decided_idx = i,
            Rec::AccRound(b) => self.acc_round = Some(b),
            Rec::CompactedIdx(i) => self.compacted_idx = i,
            Rec::Trim(idx) => {
                if idx > self.trimmed_idx {
                    let n = (idx - self.trimmed_idx).min(self.log.len());
                    self.log.drain(0..n);
                    self.trimmed_idx = idx;
                }
            }
            Rec::StopSign(ss) => self.stopsign = ss,
            Rec::Snapshot(s) => self.snapshot = s,
            Rec::Checkpoint { log, trimmed_idx, promise, acc_round, decided_idx, compacted_idx, stopsign, snapshot } => {
                *self = Mirror { log, trimmed_idx, promise, acc_round, decided_idx, compacted_idx, stopsign, snapshot };
            }
        }
    }
}

/// An entry that can be told where it sits in the log: entries read back
/// are stamped with their absolute index and whether they were decided
/// (the monitor's snapshots need both; see `paxos::MonSnapshot`).
pub trait Positioned {
    fn at(self, idx: usize, decided: bool) -> Self;
}

fn fsync_dir(p: &Path) -> std::io::Result<()> {
    let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

fn corrupt(path: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} is corrupt: {why}", path.display()))
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(8 + payload.len());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

impl<T> FileStorage<T>
where
    T: Entry + Positioned + Serialize + DeserializeOwned,
{
    /// Opens (or creates) the store at `path` and replays it.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let existed = path.exists();
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
        if !existed {
            file.sync_all()?;
            fsync_dir(&path)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        // A rewrite that crashed before its rename left only a temporary.
        let _ = fs::remove_file(path.with_extension("tmp"));
        let mut s = FileStorage { path, file, file_len: 0, sync: true, m: Mirror::new() };
        let mut off = 0usize;
        while bytes.len() - off >= 8 {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes"));
            let Some(payload) = bytes.get(off + 8..off + 8 + len) else { break };
            if crc32fast::hash(payload) != crc {
                // A whole first record that does not check out is not a
                // torn append: it is the checkpoint (snapshot and all)
                // gone bad, and cutting it would forget decided state.
                if off == 0 {
                    return Err(corrupt(&s.path, "its first record (the checkpoint) fails its crc"));
                }
                break;
            }
            let recs = serde_json::from_slice::<Vec<Rec<T>>>(payload).map_err(|e| corrupt(&s.path, &format!("a record with a good crc does not decode: {e}")))?;
            for r in recs {
                s.m.apply(r);
            }
            off += 8 + len;
        }
        if off < bytes.len() {
            // torn / corrupt tail from a crash mid-write: drop it
            s.file.set_len(off as u64)?;
            s.file.sync_all()?;
        }
        s.file_len = off as u64;
        Ok(s)
    }


    /// Durably appends one record holding `recs`, then applies them to the mirror.
    /// On error nothing is applied (and the file is cut back), so the call is atomic.
    /// A trim instead rewrites the whole file without the trimmed entries:
    /// that is what really drops their bytes.
    fn commit(&mut self, recs: Vec<Rec<T>>) -> StorageResult<()> {
        if recs.iter().any(|r| matches!(r, Rec::Trim(_))) {
            let before = self.m.clone();
            for r in recs {
                self.m.apply(r);
            }
            if let Err(e) = self.rewrite() {
                self.m = before;
                return Err(e);
            }
            return Ok(());
        }
        // A decided index alone needs no fsync: after a crash a lower one
        // is learned again from the leader, and the daemon replays decided
        // entries from the snapshot anyway. Promises and accepted entries
        // are what Paxos must never forget.
        let only_decided = recs.iter().all(|r| matches!(r, Rec::Decided(_)));
        let buf = frame(&serde_json::to_vec(&recs)?);
        let res = self.file.write_all(&buf).and_then(|_| {
            if self.sync && !only_decided { self.file.sync_data() } else { Ok(()) }
        });
        if let Err(e) = res {
            let _ = self.file.set_len(self.file_len); // best effort; replay also drops torn tails
            return Err(Box::new(e));
        }
        self.file_len += buf.len() as u64;
        for r in recs {
            self.m.apply(r);
        }
        Ok(())
    }

    /// Rewrites the file as one checkpoint record (tmp file, fsync, rename, fsync dir):
    /// a crash leaves either the old file or the new one, never a mix.
    fn rewrite(&mut self) -> StorageResult<()> {
        let m = &self.m;
        let cp: Rec<T> = Rec::Checkpoint {
            log: m.log.clone(),
            trimmed_idx: m.trimmed_idx,
            promise: m.promise,
            acc_round: m.acc_round,
            decided_idx: m.decided_idx,
            compacted_idx: m.compacted_idx,
            stopsign: m.stopsign.clone(),
            snapshot: m.snapshot.clone(),
        };
        let buf = frame(&serde_json::to_vec(&vec![cp])?);
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            if self.sync {
                f.sync_all()?;
            }
        }
        fs::rename(&tmp, &self.path)?;
        if self.sync {
            fsync_dir(&self.path)?;
        }
        self.file = OpenOptions::new().read(true).append(true).open(&self.path)?;
        self.file_len = buf.len() as u64;
        Ok(())
    }

    /// Log entries [f, t) relative to the trimmed prefix, stamped with
    /// their absolute index and whether they are decided.
    fn positioned(&self, f: usize, t: usize) -> Vec<T> {
        let base = self.m.trimmed_idx;
        self.m.log.get(f..t).unwrap_or(&[]).iter().enumerate().map(|(i, e)| e.clone().at(base + f + i, base + f + i < self.m.decided_idx)).collect()
    }

    /// Bytes of the file on disk (tests: a trim shrinks it).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
}

impl<T> Storage<T> for FileStorage<T>
where
    T: Entry + Positioned + Serialize + DeserializeOwned,
{
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        let recs = ops
            .into_iter()
            .map(|op| match op {
                StorageOp::AppendEntry(e) => Rec::Append(vec![e]),
                StorageOp::AppendEntries(e) => Rec::Append(e),
                StorageOp::AppendOnPrefix(i, e) => Rec::AppendOnPrefix(i, e),
                StorageOp::SetPromise(b) => Rec::Promise(b),
                StorageOp::SetDecidedIndex(i) => Rec::Decided(i),
                StorageOp::SetAcceptedRound(b) => Rec::AccRound(b),
                StorageOp::SetCompactedIdx(i) => Rec::CompactedIdx(i),
                StorageOp::Trim(i) => Rec::Trim(i),
                StorageOp::SetStopsign(s) => Rec::StopSign(s),
                StorageOp::SetSnapshot(s) => Rec::Snapshot(s),
            })
            .collect();
        self.commit(recs)
    }
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.commit(vec![Rec::Append(vec![entry])])
    }
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.commit(vec![Rec::Append(entries)])
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.commit(vec![Rec::AppendOnPrefix(from_idx, entries)])
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.commit(vec![Rec::Promise(n_prom)])
    }
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.commit(vec![Rec::Decided(ld)])
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.m.decided_idx)
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.commit(vec![Rec::AccRound(na)])
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.m.acc_round)
    }
    /// `from`/`to` are ABSOLUTE log indices (as if never trimmed); [from, to),
    /// cut to the entries we hold (omnipaxos asks a lagging follower for its
    /// log up to the leader's decided index while building its snapshot).
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        let (Some(f), Some(t)) = (from.checked_sub(self.m.trimmed_idx), to.checked_sub(self.m.trimmed_idx)) else {
            return Ok(vec![]);
        };
        Ok(self.positioned(f, t.min(self.m.log.len())))
    }
    /// Length WITHOUT the trimmed prefix.
    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.m.log.len())
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        let Some(f) = from.checked_sub(self.m.trimmed_idx) else { return Ok(vec![]) };
        Ok(self.positioned(f, self.m.log.len()))
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.m.promise)
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.commit(vec![Rec::StopSign(s)])
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.m.stopsign.clone())
    }
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.commit(vec![Rec::Trim(idx)])
    }
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.commit(vec![Rec::CompactedIdx(idx)])
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.m.compacted_idx)
    }
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.commit(vec![Rec::Snapshot(snapshot)])
    }
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.m.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paxos::Cmd;

    #[test]
    fn replay_torn_tail_and_trim_checkpoint() {
        let p = std::env::temp_dir().join(format!("sepia-paxos-storage-{}.paxos", std::process::id()));
        let _ = fs::remove_file(&p);
        {
            let mut s = FileStorage::<Cmd>::open(&p).unwrap();
            s.set_promise(Ballot::with(1, 2, 0, 3)).unwrap();
            s.append_entries((0..5u8).map(|i| Cmd::new(vec![i])).collect()).unwrap();
            s.write_atomically(vec![
                StorageOp::SetAcceptedRound(Ballot::with(1, 2, 0, 3)),
                StorageOp::SetDecidedIndex(3),
                StorageOp::AppendOnPrefix(4, vec![Cmd::new(vec![40]), Cmd::new(vec![50])]),
            ])
            .unwrap();
        }
        // simulate a crash in the middle of writing the next record
        OpenOptions::new().append(true).open(&p).unwrap().write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let mut s = FileStorage::<Cmd>::open(&p).unwrap();
        assert_eq!(s.get_promise().unwrap().unwrap().n, 2);
        assert_eq!(s.get_decided_idx().unwrap(), 3);
        assert_eq!(s.get_log_len().unwrap(), 6);
        assert_eq!(s.get_entries(4, 6).unwrap(), vec![Cmd::new(vec![40]), Cmd::new(vec![50])]);
        // trim => file rewritten as one checkpoint; absolute indices still work
        s.write_atomically(vec![StorageOp::Trim(3), StorageOp::SetCompactedIdx(3)]).unwrap();
        s.append_entry(Cmd::new(vec![60])).unwrap();
        drop(s);
        let s = FileStorage::<Cmd>::open(&p).unwrap();
        assert_eq!(s.get_compacted_idx().unwrap(), 3);
        assert_eq!(s.get_log_len().unwrap(), 4);
        assert_eq!(s.get_suffix(5).unwrap(), vec![Cmd::new(vec![50]), Cmd::new(vec![60])]);
        assert_eq!(s.get_entries(0, 2).unwrap(), vec![]);
        let _ = fs::remove_file(&p);
    }

    #[test]
    fn a_trim_drops_the_bytes_and_a_corrupt_checkpoint_is_an_error() {
        let p = std::env::temp_dir().join(format!("sepia-paxos-trim-{}.paxos", std::process::id()));
        let _ = fs::remove_file(&p);
        let mut s = FileStorage::<Cmd>::open(&p).unwrap();
        s.append_entries((0..200u8).map(|i| Cmd::new(vec![i; 64])).collect()).unwrap();
        s.set_decided_idx(200).unwrap();
        let grown = fs::metadata(&p).unwrap().len();
        s.write_atomically(vec![StorageOp::Trim(195), StorageOp::SetCompactedIdx(195)]).unwrap();
        let trimmed = fs::metadata(&p).unwrap().len();
        assert_eq!(trimmed, s.file_len());
        assert!(trimmed * 10 < grown, "a trim to 5 of 200 entries left {trimmed} of {grown} bytes");
        assert!(!p.with_extension("tmp").exists());
        drop(s);
        let s = FileStorage::<Cmd>::open(&p).unwrap();
        assert_eq!((s.get_compacted_idx().unwrap(), s.get_decided_idx().unwrap(), s.get_log_len().unwrap()), (195, 200, 5));
        drop(s);
        // Flip a byte inside the checkpoint: a clear error, not an empty store.
        let mut bytes = fs::read(&p).unwrap();
        bytes[20] ^= 0x55;
        fs::write(&p, &bytes).unwrap();
        let err = FileStorage::<Cmd>::open(&p).err().expect("a corrupt checkpoint must not open");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), bytes, "nothing was cut from a corrupt file");
        let _ = fs::remove_file(&p);
    }
}
