//! Debian packages for the tests, built with `dpkg-deb --build` from a
//! description of their files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one version of a package holds.
pub struct Package<'a> {
    pub name: &'a str,
    pub version: &'a str,
    /// (path, content, mode)
    pub files: &'a [(&'a str, &'a str, u32)],
    pub conffiles: &'a [&'a str],
    pub postinst: Option<&'a str>,
}

/// Build `pkg` with `dpkg-deb --build` in `dir`; returns the .deb.
pub fn build_deb(dir: &Path, pkg: &Package<'_>) -> PathBuf {
    let root = dir.join(format!("{}-{}", pkg.name, pkg.version));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: t <t@example.org>\n\
             Description: vskel test package\n",
            pkg.name, pkg.version
        ),
    )
    .unwrap();
    if !pkg.conffiles.is_empty() {
        let list: String = pkg.conffiles.iter().map(|c| format!("/{c}\n")).collect();
        fs::write(root.join("DEBIAN/conffiles"), list).unwrap();
    }
    let mut files: Vec<(String, &str, u32)> = pkg
        .files
        .iter()
        .map(|(p, c, m)| (p.to_string(), *c, *m))
        .collect();
    if let Some(script) = pkg.postinst {
        files.push(("DEBIAN/postinst".to_string(), script, 0o755));
    }
    for (path, content, mode) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }
    let deb = dir.join(format!("{}_{}_all.deb", pkg.name, pkg.version));
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpkg-deb --build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    deb
}
