//! `vskel daemon`: one service that mounts and supervises the views
//! (`service`: start, signals, systemd, reload; `views`: the set of views
//! and the commands on them; `supervisor`: one view's restart loop;
//! `child`: one view's server process), and its control socket: the
//! messages (`protocol`), the socket file and peer credentials
//! (`socket`), the server that serves each connection on a thread of its
//! own (`server`, `connection`), the daemon's answers (`handler`) and the
//! client the command line uses (`client`, `route`).
//!
//! An op, on the floor of `vserver` (which it uses, with the engines);
//! nothing but `cli` uses it.

pub mod child;
pub mod client;
mod connection;
pub mod handler;
pub mod protocol;
pub mod route;
pub mod server;
pub mod service;
pub mod socket;
pub mod supervisor;
pub mod views;

pub use protocol::Handler;
pub use server::{Listening, Server};
