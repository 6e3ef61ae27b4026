//! Auth in cephx's shape: entity names, secrets and keyrings in Ceph's
//! formats, capability strings, tickets issued by the monitors and checked
//! by services on their own, and the per-frame MAC.
//!
//! - [`entity`] — `client.admin`, `osd.3`.
//! - [`key`] — secrets, Ceph's base64 key form.
//! - [`keyring`] — the INI keyring file.
//! - [`caps`] — capability grammar and checks.
//! - [`ticket`] — challenge/response, sealed tickets, authorizers.
//! - [`mac`] — session keys and frame MACs.
//!
//! Crypto comes from RustCrypto crates (hmac, sha2, chacha20poly1305,
//! subtle); nothing here is home-made cipher code.

pub mod caps;
pub mod entity;
pub mod key;
pub mod keyring;
pub mod mac;
pub mod ticket;

use rkyv::{Archive, Deserialize, Serialize};

/// Bounds on auth inputs. Units last; each with its why.
pub mod limits {
    #![allow(non_upper_case_globals)]
    /// A keyring file: thousands of entities fit.
    pub const keyring_bytes_max: usize = 4 << 20;
    /// Entities in one keyring.
    pub const keyring_entries_max: usize = 65_536;
    /// One capability string.
    pub const caps_bytes_max: usize = 4096;
    /// Grants in one capability string.
    pub const grants_max: usize = 64;
    /// A sealed ticket (entity, caps, keys: well under a KiB in practice).
    pub const ticket_bytes_max: usize = 16 << 10;
    /// `client.` plus an id.
    pub const entity_name_bytes_max: usize = 256;
}

/// The auth exchange on the wire.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum AuthMessage {
    /// Client → monitor: who I am, and my challenge.
    Hello { entity: String, client_challenge: u64 },
    /// Monitor → client.
    Challenge { server_challenge: u64 },
    /// Client → monitor: HMAC(secret, challenges).
    Proof { proof: [u8; 32] },
    /// Monitor → client: the session key (sealed for the client) and one
    /// ticket per service.
    Granted { global_id: u64, session_key: Vec<u8>, tickets: Vec<ticket::SealedTicket>, expires_ms: u64 },
    /// Client → monitor on an authenticated connection: fresh tickets.
    Renew,
    /// Client → service.
    Authorize(ticket::Authorizer),
    /// Service → client: 0 or `-errno`.
    Authorized { result: i32 },
    /// Either way: the exchange failed.
    Refused { result: i32, reason: String },
    /// A daemon asks for a service's current ticket key (needs `allow *`
    /// or a daemon profile in its mon caps).
    ServiceKeyRequest { service: String },
    /// The key, sealed with the connection's session key.
    ServiceKey { service: String, generation: u64, sealed: Vec<u8> },
}
