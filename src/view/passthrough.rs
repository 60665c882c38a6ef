//! FUSE passthrough: reads of an open lower file go from the kernel
//! straight to the layer file, without a round trip through vskel.
//!
//! The rule: only a file in a **lower** layer is opened in passthrough,
//! and lower files are read-only by construction (an open for writing
//! copies the file up first and then opens the upper copy). Every byte
//! written to the view therefore passes through vskel, where the write
//! gate ([`super::gate`]) can hold it while `vskel sync` flattens the view;
//! a passthrough write would go straight from the kernel to the upper file
//! and a sync could copy it half-written. Files in the upper layer are
//! served by vskel (through the page cache, write-through; a write-only
//! open of one bypasses the page cache, see `fuse::DIRECT`).
//!
//! What the kernel relies on (fs/fuse/iomode.c): while an inode has an
//! active backing file (some handle of it is open in passthrough), *every*
//! new open of that inode must be a passthrough open naming that same
//! backing, or the open fails with EIO; and a passthrough open fails while
//! the inode has handles open through the page cache. So backings are kept
//! per node with an open count, and an open of a node whose backing is
//! active but which needs another file (the node was copied up while a
//! reader still holds the lower file) answers with the same backing plus
//! `FOPEN_DIRECT_IO`: the kernel then sends its reads and writes to vskel
//! (direct I/O overrides passthrough), only `mmap` would map the backing.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use fuser::BackingId;
use tracing::debug;

use super::types::Layer;
use crate::sys;

/// How an open is answered.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Through this backing file (a lower file, read by the kernel).
    Passthrough(Arc<BackingId>),
    /// Served by vskel, through the page cache (no backing is active).
    Served,
    /// Served by vskel without the page cache, while another file of the
    /// node is the active backing: answered as a passthrough open of that
    /// backing with `FOPEN_DIRECT_IO`, which the kernel accepts and which
    /// sends reads and writes to vskel.
    ServedDirect(Arc<BackingId>),
}

impl Mode {
    /// The open holds one count of the node's backing (give it back with
    /// [`Backings::release`]).
    pub fn holds_backing(&self) -> bool {
        !matches!(self, Mode::Served)
    }
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
    /// `fd`, in layer `layer`; `register` makes a new backing ID for it.
    pub fn acquire(
        &self,
        node: u64,
        fd: BorrowedFd<'_>,
        layer: Layer,
        register: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Mode {
        if !self.enabled.load(Ordering::Relaxed) {
            return Mode::Served;
        }
        let mut map = self.map.lock();
        if let Some(backing) = map.get_mut(&node) {
            // The kernel accepts nothing but this backing for the node now.
            backing.opens += 1;
            let same = matches!(layer, Layer::Lower(_)) && file_of(fd) == Some(backing.file);
            return if same {
                Mode::Passthrough(backing.id.clone())
            } else {
                Mode::ServedDirect(backing.id.clone())
            };
        }
        if layer == Layer::Upper {
            return Mode::Served;
        }
        let Some(file) = file_of(fd) else {
            return Mode::Served;
        };
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

    /// A handle of node `node` that held a backing count was released.
    ///
    /// The kernel lets go of the inode's backing before it sends the
    /// release, so dropping ours now never leaves the kernel holding a
    /// backing vskel no longer knows of.
    pub fn release(&self, node: u64) {
        let mut map = self.map.lock();
        if let Some(backing) = map.get_mut(&node) {
            backing.opens -= 1;
            if backing.opens == 0 {
                map.remove(&node);
            }
        }
    }
}

/// The (device, inode) of an open file.
fn file_of(fd: BorrowedFd<'_>) -> Option<(u64, u64)> {
    let st = sys::fstat(fd).ok()?;
    Some((sys::dev_of(&st), sys::ino_of(&st)))
}
