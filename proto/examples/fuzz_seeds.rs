//! Writes one valid frame per message shape into DIR (the fuzzer's seed
//! corpus): `cargo run -p sepia-proto --example fuzz_seeds -- proto/fuzz/corpus/frame_decoder`.
//! Each file starts with the split byte the fuzz target reads first.

use sepia_proto::msg::{self, Body, Command, ObjectId, OsdBoot, OsdOp, Ping, ReqId, SubOp, Subscribe, SubscribeItem, MapKind};
use sepia_proto::osdmap::PgId;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds DIR");
    std::fs::create_dir_all(&dir).unwrap();
    let op = OsdOp {
        reqid: ReqId { client: 1, tid: 2 },
        pg: PgId { pool: 1, seed: 3 },
        epoch: 4,
        object: ObjectId::new("obj"),
        subops: vec![
            SubOp::Write { offset: 0, data_offset: 0, len: 8 },
            SubOp::SetXattr { name: "a".into(), value: vec![1, 2] },
            SubOp::OmapSetVals { entries: vec![("k".into(), vec![3])] },
        ],
    };
    let bodies = [(Body::OsdOp(op), vec![7u8; 8]),
        (Body::Ping(Ping { from: 1, epoch: 2, stamp_ms: 3, reply: false }), vec![]),
        (Body::Command(Command { tid: 1, args: vec!["osd".into(), "tree".into()], json: true }), vec![]),
        (Body::OsdBoot(OsdBoot { osd: 0, uuid: [1; 16], addrs: vec!["127.0.0.1:6800".into()], have_epoch: 0, hostname: "h".into() }), vec![]),
        (Body::Subscribe(Subscribe { items: vec![SubscribeItem { what: MapKind::OsdMap, start: 1, onetime: false }] }), vec![])];
    for (i, (body, data)) in bodies.iter().enumerate() {
        let mut bytes = vec![7u8];
        bytes.extend_from_slice(&msg::encode(body, i as u64, data, None).unwrap().to_vec());
        std::fs::write(format!("{dir}/seed-{i}"), bytes).unwrap();
    }
}
