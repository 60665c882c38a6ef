//! On a real Debian minbase tree (debootstrap, `../shared/fixtures/make-rootfs.sh`):
//! build a skel, create two vservers, run a shell in each with chroot, and
//! check that the second vserver costs little disk.

mod common;

use std::fs;

use common::{Setup, chroot_sh, dev_ino, disk_usage, require_root, snapshot};

/// The second vserver may add at most this share of the skel's bytes.
const MAX_SECOND_VSERVER_SHARE: f64 = 0.10;

#[test]
fn two_vservers_from_a_debian_skel_run_and_share_the_skel() {
    if !require_root("two_vservers_from_a_debian_skel_run_and_share_the_skel") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_debian_skel("minbase");
    let web1 = setup.create("minbase", "web1", "10.0.0.2");
    let web2 = setup.create("minbase", "web2", "10.0.0.3");

    for (vs, name) in [(&web1, "web1"), (&web2, "web2")] {
        assert_eq!(chroot_sh(vs, "echo ok"), "ok\n");
        assert_eq!(chroot_sh(vs, "cat /etc/hostname"), format!("{name}\n"));
        assert_eq!(chroot_sh(vs, "id -un"), "root\n");
        let status = chroot_sh(vs, "dpkg-query -W -f='${Status}' coreutils");
        assert_eq!(status, "install ok installed");
    }

    // Every global file of the skel is the same inode in both vservers.
    let global = skel.join("global");
    let mut shared = 0;
    for (rel, entry) in snapshot(&global) {
        if entry.kind == "dir" {
            continue;
        }
        let want = dev_ino(&global.join(&rel));
        assert_eq!(dev_ino(&web1.join(&rel)), want, "{}", rel.display());
        assert_eq!(dev_ino(&web2.join(&rel)), want, "{}", rel.display());
        shared += 1;
    }
    assert!(shared > 4000, "only {shared} global entries");

    let skel_bytes = disk_usage(&[&skel]);
    let with_one = disk_usage(&[&skel, &web1]);
    let with_two = disk_usage(&[&skel, &web1, &web2]);
    let added = with_two - with_one;
    eprintln!(
        "skel {skel_bytes} bytes on disk; web1 adds {}, web2 adds {added} ({:.1}%)",
        with_one - skel_bytes,
        100.0 * added as f64 / skel_bytes as f64
    );
    assert!(
        (added as f64) < MAX_SECOND_VSERVER_SHARE * skel_bytes as f64,
        "the second vserver adds {added} bytes, over {}% of the skel's {skel_bytes}",
        MAX_SECOND_VSERVER_SHARE * 100.0
    );
    assert!(fs::metadata(web1.join("proc")).unwrap().is_dir());
}
