//! The write gate: lets another process (a `vskel sync`) stop every change
//! of a mounted view for a while, so it sees each file as it was before or
//! after a write, never half-way.
//!
//! Every request that changes the view (or may: a writable open copies up)
//! takes the gate shared for its whole duration; a hold takes it
//! exclusively, so it waits for the changes in flight and then keeps new
//! ones waiting in the kernel until it ends. Reads are never gated.
//!
//! What a hold cannot spare: the kernel keeps its own locks while a change
//! waits in vskel. A waiting `mkdir`, `create`, `unlink` or `rename` holds
//! its directory's lock, so lookups of names not cached yet in that
//! directory and listings of it wait too; a waiting write holds the pages
//! it writes, so reads of that file wait. Everything else is served.
//!
//! The lock is parking_lot's `RwLock`, which is task-fair: a reader (a
//! change) blocks while a writer (a hold) waits, so a hold is not starved
//! by a stream of writes (new writes queue behind it).
//!
//! Changes that arrive during a hold are parked in one queue, and one
//! thread per gate runs them once the hold ends: however many changes
//! wait (each is a closure holding its reply), the server has one thread
//! more, never one per change.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::warn;

/// A change parked during a hold.
type Parked = Box<dyn FnOnce() + Send + 'static>;

/// The gate of one mounted view.
#[derive(Default)]
pub struct WriteGate {
    lock: RwLock<()>,
    parked: Mutex<ParkedChanges>,
}

/// Changes waiting for a hold to end, and whether a thread runs them.
#[derive(Default)]
struct ParkedChanges {
    queue: VecDeque<Parked>,
    /// The thread that runs parked changes exists.
    runner: bool,
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGate")
            .field("parked", &self.parked())
            .finish_non_exhaustive()
    }
}

/// A change in progress: while it lives, no hold can begin.
#[derive(Debug)]
#[must_use = "the change is only covered while the guard lives"]
pub struct Writing<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

/// A hold: while it lives, no change can begin.
#[derive(Debug)]
#[must_use = "the hold ends when the guard is dropped"]
pub struct Holding<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
}

impl WriteGate {
    /// Enter a change (waits while a hold lasts). Changes run side by side.
    pub fn write(&self) -> Writing<'_> {
        // The lock guards no data: a panic while it was held breaks nothing.
        Writing {
            _guard: self.lock.read(),
        }
    }

    /// Enter a change if no hold lasts or waits; `None` otherwise.
    pub fn try_write(&self) -> Option<Writing<'_>> {
        self.lock.try_read().map(|guard| Writing { _guard: guard })
    }

    /// Run `change` inside the gate: at once on this thread if no hold
    /// lasts or waits, otherwise parked, to run in order once the hold
    /// ends, and this call returns at once.
    ///
    /// So a hold parks only the changes, never the caller: the FUSE worker
    /// threads (a handful) go on serving reads, lookups and `statfs` however
    /// many writers wait, and the parked changes cost one thread in all.
    pub fn run(self: &Arc<Self>, change: impl FnOnce() + Send + 'static) {
        if let Some(_writing) = self.try_write() {
            change();
            return;
        }
        let mut parked = self.lock_parked();
        parked.queue.push_back(Box::new(change));
        if parked.runner {
            return;
        }
        parked.runner = true;
        drop(parked);
        let gate = self.clone();
        let runner = std::thread::Builder::new()
            .name("vskel-held".into())
            .spawn(move || gate.run_parked());
        if let Err(e) = runner {
            // No thread to spare: this one waits for the hold instead.
            warn!("no thread to run changes waiting for a hold: {e}");
            self.run_parked();
        }
    }

    /// Run the parked changes as each hold ends, until none is left. Each
    /// round takes the changes parked so far, so a new hold waits for one
    /// round at most, however many changes keep arriving.
    fn run_parked(&self) {
        loop {
            let _writing = self.write();
            let round = {
                let mut parked = self.lock_parked();
                if parked.queue.is_empty() {
                    parked.runner = false;
                    return;
                }
                std::mem::take(&mut parked.queue)
            };
            for change in round {
                change();
            }
        }
    }

    /// How many changes wait for a hold to end.
    pub fn parked(&self) -> usize {
        self.lock_parked().queue.len()
    }

    fn lock_parked(&self) -> parking_lot::MutexGuard<'_, ParkedChanges> {
        // Only the queue is guarded; a panic in a change runs outside it.
        self.parked.lock()
    }

    /// Stop all changes: waits for those in flight, then keeps new ones
    /// waiting until the returned guard is dropped.
    pub fn hold(&self) -> Holding<'_> {
        Holding {
            _guard: self.lock.write(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// How long "does not happen" is watched for.
    const BLOCKED: Duration = Duration::from_millis(200);

    /// A thread that takes `gate` for writing; the receiver hears once it
    /// has.
    fn spawn_writer(gate: &Arc<WriteGate>) -> (std::thread::JoinHandle<()>, mpsc::Receiver<()>) {
        let (wrote_tx, wrote_rx) = mpsc::channel();
        let gate = gate.clone();
        let writer = std::thread::spawn(move || {
            let _w = gate.write();
            wrote_tx.send(()).unwrap();
        });
        (writer, wrote_rx)
    }

    #[test]
    fn writes_run_side_by_side() {
        let gate = Arc::new(WriteGate::default());
        let _first = gate.write();
        let (second, wrote_rx) = spawn_writer(&gate);
        assert!(
            wrote_rx.recv_timeout(Duration::from_secs(10)).is_ok(),
            "a second write waited for the first"
        );
        second.join().unwrap();
    }

    #[test]
    fn a_hold_waits_for_writes_and_blocks_new_ones() {
        let gate = Arc::new(WriteGate::default());
        let writing = gate.write();
        let (held_tx, held_rx) = mpsc::channel();
        let (end_tx, end_rx) = mpsc::channel::<()>();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let _hold = gate.hold();
                held_tx.send(()).unwrap();
                let _ = end_rx.recv();
            })
        };
        assert!(
            held_rx.recv_timeout(BLOCKED).is_err(),
            "the hold began during a write"
        );
        drop(writing);
        held_rx.recv().unwrap();
        let (writer, wrote_rx) = spawn_writer(&gate);
        assert!(
            wrote_rx.recv_timeout(BLOCKED).is_err(),
            "a write began during the hold"
        );
        end_tx.send(()).unwrap();
        holder.join().unwrap();
        wrote_rx.recv().unwrap();
        writer.join().unwrap();
    }

    #[test]
    fn run_defers_a_change_during_a_hold_and_returns_at_once() {
        let gate = Arc::new(WriteGate::default());
        let (ran_tx, ran_rx) = mpsc::channel();
        let tx = ran_tx.clone();
        gate.run(move || tx.send("free").unwrap());
        assert_eq!(ran_rx.try_recv(), Ok("free"), "no hold: runs inline");
        let hold = gate.hold();
        gate.run(move || ran_tx.send("held").unwrap());
        assert!(
            ran_rx.recv_timeout(BLOCKED).is_err(),
            "a change ran during the hold"
        );
        drop(hold);
        assert_eq!(ran_rx.recv_timeout(Duration::from_secs(10)), Ok("held"));
    }

    #[test]
    fn changes_parked_during_a_hold_run_in_order_after_it() {
        let gate = Arc::new(WriteGate::default());
        let (ran_tx, ran_rx) = mpsc::channel();
        let hold = gate.hold();
        for i in 0..1000 {
            let tx = ran_tx.clone();
            gate.run(move || tx.send(i).unwrap());
        }
        assert_eq!(gate.parked(), 1000);
        assert!(ran_rx.recv_timeout(BLOCKED).is_err(), "ran during the hold");
        drop(hold);
        let ran: Vec<i32> = (0..1000)
            .map(|_| ran_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(ran, (0..1000).collect::<Vec<_>>());
        assert_eq!(gate.parked(), 0);
    }

    #[test]
    fn a_waiting_hold_is_not_starved_by_new_writes() {
        let gate = Arc::new(WriteGate::default());
        let first = gate.write();
        let (held_tx, held_rx) = mpsc::channel();
        let holder = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let hold = gate.hold();
                held_tx.send(()).unwrap();
                drop(hold);
            })
        };
        // Give the hold time to queue, then try a new write: it must wait
        // behind the hold rather than slip in.
        std::thread::sleep(BLOCKED / 2);
        let (late, wrote_rx) = spawn_writer(&gate);
        assert!(
            wrote_rx.recv_timeout(BLOCKED).is_err(),
            "a new write overtook the waiting hold"
        );
        drop(first);
        held_rx.recv().unwrap();
        wrote_rx.recv().unwrap();
        holder.join().unwrap();
        late.join().unwrap();
    }
}
