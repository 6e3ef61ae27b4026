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
    pub peer_entity: String,
}

impl Conn {
    /// Connects and says hello as `entity`.
    pub async fn connect(addr: &str, entity: &str, fsid: [u8; 16]) -> Result<Conn, ConnError> {
        let timeout = Duration::from_millis(limits::connect_timeout_ms);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnError::Timeout(limits::connect_timeout_ms))??;
        stream.set_nodelay(true)?;
        let mut conn = Conn::from_stream(stream);
        let ours = hello::local_hello(entity, fsid);
        conn.send(&Body::Hello(ours.clone()), &[]).await?;
        let reply = tokio::time::timeout(timeout, conn.recv()).await.map_err(|_| ConnError::Timeout(limits::connect_timeout_ms))??;
        match msg::decode(&reply)? {
            Body::HelloReply(r) => {
                let n = hello::accept_reply(&ours, &r).map_err(ConnError::Hello)?;
                conn.negotiated = Some(n);
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
            peer_entity: String::new(),
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

    pub async fn send_with_txid(&mut self, body: &Body, txid: u64, data: &[u8]) -> Result<(), ConnError> {
        let f = msg::encode(body, txid, data, None)?;
        self.stream.write_all(&f.header).await?;
        self.stream.write_all(&f.body).await?;
        if !data.is_empty() {
            self.stream.write_all(data).await?;
        }
        if let Some(mac) = &f.mac {
            self.stream.write_all(mac).await?;
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
