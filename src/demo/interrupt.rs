//! Ctrl-C (SIGINT), SIGTERM and SIGHUP during the demo: the first only
//! sets a flag, which the demo checks between its steps, stopping with an
//! error so that it cleans up (unmounts its view, removes its directory);
//! a second one terminates at once, as it would without the demo.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::error::{Error, Result};

/// The signals that stop the demo.
const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// Whether a stop signal has come.
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Catch the stop signals from now on (until the process ends).
    pub fn catch() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in SIGNALS {
            // The default action once the flag is set (the second signal),
            // then the flag (the first): signal-hook's documented order.
            signal_hook::flag::register_conditional_default(signal, Arc::clone(&flag))
                .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
                .map_err(|e| Error::io("catch signal", format!("{signal}"), e))?;
        }
        Ok(Interrupt(flag))
    }

    /// An error if a stop signal has come.
    pub fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            return Err(Error::Failed(
                "interrupted: the demo stops and cleans up".to_string(),
            ));
        }
        Ok(())
    }
}
