//! Chaos under load: writers keep writing, removing and reading back while
//! OSDs are killed with SIGKILL (one, two or all three at a time) and
//! started again; no acknowledged write may be lost, and no read may
//! return anything older than the last acknowledged write.
//!
//! The pool has size 3 and min_size 1, the hardest case for peering (a
//! lone member takes writes), and the PG logs are short
//! (`SEPIA_OSD_PG_LOG_MAX`) so returning OSDs need backfill too. The kill
//! schedule comes from a seed (`SEPIA_CHAOS_SEED`, default 1) and the run
//! lasts `SEPIA_CHAOS_SECS` (default 20); the timing of the daemons is
//! not deterministic, so a failure prints the history of the object.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{cluster_up, pool, runtime};
use sepia_client::cluster;
use sepia_client::rados::{IoCtx, RadosError};
use sepia_proto::errno::Errno;

const WRITERS: u64 = 4;
const OBJECTS_PER_WRITER: u64 = 30;

/// What an object may hold: the last acknowledged content (`None`:
/// absent) and what unacknowledged ops since then may have left instead.
#[derive(Default, Clone)]
struct Expected {
    acked: Option<Vec<u8>>,
    maybe: Vec<Option<Vec<u8>>>,
    history: Vec<String>,
}

impl Expected {
    fn allows(&self, got: &Option<Vec<u8>>) -> bool {
        *got == self.acked || self.maybe.contains(got)
    }

    fn note(&mut self, t0: Instant, what: String) {
        self.history.push(format!("[{:.3}s] {what}", t0.elapsed().as_secs_f64()));
        if self.history.len() > 10 {
            self.history.remove(0);
        }
    }
}

type State = Arc<Mutex<HashMap<String, Expected>>>;

fn show(v: &Option<Vec<u8>>) -> String {
    match v {
        Some(b) => format!("{:?} ({} bytes)", String::from_utf8_lossy(&b[..b.len().min(16)]), b.len()),
        None => "absent".into(),
    }
}

/// The object's content, `None` if absent; `Err` for any other failure.
async fn fetch(io: &IoCtx, obj: &str) -> Result<Option<Vec<u8>>, RadosError> {
    match io.read(obj, 0, 0).await {
        Ok(b) => Ok(Some(b)),
        Err(RadosError::Errno(Errno::NoEnt)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn writer(w: u64, io: IoCtx, state: State, stop: Arc<AtomicBool>, t0: Instant) -> u64 {
    let mut acked = 0;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let obj = format!("w{w}.o{}", (seq * 7) % OBJECTS_PER_WRITER);
        if seq % 11 == 0 {
            // Read first: what the object holds must be what we expect.
            let before = fetch(&io, &obj).await;
            {
                let mut s = state.lock().unwrap();
                let e = s.entry(obj.clone()).or_default();
                if let Ok(got) = &before {
                    assert!(e.allows(got), "{obj} held {} before a remove; acknowledged {}; history {:#?}", show(got), show(&e.acked), e.history);
                }
                e.maybe.push(None);
            }
            let r = io.remove(&obj).await;
            let mut s = state.lock().unwrap();
            let e = s.get_mut(&obj).unwrap();
            e.note(t0, format!("remove #{seq}: {r:?}"));
            match r {
                Ok(()) => {
                    *e = Expected { history: std::mem::take(&mut e.history), ..Expected::default() };
                    acked += 1;
                }
                Err(RadosError::Errno(Errno::NoEnt)) => {
                    // It was absent: allowed only by what came before this
                    // remove (the last `maybe` is the remove's own).
                    let before = Expected { maybe: e.maybe[..e.maybe.len() - 1].to_vec(), ..e.clone() };
                    assert!(before.allows(&None), "{obj}: remove answered ENOENT; acknowledged {}; history {:#?}", show(&e.acked), e.history);
                    *e = Expected { history: std::mem::take(&mut e.history), ..Expected::default() };
                }
                Err(_) => {}
            }
            continue;
        }
        let len = 1 + ((seq.wrapping_mul(2_654_435_761) ^ w) % 9000) as usize;
        let value: Vec<u8> = format!("w{w}-#{seq}-").bytes().cycle().take(len).collect();
        state.lock().unwrap().entry(obj.clone()).or_default().maybe.push(Some(value.clone()));
        let r = io.write_full(&obj, &value).await;
        let ok = r.is_ok();
        {
            let mut s = state.lock().unwrap();
            let e = s.get_mut(&obj).unwrap();
            e.note(t0, format!("write_full #{seq} ({len} bytes): {r:?}"));
            if ok {
                *e = Expected { acked: Some(value.clone()), maybe: Vec::new(), history: std::mem::take(&mut e.history) };
                acked += 1;
            }
        }
        if ok && seq % 3 == 0 {
            // Read-your-writes, whichever OSD is primary now.
            if let Ok(got) = fetch(&io, &obj).await {
                let s = state.lock().unwrap();
                let e = &s[&obj];
                assert!(e.allows(&got), "{obj} read {} right after its write was acknowledged; history {:#?}", show(&got), e.history);
            }
        }
    }
    acked
}

#[test]
fn kill_9_chaos_under_writers_loses_no_acknowledged_write() {
    let secs: u64 = std::env::var("SEPIA_CHAOS_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("SEPIA_CHAOS_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    // Short logs: an OSD that was away for a while needs backfill. (This
    // file is its own test binary, so the variable reaches only our OSDs.)
    std::env::set_var("SEPIA_OSD_PG_LOG_MAX", "64");
    let (guard, conf) = cluster_up("chaos", 3);
    let dir = guard.dir.clone();
    let rt = runtime();
    let rados = rt.block_on(sepia_client::rados::Rados::connect_conf(&conf, "client.admin")).unwrap();
    let io = rt.block_on(pool(&rados, "chaos", 3, 1, 16));
    let state: State = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writers: Vec<_> = (0..WRITERS).map(|w| rt.spawn(writer(w, io.clone(), state.clone(), stop.clone(), t0))).collect();

    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let kill = |id: u64| assert!(cluster::signal(&dir, &format!("osd.{id}"), libc::SIGKILL), "osd.{id} was running");
    let start = |id: u64| {
        cluster::start_osd(&dir, id as i32).unwrap();
    };
    let mut rounds = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(1000 + next(3000)));
        let a = next(3);
        let b = (a + 1 + next(2)) % 3;
        match next(6) {
            0 => {
                eprintln!("[{:.1}s] kill -9 every OSD", t0.elapsed().as_secs_f64());
                (0..3).for_each(kill);
                std::thread::sleep(Duration::from_millis(next(2000)));
                for id in [a, b, 3 - a - b] {
                    start(id);
                    std::thread::sleep(Duration::from_millis(next(1500)));
                }
            }
            1 | 2 => {
                eprintln!("[{:.1}s] kill -9 osd.{a} and osd.{b}", t0.elapsed().as_secs_f64());
                kill(a);
                kill(b);
                std::thread::sleep(Duration::from_millis(500 + next(4000)));
                start(a);
                std::thread::sleep(Duration::from_millis(next(2000)));
                start(b);
            }
            _ => {
                eprintln!("[{:.1}s] kill -9 osd.{a}", t0.elapsed().as_secs_f64());
                kill(a);
                std::thread::sleep(Duration::from_millis(500 + next(4000)));
                start(a);
            }
        }
        rounds += 1;
        cluster::wait_for_osds_up(&dir, 3, Duration::from_secs(60)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let acked: u64 = writers.into_iter().map(|w| rt.block_on(w).unwrap()).sum();
    eprintln!("{rounds} kill rounds; {acked} acknowledged writes and removes");
    assert!(rounds >= 2 && acked > 0, "the run must overlap writes with kills");

    let check = |when: &str| {
        let s = state.lock().unwrap();
        for (obj, e) in s.iter() {
            let got = rt.block_on(fetch(&io, obj)).unwrap_or_else(|err| panic!("{when}: read {obj}: {err}"));
            assert!(e.allows(&got), "{when}: {obj} holds {}; acknowledged {}; history {:#?}", show(&got), show(&e.acked), e.history);
        }
        eprintln!("{when}: {} objects as acknowledged", s.len());
    };
    check("after the chaos");
    // And once more after every OSD went down at once and came back.
    (0..3).for_each(kill);
    std::thread::sleep(Duration::from_millis(300));
    (0..3).for_each(start);
    cluster::wait_for_osds_up(&dir, 3, Duration::from_secs(60)).unwrap();
    check("after a restart of every OSD");
    drop(guard);
}
