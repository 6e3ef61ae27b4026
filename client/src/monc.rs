//! The monitor client: sends admin commands and OSD reports to the leader,
//! following `-EAGAIN` redirects across leader changes, and fetches maps.
//!
//! Any monitor in the quorum answers reads; changes go to the leader. A
//! monitor that is not the leader answers `-EAGAIN` with the leader's
//! address; one outside the quorum answers `-EAGAIN` with none, and the
//! client tries the next monitor. An authenticated session is renewed on
//! its connection (`AuthMessage::Renew`) before its tickets expire.

use std::time::Duration;

use sepia_proto::errno::Errno;
use sepia_proto::msg::{Body, Command, CommandReply};

use crate::conn::{Conn, ConnError};
use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum MonError {
    #[error("no monitor addresses given (use -m ADDR or mon_host in the config)")]
    NoMonitors,
    #[error("no monitor answered: {0}")]
    Unreachable(String),
    #[error("gave up after {0} attempts: {1}")]
    GaveUp(usize, String),
    #[error("{0}")]
    Auth(String),
}

pub struct MonClient {
    addrs: Vec<String>,
    entity: String,
    secret: Option<sepia_proto::auth::key::Secret>,
    current: Option<(String, Conn)>,
    next_index: usize,
    /// The live session's grant and when to renew it.
    session: Option<(crate::conn::Granted, std::time::Instant)>,
}

impl MonClient {
    pub fn new(addrs: Vec<String>, entity: &str) -> Result<MonClient, MonError> {
        if addrs.is_empty() {
            return Err(MonError::NoMonitors);
        }
        Ok(MonClient { addrs, entity: entity.to_string(), secret: None, current: None, next_index: 0, session: None })
    }

    /// A client that authenticates as `entity` with `secret` (cephx shape)
    /// on every connection; `None` connects without authenticating.
    pub fn with_secret(addrs: Vec<String>, entity: &str, secret: Option<sepia_proto::auth::key::Secret>) -> Result<MonClient, MonError> {
        let mut m = MonClient::new(addrs, entity)?;
        m.secret = secret;
        Ok(m)
    }

    /// From a config: its monitors and the entity's key from its keyring.
    pub fn from_conf(conf: &crate::config::Config, entity: &str) -> Result<MonClient, String> {
        let secret = conf.secret_for(entity)?;
        MonClient::with_secret(conf.mon_addrs(), entity, secret).map_err(|e| e.to_string())
    }

    async fn connect_to(&mut self, addr: &str) -> Result<(), ConnError> {
        let mut conn = Conn::connect(addr, &self.entity, [0; 16]).await?;
        self.session = None;
        if let Some(secret) = &self.secret {
            let g = crate::conn::authenticate(&mut conn, &self.entity, secret).await?;
            let at = std::time::Instant::now() + crate::conn::renew_after(g.expires_ms);
            self.session = Some((g, at));
        }
        self.current = Some((addr.to_string(), conn));
        Ok(())
    }

    /// The tickets of the current session (None before the first
    /// authenticated request, or without a key).
    pub fn granted(&self) -> Option<&crate::conn::Granted> {
        self.session.as_ref().map(|(g, _)| g)
    }

    /// Renews the session when its time has come; a failed renewal drops
    /// the connection (the next attempt authenticates afresh).
    async fn renew_if_due(&mut self) {
        let (Some(secret), Some((g, at)), Some((_, conn))) = (&self.secret, &self.session, self.current.as_mut()) else { return };
        if std::time::Instant::now() < *at {
            return;
        }
        match crate::conn::renew(conn, secret, &g.session_key).await {
            Ok(g) => {
                let at = std::time::Instant::now() + crate::conn::renew_after(g.expires_ms);
                self.session = Some((g, at));
            }
            Err(_) => {
                self.current = None;
                self.session = None;
            }
        }
    }

    /// Connects to the next monitor in the list that answers.
    async fn connect_any(&mut self) -> Result<(), MonError> {
        let mut last = String::new();
        for _ in 0..self.addrs.len() {
            let addr = self.addrs[self.next_index % self.addrs.len()].clone();
            self.next_index += 1;
            match self.connect_to(&addr).await {
                Ok(()) => return Ok(()),
                // A refused key is refused by every monitor: do not retry.
                Err(ConnError::Hello(why)) if why.contains("refused") => return Err(MonError::Auth(why)),
                Err(e) => last = format!("{addr}: {e}"),
            }
        }
        Err(MonError::Unreachable(last))
    }

    /// Sends a request body and waits for the `CommandReply` to it.
    async fn round_trip(&mut self, body: &Body) -> Result<CommandReply, ConnError> {
        let (_, conn) = self.current.as_mut().ok_or(ConnError::Closed)?;
        let txid = conn.send(body, &[]).await?;
        let timeout = Duration::from_millis(limits::command_timeout_ms);
        loop {
            let (t, reply) = tokio::time::timeout(timeout, conn.recv_body())
                .await
                .map_err(|_| ConnError::Timeout(limits::command_timeout_ms))??;
            match reply {
                Body::CommandReply(r) if t == txid => return Ok(r),
                // Map deliveries and other unsolicited frames are skipped here.
                _ => continue,
            }
        }
    }

    /// Runs a request until a monitor that may answer it does.
    pub async fn request(&mut self, body: &Body) -> Result<CommandReply, MonError> {
        let mut last = String::new();
        for attempt in 0..limits::command_attempts_max {
            if self.current.is_none() {
                if let Err(e) = self.connect_any().await {
                    if matches!(e, MonError::Auth(_)) {
                        return Err(e);
                    }
                    last = e.to_string();
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            }
            self.renew_if_due().await;
            if self.current.is_none() {
                continue;
            }
            match self.round_trip(body).await {
                Ok(r) if r.result == Errno::Again.result() => {
                    last = r.status.clone();
                    let leader = r.output.trim().to_string();
                    // A monitor naming itself is about to lead (its
                    // election is done, its services not yet): wait too.
                    let asked = self.current.take().map(|(addr, _)| addr);
                    if leader.is_empty() || asked.as_deref() == Some(leader.as_str()) || self.connect_to(&leader).await.is_err() {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    last = e.to_string();
                    self.current = None;
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Err(MonError::GaveUp(limits::command_attempts_max, last))
    }

    /// An admin command (`["osd", "pool", "create", "rbd", "32"]`).
    pub async fn command(&mut self, args: &[String], json: bool) -> Result<CommandReply, MonError> {
        self.request(&Body::Command(Command { tid: 0, args: args.to_vec(), json })).await
    }
}

fn backoff(attempt: usize) -> Duration {
    Duration::from_millis((50u64 << attempt.min(5)).min(1_000))
}
