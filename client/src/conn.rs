//! One framed connection over tokio TCP: the hello exchange, then frames
//! both ways. Frames are decoded by `sepia_proto::frame::FrameDecoder` and
//! bodies validated by `sepia_proto::msg` before anyone sees them.

use std::collections::VecDeque;
use std::time::Duration;

use sepia_proto::frame::{Frame, FrameDecoder, FrameError};
use sepia_proto::hello::{self, Negotiated};
use sepia_proto::msg::{self, Body};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    #[error("peer closed the connection")]
    Closed,
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("hello refused: {0}")]
    Hello(String),
    #[error("unexpected message {0}")]
    Unexpected(&'static str),
}

pub struct Conn {
    stream: TcpStream,
    decoder: FrameDecoder,
    queued: VecDeque<Frame<Vec<u8>>>,
    buf: Vec<u8>,
    next_txid: u64,
    pub negotiated: Option<Negotiated>,
    /// From the server's hello reply; an authorizer must cover it.
    challenge: u64,
    pub peer_entity: String,
    /// After authentication every frame we send carries a MAC.
    mac: Option<sepia_proto::auth::mac::SessionKey>,
}

impl Conn {
    /// Connects and says hello as `entity`, in the default frame mode.
    pub async fn connect(addr: &str, entity: &str, fsid: [u8; 16]) -> Result<Conn, ConnError> {
        Conn::connect_in(addr, entity, fsid, hello::FrameMode::default()).await
    }

    /// Connects and says hello as `entity`, asking for signed frames when
    /// `mode` is `Sign`.
    pub async fn connect_in(addr: &str, entity: &str, fsid: [u8; 16], mode: hello::FrameMode) -> Result<Conn, ConnError> {
        let timeout = Duration::from_millis(limits::connect_timeout_ms);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnError::Timeout(limits::connect_timeout_ms))??;
        stream.set_nodelay(true)?;
        let mut conn = Conn::from_stream(stream);
        let ours = hello::local_hello_in(entity, fsid, mode);
        conn.send(&Body::Hello(ours.clone()), &[]).await?;
        let reply = tokio::time::timeout(timeout, conn.recv()).await.map_err(|_| ConnError::Timeout(limits::connect_timeout_ms))??;
        match msg::decode(&reply)? {
            Body::HelloReply(r) => {
                let n = hello::accept_reply(&ours, &r).map_err(ConnError::Hello)?;
                conn.negotiated = Some(n);
                conn.challenge = r.challenge;
                conn.peer_entity = r.entity;
                Ok(conn)
            }
            other => Err(ConnError::Unexpected(msg::type_name(other.msg_type()))),
        }
    }

    /// Wraps an accepted socket (the server side says hello back itself).
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn {
            stream,
            decoder: FrameDecoder::new(msg::known_type),
            queued: VecDeque::new(),
            buf: vec![0; limits::read_chunk_bytes],
            next_txid: 1,
            negotiated: None,
            challenge: 0,
            peer_entity: String::new(),
            mac: None,
        }
    }

    pub fn next_txid(&mut self) -> u64 {
        let t = self.next_txid;
        self.next_txid += 1;
        t
    }

    pub async fn send(&mut self, body: &Body, data: &[u8]) -> Result<u64, ConnError> {
        let txid = self.next_txid();
        self.send_with_txid(body, txid, data).await?;
        Ok(txid)
    }

    /// Whether this connection signs frames once authenticated (the hello
    /// decided; a connection without one, accepted by a server, signs).
    pub fn frames_signed(&self) -> bool {
        self.negotiated.as_ref().is_none_or(|n| n.frames_signed())
    }

    /// The challenge the server's hello reply carried (0: none).
    pub fn challenge(&self) -> u64 {
        self.challenge
    }

    /// From now on frames both ways carry (and must carry) a MAC under `key`.
    pub fn set_session_key(&mut self, key: sepia_proto::auth::mac::SessionKey) {
        self.decoder.set_session_key(Box::new(key.clone()));
        self.mac = Some(key);
    }

    pub async fn send_with_txid(&mut self, body: &Body, txid: u64, data: &[u8]) -> Result<(), ConnError> {
        self.send_batch(&[(body, txid, data)]).await
    }

    /// Sends frames with as few writes as possible: small ones are copied
    /// into one buffer (one syscall, one TCP segment, one wakeup of the
    /// peer for the lot); a large data segment is written from where it lies.
    pub async fn send_batch(&mut self, frames: &[(&Body, u64, &[u8])]) -> Result<(), ConnError> {
        let mut buf = Vec::new();
        for &(body, txid, data) in frames {
            let mac = self.mac.as_ref().map(|k| k as &dyn sepia_proto::frame::FrameMac);
            let f = msg::encode(body, txid, data, mac)?;
            if data.len() <= limits::coalesced_data_bytes_max {
                f.append_to(&mut buf);
                continue;
            }
            buf.extend_from_slice(&f.header);
            buf.extend_from_slice(&f.body);
            self.stream.write_all(&buf).await?;
            buf.clear();
            self.stream.write_all(data).await?;
            if let Some(mac) = &f.mac {
                buf.extend_from_slice(mac);
            }
        }
        if !buf.is_empty() {
            self.stream.write_all(&buf).await?;
        }
        Ok(())
    }

    /// The next frame (checked: crc, limits, known type).
    pub async fn recv(&mut self) -> Result<Frame<Vec<u8>>, ConnError> {
        loop {
            if let Some(f) = self.queued.pop_front() {
                return Ok(f);
            }
            let n = self.stream.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            let mut frames = Vec::new();
            self.decoder.feed(&self.buf[..n], &mut frames)?;
            if self.queued.len() + frames.len() > limits::frames_queued_max {
                return Err(ConnError::Unexpected("too many queued frames"));
            }
            self.queued.extend(frames);
        }
    }

    /// The next frame's decoded body.
    pub async fn recv_body(&mut self) -> Result<(u64, Body), ConnError> {
        let f = self.recv().await?;
        let body = msg::decode(&f)?;
        Ok((f.header.txid, body))
    }
}

/// What a successful authentication gives the client.
#[derive(Debug, Clone)]
pub struct Granted {
    pub global_id: u64,
    pub session_key: sepia_proto::auth::mac::SessionKey,
    pub tickets: Vec<sepia_proto::auth::ticket::SealedTicket>,
    pub expires_ms: u64,
}

/// The cephx-shaped exchange with a monitor: hello with our challenge,
/// its challenge, our proof, then the session key and tickets. Afterwards
/// every frame on `conn` is MACed.
pub async fn authenticate(conn: &mut Conn, entity: &str, secret: &sepia_proto::auth::key::Secret) -> Result<Granted, ConnError> {
    use sepia_proto::auth::{ticket, AuthMessage};
    let mut challenge = [0u8; 8];
    getrandom::getrandom(&mut challenge).map_err(|e| ConnError::Hello(e.to_string()))?;
    let cc = u64::from_le_bytes(challenge);
    conn.send(&Body::Auth(AuthMessage::Hello { entity: entity.to_string(), client_challenge: cc }), &[]).await?;
    let sc = match conn.recv_body().await?.1 {
        Body::Auth(AuthMessage::Challenge { server_challenge }) => server_challenge,
        Body::Auth(AuthMessage::Refused { reason, .. }) => return Err(ConnError::Hello(format!("authentication refused: {reason}"))),
        other => return Err(ConnError::Unexpected(msg::type_name(other.msg_type()))),
    };
    let proof = ticket::proof(secret, sc, cc);
    conn.send(&Body::Auth(AuthMessage::Proof { proof }), &[]).await?;
    match conn.recv_body().await?.1 {
        Body::Auth(AuthMessage::Granted { global_id, session_key, tickets, expires_ms }) => {
            let key = ticket::open_session_key(secret, &session_key).map_err(|e| ConnError::Hello(e.to_string()))?;
            if conn.frames_signed() {
                conn.set_session_key(key.clone());
            }
            Ok(Granted { global_id, session_key: key, tickets, expires_ms })
        }
        Body::Auth(AuthMessage::Refused { reason, .. }) => Err(ConnError::Hello(format!("authentication refused: {reason}"))),
        other => Err(ConnError::Unexpected(msg::type_name(other.msg_type()))),
    }
}

/// How long from now until a session that expires at `expires_ms` (wall
/// clock, ms since the epoch) should be renewed.
pub fn renew_after(expires_ms: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Duration::from_millis(expires_ms.saturating_sub(now) * limits::ticket_renew_after_lifetime_pct / 100)
}

/// Renews the session on an authenticated `conn` before it expires: fresh
/// tickets under the same session key (which we check), a later expiry.
/// Unsolicited frames (map deliveries) that arrive meanwhile are skipped.
pub async fn renew(conn: &mut Conn, secret: &sepia_proto::auth::key::Secret, session: &sepia_proto::auth::mac::SessionKey) -> Result<Granted, ConnError> {
    use sepia_proto::auth::{ticket, AuthMessage};
    conn.send(&Body::Auth(AuthMessage::Renew), &[]).await?;
    let timeout = Duration::from_millis(limits::command_timeout_ms);
    loop {
        let (_, body) = tokio::time::timeout(timeout, conn.recv_body()).await.map_err(|_| ConnError::Timeout(limits::command_timeout_ms))??;
        match body {
            Body::Auth(AuthMessage::Granted { global_id, session_key, tickets, expires_ms }) => {
                let key = ticket::open_session_key(secret, &session_key).map_err(|e| ConnError::Hello(e.to_string()))?;
                if key.0 != session.0 {
                    return Err(ConnError::Hello("renewal changed the session key".into()));
                }
                return Ok(Granted { global_id, session_key: key, tickets, expires_ms });
            }
            Body::Auth(AuthMessage::Refused { reason, .. }) => return Err(ConnError::Hello(format!("renewal refused: {reason}"))),
            Body::Auth(_) => return Err(ConnError::Unexpected("auth message")),
            _ => continue,
        }
    }
}

/// A daemon fetches a service's ticket key over an authenticated
/// connection (it arrives sealed with the session key).
pub async fn fetch_service_key(conn: &mut Conn, session: &sepia_proto::auth::mac::SessionKey, service: &str) -> Result<(u64, [u8; 32]), ConnError> {
    use sepia_proto::auth::{ticket, AuthMessage};
    conn.send(&Body::Auth(AuthMessage::ServiceKeyRequest { service: service.to_string() }), &[]).await?;
    match conn.recv_body().await?.1 {
        Body::Auth(AuthMessage::ServiceKey { generation, sealed, .. }) => {
            let key = ticket::open_with_session(session, &sealed).map_err(|e| ConnError::Hello(e.to_string()))?;
            let key: [u8; 32] = key.as_slice().try_into().map_err(|_| ConnError::Hello("bad service key length".into()))?;
            Ok((generation, key))
        }
        Body::Auth(AuthMessage::Refused { reason, .. }) => Err(ConnError::Hello(format!("service key refused: {reason}"))),
        other => Err(ConnError::Unexpected(msg::type_name(other.msg_type()))),
    }
}

/// Presents a ticket to a service (an OSD), bound to the connection's
/// challenge, and switches the connection to MACed frames under the
/// session key when the hello agreed to sign.
pub async fn authorize(conn: &mut Conn, session: &sepia_proto::auth::mac::SessionKey, ticket: &sepia_proto::auth::ticket::SealedTicket) -> Result<(), ConnError> {
    use sepia_proto::auth::{ticket as t, AuthMessage};
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| ConnError::Hello(e.to_string()))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let a = t::build_authorizer(ticket, session, conn.challenge(), u64::from_le_bytes(nonce), now);
    conn.send(&Body::Auth(AuthMessage::Authorize(a)), &[]).await?;
    match conn.recv_body().await?.1 {
        Body::Auth(AuthMessage::Authorized { result: 0 }) => {
            if conn.frames_signed() {
                conn.set_session_key(session.clone());
            }
            Ok(())
        }
        Body::Auth(AuthMessage::Authorized { result }) => Err(ConnError::Hello(format!("authorizer refused ({result})"))),
        Body::Auth(AuthMessage::Refused { reason, .. }) => Err(ConnError::Hello(format!("authorizer refused: {reason}"))),
        other => Err(ConnError::Unexpected(msg::type_name(other.msg_type()))),
    }
}
