//! Clearing the set-user-ID and set-group-ID bits of a file that a caller
//! without `CAP_FSETID` writes or truncates, where the kernel leaves that to
//! the server: a WRITE with `FUSE_WRITE_KILL_SUIDGID` (direct I/O), and,
//! with `FUSE_HANDLE_KILLPRIV_V2`, a truncating SETATTR, an `O_TRUNC`
//! open, and the empty SETATTR that `chown(f, -1, -1)` becomes. The rule is the kernel's (`setattr_should_drop_suidgid`): suid
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

/// The mode a file of `mode` is left with after `chown(f, -1, -1)`, which
/// the kernel passes on as an empty SETATTR once `FUSE_HANDLE_KILLPRIV_V2`
/// is negotiated: as the kernel's `chown_common`, suid always goes, even
/// for root, and sgid as for a write, but a privileged caller (root) keeps
/// the sgid of a file that is not group-executable.
pub fn chowned_mode(mode: u32, file_gid: u32, caller_gid: u32, privileged: bool) -> Option<u32> {
    let as_written = if privileged {
        killed_mode(mode, file_gid, file_gid)
    } else {
        killed_mode(mode, file_gid, caller_gid)
    };
    as_written.or_else(|| {
        (mode & FILE_TYPE == REGULAR && mode & SUID != 0).then_some(mode & 0o7777 & !SUID)
    })
}

/// Clear what `chown(f, -1, -1)` by a caller of group `caller_gid` clears
/// (see [`chowned_mode`]) on the file `fd` (an open file, or an `O_PATH`
/// handle when `path_handle`).
pub fn kill_as_chown(
    fd: BorrowedFd<'_>,
    path_handle: bool,
    caller_gid: u32,
    privileged: bool,
) -> OpResult<()> {
    let st = sys::fstat(fd).map_err(errno)?;
    // A chown also drops file capabilities (the kernel's ATTR_KILL_PRIV).
    match sys::remove_xattr_handle(fd, c"security.capability") {
        Err(e) if e.raw_os_error() != Some(libc::ENODATA) => return Err(errno(e)),
        _ => {}
    }
    let Some(mode) = chowned_mode(st.st_mode as u32, st.st_gid as u32, caller_gid, privileged)
    else {
        return Ok(());
    };
    set_mode(fd, path_handle, mode)
}

/// Clear the bits of the file `fd` (an open file, or an `O_PATH` handle
/// when `path_handle`) that a change by a caller of group `caller_gid`
/// kills.
pub fn kill_suidgid(fd: BorrowedFd<'_>, path_handle: bool, caller_gid: u32) -> OpResult<()> {
    let st = sys::fstat(fd).map_err(errno)?;
    let Some(mode) = killed_mode(st.st_mode as u32, st.st_gid as u32, caller_gid) else {
        return Ok(());
    };
    set_mode(fd, path_handle, mode)
}

fn set_mode(fd: BorrowedFd<'_>, path_handle: bool, mode: u32) -> OpResult<()> {
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
