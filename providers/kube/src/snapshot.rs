//! A run's snapshot of cluster objects: one unselected list per cluster, kind and namespace,
//! made by the first read of it, and kept as the run's own writes change it. Refresh, plan,
//! lookups, findings and checks read it, so a cluster costs O(kinds) calls however many objects it
//! holds. Waits for a controller and the existence check before a create read the server instead
//! (`objects::get`). A new run ([`Snapshot::clear`], at configure) starts from nothing.
//!
//! A write that finishes while its kind's list is in flight is kept aside and laid over the list
//! when it arrives (a write's result is the server's object after it, so laying it over a list
//! that already has it changes nothing): the snapshot never misses a write of this run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as J;
use tokio::sync::OnceCell;

/// Cluster, apiVersion, kind, namespace (empty for cluster-scoped kinds).
pub type Key = (String, String, String, String);

/// Every kind and namespace read so far in this run.
#[derive(Default)]
pub struct Snapshot(Mutex<HashMap<Key, Arc<Kind>>>);

/// One kind in one namespace of one cluster.
#[derive(Default)]
pub struct Kind {
    /// The list, made once: true once listed, false when the list was refused.
    loaded: OnceCell<bool>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The objects by name, once listed (shared with readers: a read copies nothing).
    objects: Option<HashMap<String, Arc<J>>>,
    /// Writes of this run noted before the list arrived, in order.
    pending: Vec<(String, Option<Arc<J>>)>,
}

impl Snapshot {
    /// The entry of a kind and namespace (made empty, not listed, when new).
    pub fn kind(&self, key: Key) -> Arc<Kind> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().clone()
    }

    /// Records what a write of this run left (`None`: deleted). A kind nobody read is not kept.
    pub fn note(&self, key: &Key, name: &str, live: Option<&J>) {
        let Some(kind) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned() else { return };
        let live = live.map(|j| Arc::new(slim(j.clone())));
        let mut st = kind.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut st.objects {
            Some(objects) => put(objects, name, live),
            None => st.pending.push((name.to_string(), live)),
        }
    }

    /// Forgets everything (a new run).
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Kind {
    /// Lists it once (`list` gives the objects by name, or `None` when the list was refused);
    /// whether it is listed. Concurrent callers wait for the one list.
    pub async fn load<F, Fut, E>(&self, list: F) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<HashMap<String, J>>, E>>,
    {
        self.loaded
            .get_or_try_init(|| async {
                let listed = list().await;
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let pending = std::mem::take(&mut st.pending);
                let Some(listed) = listed? else { return Ok(false) };
                let mut objects: HashMap<String, Arc<J>> =
                    listed.into_iter().map(|(n, j)| (n, Arc::new(slim(j)))).collect();
                for (name, live) in pending {
                    put(&mut objects, &name, live);
                }
                st.objects = Some(objects);
                Ok(true)
            })
            .await
            .copied()
    }

    /// The object of that name, if listed and present.
    pub fn get(&self, name: &str) -> Option<Arc<J>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).objects.as_ref()?.get(name).cloned()
    }

    /// The names of the objects that pass `keep`, sorted.
    pub fn names(&self, keep: impl Fn(&J) -> bool) -> Vec<String> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> =
            st.objects.iter().flatten().filter(|(_, o)| keep(o)).map(|(n, _)| n.clone()).collect();
        out.sort();
        out
    }
}

fn put(objects: &mut HashMap<String, Arc<J>>, name: &str, live: Option<Arc<J>>) {
    match live {
        Some(j) => {
            objects.insert(name.to_string(), j);
        }
        None => {
            objects.remove(name);
        }
    }
}

/// The object without what no reader needs (field ownership), to keep a fleet's snapshot small.
fn slim(mut j: J) -> J {
    if let Some(m) = j["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    j
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key() -> Key {
        ("c1".into(), "v1".into(), "Secret".into(), "istio-system".into())
    }

    #[tokio::test]
    async fn a_write_during_the_list_is_laid_over_it_and_later_writes_update_it() {
        let snap = Snapshot::default();
        let kind = snap.kind(key());
        let listed = kind
            .load(|| async {
                // While the list is in flight: this run creates `b` and deletes `a`.
                snap.note(&key(), "b", Some(&json!({"metadata": {"name": "b", "managedFields": [1]}})));
                snap.note(&key(), "a", None);
                Ok::<_, ()>(Some(HashMap::from([("a".to_string(), json!({"v": 1}))])))
            })
            .await;
        assert_eq!(listed, Ok(true));
        assert_eq!(kind.get("a"), None, "deleted while listing");
        assert_eq!(
            kind.get("b").as_deref(),
            Some(&json!({"metadata": {"name": "b"}})),
            "created while listing, slimmed"
        );
        snap.note(&key(), "c", Some(&json!({"v": 3})));
        assert_eq!(kind.names(|_| true), ["b", "c"]);
        // Listed once: a second load does not list again.
        assert_eq!(kind.load(|| async { Err::<Option<HashMap<String, J>>, ()>(()) }).await, Ok(true));
        // A kind nobody read keeps nothing; a new run starts from nothing.
        let other = ("c2".into(), "v1".into(), "Secret".into(), "x".into());
        snap.note(&other, "z", Some(&json!({})));
        assert!(snap.0.lock().unwrap().get(&other).is_none());
        snap.clear();
        assert_eq!(snap.kind(key()).get("b"), None);
    }

    #[tokio::test]
    async fn a_refused_list_reads_object_by_object() {
        let snap = Snapshot::default();
        let kind = snap.kind(key());
        assert_eq!(kind.load(|| async { Ok::<_, ()>(None) }).await, Ok(false));
        assert_eq!(kind.get("a"), None);
    }
}
