//! FUSE passthrough: reads and writes of an open file go from the kernel
//! straight to the layer file, without a round trip through vskel.
//!
//! What the kernel relies on: while any handle of an inode is open in
//! passthrough mode, every passthrough open of that inode uses the same
//! backing file. So backings are kept per node with an open count; an open
//! that would need a different file (the inode was copied up while a
//! reader still holds the lower file) is served by vskel instead, with
//! direct I/O so it never mixes with the passthrough page cache.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fuser::BackingId;
use tracing::debug;

use crate::sys;

/// How an open is answered.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Through this backing file.
    Passthrough(Arc<BackingId>),
    /// Served by vskel, through the page cache.
    Served,
    /// Served by vskel without the page cache (another backing is active).
    ServedDirect,
}

#[derive(Debug)]
struct Backing {
    id: Arc<BackingId>,
    file: (u64, u64),
    opens: usize,
}

/// Backing files by node.
#[derive(Debug, Default)]
pub struct Backings {
    enabled: AtomicBool,
    map: Mutex<HashMap<u64, Backing>>,
}

impl Backings {
    /// Use passthrough from now on (the kernel agreed to it at init).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Decide how to answer an open of node `node` whose layer file is
    /// `fd`; `register` makes a new backing ID for it.
    pub fn acquire(
        &self,
        node: u64,
        fd: BorrowedFd<'_>,
        register: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Mode {
        if !self.enabled.load(Ordering::Relaxed) {
            return Mode::Served;
        }
        let Ok(st) = sys::fstat(fd) else {
            return Mode::Served;
        };
        let file = (sys::dev_of(&st), sys::ino_of(&st));
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(backing) = map.get_mut(&node) {
            if backing.file == file {
                backing.opens += 1;
                return Mode::Passthrough(backing.id.clone());
            }
            return Mode::ServedDirect;
        }
        match register(fd.as_fd()) {
            Ok(id) => {
                let id = Arc::new(id);
                map.insert(
                    node,
                    Backing {
                        id: id.clone(),
                        file,
                        opens: 1,
                    },
                );
                Mode::Passthrough(id)
            }
            Err(e) => {
                debug!("no passthrough for node {node}: {e}");
                Mode::Served
            }
        }
    }

    /// A passthrough handle of node `node` was released.
    pub fn release(&self, node: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(backing) = map.get_mut(&node) {
            backing.opens -= 1;
            if backing.opens == 0 {
                map.remove(&node);
            }
        }
    }
}
