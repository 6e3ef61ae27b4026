//! A small synchronous facade over [`crate::rados`] for tools and scripts
//! that do not run an async runtime: each call blocks on a private tokio
//! runtime.

use std::sync::Arc;

use crate::config::Config;
use crate::rados::{IoCtx, ObjectStat, Rados, RadosError};

/// A connected cluster handle that blocks.
pub struct Cluster {
    rt: Arc<tokio::runtime::Runtime>,
    rados: Arc<Rados>,
}

/// Object I/O in one pool that blocks.
pub struct Pool {
    rt: Arc<tokio::runtime::Runtime>,
    io: IoCtx,
}

impl Cluster {
    /// Connects with the config's monitors and the entity's key.
    pub fn connect(conf: &Config, entity: &str) -> Result<Cluster, RadosError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| RadosError::BadReply(format!("runtime: {e}")))?;
        let rados = rt.block_on(Rados::connect_conf(conf, entity))?;
        Ok(Cluster { rt: Arc::new(rt), rados })
    }

    /// An admin command: `(result, status, output)`.
    pub fn command(&self, args: &[&str], json: bool) -> Result<(i32, String, String), RadosError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let r = self.rt.block_on(self.rados.command(&args, json))?;
        Ok((r.result, r.status, r.output))
    }

    pub fn pool(&self, name: &str) -> Result<Pool, RadosError> {
        Ok(Pool { rt: self.rt.clone(), io: self.rados.ioctx(name)? })
    }
}

impl Pool {
    pub fn write_full(&self, object: &str, data: &[u8]) -> Result<(), RadosError> {
        self.rt.block_on(self.io.write_full(object, data))
    }

    pub fn write(&self, object: &str, offset: u64, data: &[u8]) -> Result<(), RadosError> {
        self.rt.block_on(self.io.write(object, offset, data))
    }

    pub fn append(&self, object: &str, data: &[u8]) -> Result<(), RadosError> {
        self.rt.block_on(self.io.append(object, data))
    }

    pub fn read(&self, object: &str, offset: u64, len: u64) -> Result<Vec<u8>, RadosError> {
        self.rt.block_on(self.io.read(object, offset, len))
    }

    pub fn stat(&self, object: &str) -> Result<ObjectStat, RadosError> {
        self.rt.block_on(self.io.stat(object))
    }

    pub fn remove(&self, object: &str) -> Result<(), RadosError> {
        self.rt.block_on(self.io.remove(object))
    }

    pub fn list(&self) -> Result<Vec<String>, RadosError> {
        self.rt.block_on(self.io.list())
    }
}
