//! The hello exchange: the first frame each side sends. It fixes the
//! protocol version (the highest both speak) and the feature bits (those
//! both have), and checks that both believe in the same cluster.
//!
//! Invariant: after a successful [`negotiate`], both sides hold the same
//! `(version, features)` — the function is symmetric in its two arguments
//! (a property test checks it).

use crate::errno::Errno;
use crate::frame::{PROTOCOL_VERSION, PROTOCOL_VERSION_MIN};
use crate::limits;
use crate::msg::{Hello, HelloReply};

/// Every frame after authentication carries a MAC.
pub const FEATURE_FRAME_MAC: u64 = 1 << 0;
/// Maps travel as incrementals when the subscriber is close enough.
pub const FEATURE_INCREMENTAL_MAPS: u64 = 1 << 1;
/// Erasure-coded pools are understood.
pub const FEATURE_ERASURE_CODE: u64 = 1 << 2;
/// Watch/notify messages are understood.
pub const FEATURE_WATCH_NOTIFY: u64 = 1 << 3;
/// What this build supports.
pub const FEATURES_SUPPORTED: u64 =
    FEATURE_FRAME_MAC | FEATURE_INCREMENTAL_MAPS | FEATURE_ERASURE_CODE | FEATURE_WATCH_NOTIFY;
/// What a peer must support to talk to us at all.
pub const FEATURES_REQUIRED: u64 = FEATURE_INCREMENTAL_MAPS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u16,
    pub features: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    #[error("no common protocol version: we speak {ours_min}..={ours_max}, peer {theirs_min}..={theirs_max}")]
    NoCommonVersion { ours_min: u16, ours_max: u16, theirs_min: u16, theirs_max: u16 },
    #[error("peer lacks required features {0:#x}")]
    MissingFeatures(u64),
    #[error("peer belongs to another cluster (fsid mismatch)")]
    WrongCluster,
    #[error("bad entity name in hello: {0}")]
    BadEntity(String),
}

impl HelloError {
    pub fn errno(&self) -> Errno {
        match self {
            HelloError::NoCommonVersion { .. } | HelloError::MissingFeatures(_) => Errno::NotSup,
            HelloError::WrongCluster => Errno::Access,
            HelloError::BadEntity(_) => Errno::Inval,
        }
    }
}

/// Our hello.
pub fn local_hello(entity: &str, fsid: [u8; 16]) -> Hello {
    Hello {
        min_version: PROTOCOL_VERSION_MIN,
        max_version: PROTOCOL_VERSION,
        features: FEATURES_SUPPORTED,
        entity: entity.to_string(),
        fsid,
    }
}

/// The agreement between two hellos; symmetric. A zero fsid on either side
/// means "not known yet" (a client before its first map) and matches any.
pub fn negotiate(a: &Hello, b: &Hello) -> Result<Negotiated, HelloError> {
    for h in [a, b] {
        if h.entity.is_empty() || h.entity.len() > limits::name_bytes_max {
            return Err(HelloError::BadEntity(format!("{} bytes", h.entity.len())));
        }
    }
    let low = a.min_version.max(b.min_version);
    let high = a.max_version.min(b.max_version);
    if low > high || a.min_version > a.max_version || b.min_version > b.max_version {
        return Err(HelloError::NoCommonVersion {
            ours_min: a.min_version,
            ours_max: a.max_version,
            theirs_min: b.min_version,
            theirs_max: b.max_version,
        });
    }
    let features = a.features & b.features;
    let missing = FEATURES_REQUIRED & !features;
    if missing != 0 {
        return Err(HelloError::MissingFeatures(missing));
    }
    let zero = [0u8; 16];
    if a.fsid != zero && b.fsid != zero && a.fsid != b.fsid {
        return Err(HelloError::WrongCluster);
    }
    Ok(Negotiated { version: high, features })
}

/// The server's answer to a client's hello.
pub fn reply(server: &Hello, client: &Hello) -> (HelloReply, Result<Negotiated, HelloError>) {
    let result = negotiate(server, client);
    let reply = match &result {
        Ok(n) => HelloReply {
            result: 0,
            reason: String::new(),
            version: n.version,
            features: n.features,
            entity: server.entity.clone(),
            fsid: server.fsid,
        },
        Err(e) => HelloReply {
            result: e.errno().result(),
            reason: e.to_string(),
            version: 0,
            features: 0,
            entity: server.entity.clone(),
            fsid: server.fsid,
        },
    };
    (reply, result)
}

/// The client's reading of the server's reply: the server decided, the
/// client checks the decision is one it can live with.
pub fn accept_reply(client: &Hello, reply: &HelloReply) -> Result<Negotiated, String> {
    if reply.result != 0 {
        return Err(format!("server refused hello: {}", reply.reason));
    }
    if !(client.min_version..=client.max_version).contains(&reply.version) {
        return Err(format!("server chose version {} we do not speak", reply.version));
    }
    if reply.features & !client.features != 0 {
        return Err(format!("server chose features {:#x} we lack", reply.features & !client.features));
    }
    if FEATURES_REQUIRED & !reply.features != 0 {
        return Err("server dropped required features".into());
    }
    Ok(Negotiated { version: reply.version, features: reply.features })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello(min: u16, max: u16, features: u64, fsid: u8) -> Hello {
        Hello { min_version: min, max_version: max, features, entity: "client.admin".into(), fsid: [fsid; 16] }
    }

    #[test]
    fn same_build_agrees_on_everything() {
        let a = local_hello("client.admin", [1; 16]);
        let b = local_hello("osd.0", [1; 16]);
        let (r, n) = reply(&b, &a);
        let n = n.unwrap();
        assert_eq!(n, Negotiated { version: PROTOCOL_VERSION, features: FEATURES_SUPPORTED });
        assert_eq!(accept_reply(&a, &r).unwrap(), n);
    }

    #[test]
    fn refusals() {
        let ours = hello(1, 1, FEATURES_SUPPORTED, 1);
        assert!(matches!(negotiate(&ours, &hello(2, 3, FEATURES_SUPPORTED, 1)), Err(HelloError::NoCommonVersion { .. })));
        assert_eq!(negotiate(&ours, &hello(1, 1, 0, 1)), Err(HelloError::MissingFeatures(FEATURES_REQUIRED)));
        assert_eq!(negotiate(&ours, &hello(1, 1, FEATURES_SUPPORTED, 2)), Err(HelloError::WrongCluster));
        assert!(negotiate(&ours, &hello(1, 1, FEATURES_SUPPORTED, 0)).is_ok(), "zero fsid = not known yet");
        let (r, _) = reply(&ours, &hello(5, 9, FEATURES_SUPPORTED, 1));
        assert_eq!(r.result, Errno::NotSup.result());
        assert!(accept_reply(&ours, &r).is_err());
    }

    proptest! {
        #[test]
        fn negotiation_is_symmetric(a_min in 0u16..5, a_span in 0u16..5, b_min in 0u16..5, b_span in 0u16..5,
                                    fa: u64, fb: u64, sa in 0u8..3, sb in 0u8..3) {
            let a = hello(a_min, a_min + a_span, fa, sa);
            let b = hello(b_min, b_min + b_span, fb, sb);
            let ab = negotiate(&a, &b);
            let ba = negotiate(&b, &a);
            prop_assert_eq!(ab.is_ok(), ba.is_ok());
            if let (Ok(x), Ok(y)) = (ab, ba) {
                prop_assert_eq!(x, y);
                prop_assert!(x.version >= a.min_version && x.version <= a.max_version);
                prop_assert!(x.version >= b.min_version && x.version <= b.max_version);
                prop_assert_eq!(x.features & !(fa & fb), 0);
            }
        }
    }
}
