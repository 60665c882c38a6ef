//! Clearing the set-user-ID and set-group-ID bits of a file that a caller
//! without `CAP_FSETID` writes or truncates, where the kernel leaves that to
//! the server: a WRITE with `FUSE_WRITE_KILL_SUIDGID` (direct I/O), and,
//! with `FUSE_HANDLE_KILLPRIV_V2`, a truncating SETATTR and an `O_TRUNC`
//! open. The rule is the kernel's (`setattr_should_drop_suidgid`): suid
//! always, sgid of a group-executable file, and sgid of any file whose
//! group is not the caller's. Only the caller's primary group is known
//! here, so a caller in the file's group by a supplementary group loses the
//! bit too: never less strict than the kernel.
//!
//! `security.capability` needs nothing: vskel writes and truncates the
//! layer file itself, and the host kernel drops that xattr on every write
//! and truncate, whoever makes it.
//!
//! The bits are cleared through the descriptor the change acts on (an open
//! layer file or a checked `O_PATH` handle), never by a name.

use std::os::fd::BorrowedFd;

use super::types::{OpResult, errno};
use crate::sys;

const SUID: u32 = 0o4000;
const SGID: u32 = 0o2000;
const GROUP_EXEC: u32 = 0o010;
const FILE_TYPE: u32 = 0o170000;
const REGULAR: u32 = 0o100000;

/// The mode a file of `mode` in group `file_gid` is left with once a caller
/// of primary group `caller_gid` changes it, if it changes.
pub fn killed_mode(mode: u32, file_gid: u32, caller_gid: u32) -> Option<u32> {
    if mode & FILE_TYPE != REGULAR {
        return None;
    }
    let mut kill = mode & SUID;
    if mode & SGID != 0 && (mode & GROUP_EXEC != 0 || file_gid != caller_gid) {
        kill |= SGID;
    }
    (kill != 0).then_some(mode & 0o7777 & !kill)
}

/// Clear the bits of the file `fd` (an open file, or an `O_PATH` handle
/// when `path_handle`) that a change by a caller of group `caller_gid`
/// kills.
pub fn kill_suidgid(fd: BorrowedFd<'_>, path_handle: bool, caller_gid: u32) -> OpResult<()> {
    let st = sys::fstat(fd).map_err(errno)?;
    let Some(mode) = killed_mode(st.st_mode as u32, st.st_gid as u32, caller_gid) else {
        return Ok(());
    };
    if path_handle {
        sys::chmod_handle(fd, mode)
    } else {
        sys::fchmod(fd, mode)
    }
    .map_err(errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suid_always_sgid_when_group_exec_or_not_the_callers_group() {
        assert_eq!(killed_mode(0o106777, 0, 1000), Some(0o777));
        assert_eq!(killed_mode(0o104755, 0, 0), Some(0o755));
        assert_eq!(killed_mode(0o102777, 5, 5), Some(0o777));
        assert_eq!(killed_mode(0o102767, 5, 1000), Some(0o767));
        assert_eq!(killed_mode(0o102767, 5, 5), None);
        assert_eq!(killed_mode(0o100777, 0, 1000), None);
        // Directories keep theirs (sgid there means inherit the group).
        assert_eq!(killed_mode(0o042777, 0, 1000), None);
    }
}
