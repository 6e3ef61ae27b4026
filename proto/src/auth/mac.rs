//! The per-frame MAC after authentication: keyed BLAKE3 with the session
//! key, truncated to 16 bytes, over data, header and body (without copying
//! them together); checked in constant time.
//!
//! Why BLAKE3 for frames: the MAC covers every data byte on the data path,
//! and HMAC-SHA256 over a 4 KiB reply was ~9% of an OSD's CPU per read;
//! keyed BLAKE3 is a PRF too, hashes a 4 KiB frame ~20% faster (SIMD
//! across its 1 KiB chunks) and a small frame in one compression. Tickets and proofs, which are
//! small and rare, stay HMAC-SHA256 ([`hmac32`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::frame::{FrameMac, MAC_BYTES};

/// A session key: shared by a client and a service for one ticket's life.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub fn generate() -> SessionKey {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).expect("the OS random source failed");
        SessionKey(k)
    }

    /// Keyed BLAKE3 of the last part (a frame's data segment) followed by
    /// the others in order. Data first: its 1 KiB chunks then start on
    /// chunk boundaries and are hashed in parallel; behind a small header
    /// they were hashed one block at a time (2.6x slower for 4 KiB).
    fn keyed_blake3(&self, parts: &[&[u8]]) -> blake3::Hash {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        if let Some((last, rest)) = parts.split_last() {
            h.update(last);
            for p in rest {
                h.update(p);
            }
        }
        h.finalize()
    }
}

impl FrameMac for SessionKey {
    fn frame_mac(&self, parts: &[&[u8]]) -> [u8; MAC_BYTES] {
        self.keyed_blake3(parts).as_bytes()[..MAC_BYTES].try_into().expect("16 bytes")
    }

    fn verify_frame_mac(&self, parts: &[&[u8]], tag: &[u8; MAC_BYTES]) -> bool {
        self.frame_mac(parts).ct_eq(tag).into()
    }
}

/// HMAC-SHA256 of `parts` under `key` (tickets and proofs use it too).
pub fn hmac32(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}
