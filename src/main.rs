//! The `vskel` binary: set up logging, run the command (or the mount(8)
//! helper, when run as `mount.fuse.vskel`), map the outcome to an exit
//! code (0 success, 1 failure, 2 usage error; a closed stdout pipe is
//! success).

fn main() {
    std::process::exit(vskel::cli::main());
}
