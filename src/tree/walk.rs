//! A parallel walk over directories.
//!
//! The caller's visitor handles one directory and returns the directories to
//! visit next; the walk runs visits on rayon's pool (one task per directory)
//! and stops spawning new ones after the first error, which it returns.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// Visit `start` and, recursively, every item the visitor returns.
pub fn par_walk<T, F>(start: T, visit: &F) -> Result<()>
where
    T: Send,
    F: Fn(T) -> Result<Vec<T>> + Sync,
{
    let state = WalkState {
        failed: Mutex::new(None),
        stop: AtomicBool::new(false),
    };
    rayon::scope(|scope| spawn_visit(scope, start, visit, &state));
    // A worker that panicked makes `rayon::scope` panic in turn.
    match state.failed.into_inner() {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

struct WalkState {
    failed: Mutex<Option<Error>>,
    stop: AtomicBool,
}

fn spawn_visit<'s, T, F>(scope: &rayon::Scope<'s>, item: T, visit: &'s F, state: &'s WalkState)
where
    T: Send + 's,
    F: Fn(T) -> Result<Vec<T>> + Sync,
{
    scope.spawn(move |scope| {
        if state.stop.load(Ordering::Relaxed) {
            return;
        }
        match visit(item) {
            Ok(children) => {
                for child in children {
                    spawn_visit(scope, child, visit, state);
                }
            }
            Err(err) => {
                state.stop.store(true, Ordering::Relaxed);
                let mut slot = state.failed.lock();
                if slot.is_none() {
                    *slot = Some(err);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn visits_every_item_of_a_tree() {
        let seen = AtomicUsize::new(0);
        // A complete ternary tree of depth 4: 1 + 3 + 9 + 27 + 81 nodes.
        par_walk(0u32, &|depth| {
            seen.fetch_add(1, Ordering::Relaxed);
            Ok(if depth < 4 {
                vec![depth + 1; 3]
            } else {
                vec![]
            })
        })
        .unwrap();
        assert_eq!(seen.load(Ordering::Relaxed), 121);
    }

    #[test]
    fn returns_the_first_error() {
        let err = par_walk(0u32, &|depth| {
            if depth == 3 {
                Err(Error::Failed(format!("broke at {depth}")))
            } else {
                Ok(vec![depth + 1, depth + 1])
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "broke at 3");
    }
}
