//! Flags the kernel sends with an open or create (`fuse_open_in.open_flags`,
//! `fuse_create_in.open_flags`).

use bitflags::bitflags;

bitflags! {
    /// Flags of an open or create request (not the `open(2)` flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct OpenInFlags: u32 {
        /// Kill suid and sgid bits if the file is truncated (`O_TRUNC` by a
        /// caller without `CAP_FSETID`); only with
        /// [`FUSE_HANDLE_KILLPRIV_V2`](crate::InitFlags::FUSE_HANDLE_KILLPRIV_V2).
        const FUSE_OPEN_KILL_SUIDGID = 1 << 0;
    }
}
