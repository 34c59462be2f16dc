//! Walks a DAG: each node starts as soon as all of its dependencies have finished (no
//! level-by-level barriers). A failed node's dependents are skipped, independent branches go on.
//! Once cancelled, no new node starts; those in flight finish. How many nodes *operate* at once is
//! bounded by the callers with a semaphore around the operation itself, so that waiting for the
//! journal does not hold a slot.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};

/// How a node ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<E = String> {
    /// It ran and succeeded.
    Done,
    /// It ran and failed with this error.
    Failed(E),
    /// It did not run because this node (an upstream failure) failed.
    Skipped(usize),
    /// It did not run because the walk was cancelled.
    Cancelled,
}

/// Runs `run(i)` for every node `i`, where `deps[i]` lists the nodes `i` waits for.
/// The graph must be acyclic (the graph module guarantees it); nodes on a cycle would never
/// start and are reported as cancelled.
pub async fn walk<F, Fut, E>(deps: &[Vec<usize>], cancel: Option<&AtomicBool>, mut run: F) -> Vec<Outcome<E>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Clone,
{
    let n = deps.len();
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut outcome: Vec<Option<Outcome<E>>> = vec![None; n];
    let mut ready: Vec<usize> = (0..n).filter(|&i| waiting[i] == 0).rev().collect();
    let mut running = FuturesUnordered::new();
    loop {
        let cancelled = cancel.is_some_and(|c| c.load(Ordering::SeqCst));
        if !cancelled {
            while let Some(i) = ready.pop() {
                let fut = run(i);
                running.push(async move { (i, fut.await) });
            }
        }
        let Some((i, result)) = running.next().await else { break };
        match result {
            Ok(()) => {
                outcome[i] = Some(Outcome::Done);
                for &d in &dependents[i] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 && outcome[d].is_none() {
                        ready.push(d);
                    }
                }
            }
            Err(msg) => {
                outcome[i] = Some(Outcome::Failed(msg));
                let mut stack = dependents[i].clone();
                while let Some(d) = stack.pop() {
                    if outcome[d].is_none() {
                        outcome[d] = Some(Outcome::Skipped(i));
                        stack.extend(dependents[d].iter().copied());
                    }
                }
            }
        }
    }
    outcome.into_iter().map(|o| o.unwrap_or(Outcome::Cancelled)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn order_failure_and_skips() {
        // 0 → 1 → 2, 3 independent, 4 depends on 1 and 3.
        let deps = vec![vec![], vec![0], vec![1], vec![], vec![1, 3]];
        let log = Mutex::new(Vec::new());
        let out = walk(&deps, None, |i| {
            log.lock().unwrap().push(i);
            async move { if i == 1 { Err("boom".to_string()) } else { Ok(()) } }
        })
        .await;
        assert_eq!(out[0], Outcome::Done);
        assert_eq!(out[1], Outcome::Failed("boom".into()));
        assert_eq!(out[2], Outcome::Skipped(1));
        assert_eq!(out[3], Outcome::Done);
        assert_eq!(out[4], Outcome::Skipped(1));
        let log = log.into_inner().unwrap();
        assert!(!log.contains(&2) && !log.contains(&4));
    }

    #[tokio::test]
    async fn cancel_stops_new_nodes() {
        let deps = vec![vec![], vec![0]];
        let flag = AtomicBool::new(false);
        let out = walk(&deps, Some(&flag), |_| {
            flag.store(true, Ordering::SeqCst);
            async { Ok::<(), String>(()) }
        })
        .await;
        assert_eq!(out, vec![Outcome::Done, Outcome::Cancelled]);
    }
}
