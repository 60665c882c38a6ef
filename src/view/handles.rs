//! The open files of the view by handle number: what each handle holds
//! (the layer file's descriptor, its node, its layer, whether it holds a
//! passthrough backing). A leaf: opening, reading and writing are in
//! `files`.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::types::{Errno, Layer, OpResult};

/// An open file of the view.
#[derive(Debug, Clone)]
pub struct OpenFile {
    /// The node it belongs to.
    pub node: u64,
    /// The layer file.
    pub file: Arc<File>,
    /// Which kind of layer the file is in.
    pub layer: Layer,
    /// Holds one count of the node's passthrough backing.
    pub backing: bool,
}

/// What a handle holds.
#[derive(Debug, Clone)]
pub enum Handle {
    /// An open file.
    File(OpenFile),
}

/// Open handles by number.
#[derive(Debug, Default)]
pub struct Handles {
    map: Mutex<HashMap<u64, Handle>>,
    next: AtomicU64,
}

impl Handles {
    /// Keep `handle`; returns its number.
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(fh, handle);
        fh
    }

    /// The handle `fh`.
    pub fn get(&self, fh: u64) -> Option<Handle> {
        self.lock().get(&fh).cloned()
    }

    /// The open file of handle `fh`.
    pub fn file(&self, fh: u64) -> OpResult<Arc<File>> {
        match self.get(fh) {
            Some(Handle::File(open)) => Ok(open.file),
            _ => Err(Errno::BADF),
        }
    }

    /// The open file of handle `fh`, with what is known of it.
    pub fn open_file(&self, fh: u64) -> Option<OpenFile> {
        match self.get(fh) {
            Some(Handle::File(open)) => Some(open),
            _ => None,
        }
    }

    /// Any open file of node `id` (its attributes outlive its last name),
    /// one of the upper layer if there is one.
    pub fn any_file_of(&self, id: u64) -> Option<OpenFile> {
        let map = self.lock();
        let mut found: Option<&OpenFile> = None;
        for Handle::File(open) in map.values() {
            if open.node == id && found.is_none_or(|f| f.layer != Layer::Upper) {
                found = Some(open);
            }
        }
        found.cloned()
    }

    /// Forget handle `fh`.
    pub fn remove(&self, fh: u64) -> Option<Handle> {
        self.lock().remove(&fh)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Handle>> {
        self.map.lock()
    }
}
