//! static/'s account files (`etc/passwd`, `group`, `shadow`, `gshadow`) in
//! a skel's temporary vserver: `merge-skel` copies them in as they are, so
//! that maintainer scripts calling `adduser`, `useradd` or `getent` work;
//! `split-skel` never takes them back (static/ is per-vserver, and
//! build-skel's placement sends them there) and warns, naming the file and
//! what to do, when one changed there.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use tracing::warn;

use super::Skel;
use super::policy::STATIC_ETC_FILES;
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::compare::{CompareSpec, Side, same_entry};
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::meta::Meta;

/// Copy static's `etc/passwd`, `group`, `shadow` and `gshadow` (those it
/// has) into `tree`'s `etc/`, metadata kept.
pub(super) fn copy_into(skel: &Skel, tree: &TreeRoot) -> Result<()> {
    let etc = Path::new("etc");
    let statics = TreeRoot::open(&skel.static_dir())?;
    let (Some(from), Some(into)) = (open_dir_opt(&statics, etc)?, open_dir_opt(tree, etc)?) else {
        return Ok(());
    };
    let st = sys::fstat(into.as_fd()).map_err(|e| Error::io("stat", tree.display(etc), e))?;
    let etc_times = Meta::from_stat(&st).times;
    for file in STATIC_ETC_FILES {
        let rel = etc.join(file);
        let name = sys::cname(OsStr::new(file)).map_err(|e| Error::io("name", &rel, e))?;
        match copy_entry(
            from.as_fd(),
            &name,
            into.as_fd(),
            Some(&name),
            &CopySpec::ALL,
        ) {
            Ok(copied) => copied.made.keep(),
            Err(e) if sys::is_absent(&e) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => warn!(
                "{}: the skel's local/ has its own; static's is not copied over it",
                tree.display(&rel).display()
            ),
            Err(e) => return Err(Error::io("copy", statics.display(&rel), e)),
        }
    }
    sys::futimens(into.as_fd(), etc_times).map_err(|e| Error::io("set times", tree.display(etc), e))
}

/// Warn about each account file (`etc/passwd`, ...) of the temporary
/// vserver `temp` that is not static's any more: split-skel does not take
/// it back, since static/ is per-vserver. Problems are logged, not
/// returned: they never stop a split.
pub(super) fn warn_changed(skel: &Skel, temp: &TreeRoot) {
    let etc = Path::new("etc");
    let dirs = TreeRoot::open(&skel.static_dir())
        .and_then(|statics| Ok((open_dir_opt(&statics, etc)?, open_dir_opt(temp, etc)?)));
    let (from, into) = match dirs {
        Ok(dirs) => dirs,
        Err(e) => {
            warn!("cannot check the temporary vserver's account files: {e}");
            return;
        }
    };
    for file in STATIC_ETC_FILES {
        match changed(from.as_ref(), into.as_ref(), file) {
            Ok(false) => {}
            Ok(true) => warn!(
                "{}: changed in the temporary vserver, not taken back: static/etc/{file} is \
                 per-vserver and was not changed; to change it for new vservers, edit {}",
                temp.display(&etc.join(file)).display(),
                skel.static_dir().join("etc").join(file).display()
            ),
            Err(e) => warn!(
                "cannot compare {} with the skel's static/etc/{file}: {e}",
                temp.display(&etc.join(file)).display()
            ),
        }
    }
}

/// Is `file` in the temporary vserver's `etc/` (`temp`) not what it is in
/// static's (`statics`)? Both absent is no change.
fn changed(statics: Option<&OwnedFd>, temp: Option<&OwnedFd>, file: &str) -> std::io::Result<bool> {
    let name = sys::cname(OsStr::new(file))?;
    let stat = |dir: Option<&OwnedFd>| match dir {
        Some(dir) => sys::absent_as_none(sys::stat_at(dir.as_fd(), &name)),
        None => Ok(None),
    };
    match (statics, stat(statics)?, temp, stat(temp)?) {
        (_, None, _, None) => Ok(false),
        (Some(sd), Some(want), Some(td), Some(have)) => {
            let spec = CompareSpec {
                keep_xattr: &|_| true,
                content: true,
                links: false,
            };
            let source = Side {
                dir: sd.as_fd(),
                name: &name,
                stat: &want,
            };
            let copy = Side {
                dir: td.as_fd(),
                name: &name,
                stat: &have,
            };
            Ok(!same_entry(source, copy, &spec)?)
        }
        _ => Ok(true),
    }
}

/// Directory `rel` of `tree`, if it is one.
fn open_dir_opt(tree: &TreeRoot, rel: &Path) -> Result<Option<OwnedFd>> {
    match sys::open_dir_beneath(tree.fd(), rel) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if sys::is_absent(&e) || e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
        Err(e) => Err(Error::io("open directory", tree.display(rel), e)),
    }
}
