//! Tickets in cephx's shape.
//!
//! 1. The client says who it is and sends a challenge; the monitor answers
//!    with its own challenge; the client proves it holds the entity's secret
//!    with HMAC-SHA256(secret, both challenges) — the secret never travels.
//! 2. The monitor issues, per service, a [`Ticket`] (entity, caps, session
//!    key, validity) sealed with ChaCha20-Poly1305 under that service's
//!    rotating secret, and sends the session key sealed under a key derived
//!    from the client's secret.
//! 3. The client shows an OSD an [`Authorizer`]: the sealed ticket plus an
//!    HMAC with the session key over the challenge from the OSD's hello
//!    reply (one per connection), a fresh nonce and a timestamp. The OSD
//!    opens the ticket with its service secret — no call to the monitor —
//!    checks validity, the MAC and the timestamp window. From then on, when
//!    the hello agreed to sign (`ms_mode = sign` on either side), both
//!    sides MAC every frame with the session key; in the default `crc`
//!    mode frames carry their crc32 only (see `hello::FrameMode`).
//!
//! Invariant: every failure is a typed error; sealed blobs are bounded
//! (`limits::ticket_bytes_max`) before they are opened.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rkyv::{Archive, Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::entity::EntityName;
use super::key::Secret;
use super::limits;
use super::mac::{hmac32, SessionKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("proof of identity does not verify")]
    BadProof,
    #[error("sealed data does not open (wrong key or tampered)")]
    BadSeal,
    #[error("ticket is not valid now (valid {from}..{until} ms, now {now})")]
    Expired { from: u64, until: u64, now: u64 },
    #[error("service key generation {0} is unknown")]
    UnknownGeneration(u64),
    #[error("authorizer MAC does not verify")]
    BadMac,
    #[error("authorizer timestamp outside the allowed window")]
    Replay,
    #[error("ticket is for service '{got}', not '{want}'")]
    WrongService { got: String, want: String },
    #[error("malformed: {0}")]
    Malformed(String),
}

/// What a service learns about a client from its ticket.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub entity: EntityName,
    pub global_id: u64,
    pub service: String,
    /// Service → capability string (as in the auth database).
    pub caps: BTreeMap<String, String>,
    pub session_key: [u8; 32],
    pub valid_from_ms: u64,
    pub expires_ms: u64,
}

/// A ticket sealed for a service; opaque to the client.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SealedTicket {
    pub service: String,
    pub generation: u64,
    pub nonce: [u8; 12],
    pub blob: Vec<u8>,
}

/// A service's rotating secrets: the current one seals, both open.
#[derive(Clone)]
pub struct ServiceKeys {
    pub current: (u64, [u8; 32]),
    pub previous: Option<(u64, [u8; 32])>,
}

impl ServiceKeys {
    pub fn new(generation: u64, key: [u8; 32]) -> ServiceKeys {
        ServiceKeys { current: (generation, key), previous: None }
    }

    /// A new current key; the old one still opens tickets until the next
    /// rotation, so sessions in flight survive.
    pub fn rotate(&mut self, key: [u8; 32]) {
        let next = self.current.0 + 1;
        self.previous = Some(self.current);
        self.current = (next, key);
    }

    fn key(&self, generation: u64) -> Option<&[u8; 32]> {
        if self.current.0 == generation {
            return Some(&self.current.1);
        }
        self.previous.as_ref().filter(|p| p.0 == generation).map(|p| &p.1)
    }
}

fn aad(service: &str, generation: u64) -> Vec<u8> {
    let mut a = service.as_bytes().to_vec();
    a.extend_from_slice(&generation.to_le_bytes());
    a
}

fn seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let c = ChaCha20Poly1305::new(Key::from_slice(key));
    // Encryption with a valid key and nonce cannot fail.
    c.encrypt(Nonce::from_slice(nonce), Payload { msg: plain, aad }).expect("AEAD encryption")
}

fn open(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    if sealed.len() > limits::ticket_bytes_max {
        return Err(AuthError::Malformed(format!("{} bytes", sealed.len())));
    }
    let c = ChaCha20Poly1305::new(Key::from_slice(key));
    c.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad }).map_err(|_| AuthError::BadSeal)
}

pub fn random_nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    getrandom::getrandom(&mut n).expect("the OS random source failed");
    n
}

/// The client's proof: HMAC-SHA256(secret, "sepia-auth-proof", challenges).
pub fn proof(secret: &Secret, server_challenge: u64, client_challenge: u64) -> [u8; 32] {
    hmac32(&secret.bytes, &[b"sepia-auth-proof", &server_challenge.to_le_bytes(), &client_challenge.to_le_bytes()])
}

pub fn verify_proof(secret: &Secret, server_challenge: u64, client_challenge: u64, got: &[u8; 32]) -> Result<(), AuthError> {
    if bool::from(proof(secret, server_challenge, client_challenge).ct_eq(got)) {
        Ok(())
    } else {
        Err(AuthError::BadProof)
    }
}

pub fn seal_ticket(t: &Ticket, keys: &ServiceKeys, nonce: [u8; 12]) -> SealedTicket {
    let plain = rkyv::to_bytes::<rkyv::rancor::Error>(t).expect("archiving a ticket");
    let (generation, key) = keys.current;
    SealedTicket { service: t.service.clone(), generation, nonce, blob: seal(&key, &nonce, &aad(&t.service, generation), &plain) }
}

pub fn open_ticket(s: &SealedTicket, keys: &ServiceKeys, service: &str) -> Result<Ticket, AuthError> {
    if s.service != service {
        return Err(AuthError::WrongService { got: s.service.clone(), want: service.into() });
    }
    let key = keys.key(s.generation).ok_or(AuthError::UnknownGeneration(s.generation))?;
    let plain = open(key, &s.nonce, &aad(service, s.generation), &s.blob)?;
    let mut aligned = rkyv::util::AlignedVec::<16>::new();
    aligned.extend_from_slice(&plain);
    let t = rkyv::from_bytes::<Ticket, rkyv::rancor::Error>(&aligned).map_err(|e| AuthError::Malformed(e.to_string()))?;
    if t.service != service {
        return Err(AuthError::WrongService { got: t.service, want: service.into() });
    }
    Ok(t)
}

/// The session key for the client, sealed under a key derived from its
/// secret (only the holder of the secret can open it).
pub fn seal_session_key(secret: &Secret, session: &SessionKey, nonce: [u8; 12]) -> Vec<u8> {
    let k = hmac32(&secret.bytes, &[b"sepia-session-key"]);
    let mut out = nonce.to_vec();
    out.extend_from_slice(&seal(&k, &nonce, b"session", &session.0));
    out
}

pub fn open_session_key(secret: &Secret, sealed: &[u8]) -> Result<SessionKey, AuthError> {
    if sealed.len() < 12 {
        return Err(AuthError::Malformed("short session key".into()));
    }
    let k = hmac32(&secret.bytes, &[b"sepia-session-key"]);
    let nonce: [u8; 12] = sealed[..12].try_into().expect("12 bytes");
    let plain = open(&k, &nonce, b"session", &sealed[12..])?;
    let key: [u8; 32] = plain.as_slice().try_into().map_err(|_| AuthError::Malformed("session key length".into()))?;
    Ok(SessionKey(key))
}

/// What a client shows a service.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    pub ticket: SealedTicket,
    pub nonce: u64,
    pub timestamp_ms: u64,
    pub mac: [u8; 32],
}

/// The proof of the session key, bound to the service's per-connection
/// `challenge` (from its hello reply): an authorizer copied off the wire
/// is refused on any other connection.
fn authorizer_mac(session: &SessionKey, service: &str, challenge: u64, nonce: u64, timestamp_ms: u64) -> [u8; 32] {
    hmac32(&session.0, &[b"sepia-authorizer", service.as_bytes(), &challenge.to_le_bytes(), &nonce.to_le_bytes(), &timestamp_ms.to_le_bytes()])
}

/// An authorizer for the connection whose hello reply carried `challenge`.
pub fn build_authorizer(ticket: &SealedTicket, session: &SessionKey, challenge: u64, nonce: u64, now_ms: u64) -> Authorizer {
    Authorizer { ticket: ticket.clone(), nonce, timestamp_ms: now_ms, mac: authorizer_mac(session, &ticket.service, challenge, nonce, now_ms) }
}

/// A service checks an authorizer with only its own keys and the
/// `challenge` it gave this connection.
pub fn verify_authorizer(a: &Authorizer, keys: &ServiceKeys, service: &str, challenge: u64, now_ms: u64, window_ms: u64) -> Result<Ticket, AuthError> {
    let t = open_ticket(&a.ticket, keys, service)?;
    if now_ms + window_ms < t.valid_from_ms || now_ms >= t.expires_ms {
        return Err(AuthError::Expired { from: t.valid_from_ms, until: t.expires_ms, now: now_ms });
    }
    let session = SessionKey(t.session_key);
    if !bool::from(authorizer_mac(&session, service, challenge, a.nonce, a.timestamp_ms).ct_eq(&a.mac)) {
        return Err(AuthError::BadMac);
    }
    if a.timestamp_ms.abs_diff(now_ms) > window_ms {
        return Err(AuthError::Replay);
    }
    Ok(t)
}

/// Seals bytes for the holder of a session key (service keys handed to an
/// OSD travel this way).
pub fn seal_with_session(session: &SessionKey, plain: &[u8]) -> Vec<u8> {
    let nonce = random_nonce();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&seal(&session.0, &nonce, b"sepia-session-sealed", plain));
    out
}

pub fn open_with_session(session: &SessionKey, sealed: &[u8]) -> Result<Vec<u8>, AuthError> {
    if sealed.len() < 12 {
        return Err(AuthError::Malformed("short sealed data".into()));
    }
    let nonce: [u8; 12] = sealed[..12].try_into().expect("12 bytes");
    open(&session.0, &nonce, b"sepia-session-sealed", &sealed[12..])
}
