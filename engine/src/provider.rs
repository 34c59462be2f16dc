//! The provider interface: what a family of resource types (Google Cloud, Kubernetes, the built-in
//! `meshform_data`) implements so the engine can plan and apply it, and the registry that maps
//! type names to providers.
//!
//! The engine never does network I/O itself: every read and write of a live object goes through
//! these methods. Values cross the boundary as [`Map`]s of attributes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::value::{Map, Value};

/// The type of an attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrType {
    /// Text.
    String,
    /// A number.
    Number,
    /// true or false.
    Bool,
    /// A list of one element type.
    List(Box<AttrType>),
    /// A map of string to one element type.
    Map(Box<AttrType>),
    /// A table with known attributes.
    Object(Vec<AttrSchema>),
    /// Anything (manifests, free-form inputs).
    Any,
}

impl fmt::Display for AttrType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrType::String => f.write_str("string"),
            AttrType::Number => f.write_str("number"),
            AttrType::Bool => f.write_str("bool"),
            AttrType::List(t) => write!(f, "list of {t}"),
            AttrType::Map(t) => write!(f, "map of {t}"),
            AttrType::Object(_) => f.write_str("table"),
            AttrType::Any => f.write_str("any value"),
        }
    }
}

/// Whether an attribute is set by the user, by the provider, or either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Must be set in the desired state.
    Required,
    /// May be set; absent means absent.
    Optional,
    /// Set only by the provider (ids, server-assigned values).
    Computed,
    /// May be set; when absent the provider chooses and meshform keeps its choice.
    OptionalComputed,
}

/// One attribute of a resource type.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrSchema {
    /// Attribute name.
    pub name: String,
    /// Its type.
    pub ty: AttrType,
    /// Who sets it.
    pub presence: Presence,
    /// A change replaces the object instead of updating it.
    pub force_new: bool,
    /// Never printed, never stored in plaintext.
    pub sensitive: bool,
    /// One line for `validate` and the docs.
    pub description: String,
    /// The path of a text file whose `${...}` references meshform renders: when the desired state
    /// gives a literal path, the provider also receives the rendered text as `NAME_text` (which the
    /// schema must declare), as with `templatefile()`.
    pub template_file: bool,
    /// Its value names clusters (a string, or a list of strings): each must be a key of
    /// `[clusters]`, which `validate` checks.
    pub names_cluster: bool,
    /// Its value names the one cluster the object lives in (it also names clusters): when that
    /// cluster is gone, the object went with it, and the plan forgets it (`forget: cluster gone`).
    pub lives_in: bool,
    /// Plans show it through this other attribute (a manifest's source through the objects it
    /// makes), so it is left out of plan renderings whenever that one is known.
    pub shown_by: Option<String>,
}

impl AttrSchema {
    /// An attribute with the given name, type and presence.
    pub fn new(name: &str, ty: AttrType, presence: Presence) -> AttrSchema {
        AttrSchema {
            name: name.into(),
            ty,
            presence,
            force_new: false,
            sensitive: false,
            description: String::new(),
            template_file: false,
            names_cluster: false,
            lives_in: false,
            shown_by: None,
        }
    }

    /// Marks it as shown in plans through attribute `other` (see [`AttrSchema::shown_by`]).
    pub fn shown_by(mut self, other: &str) -> Self {
        self.shown_by = Some(other.into());
        self
    }

    /// Marks it as naming `[clusters]` keys (see [`AttrSchema::names_cluster`]).
    pub fn names_cluster(mut self) -> Self {
        self.names_cluster = true;
        self
    }

    /// Marks it as naming the cluster the object lives in (see [`AttrSchema::lives_in`]).
    pub fn lives_in(mut self) -> Self {
        self.names_cluster = true;
        self.lives_in = true;
        self
    }

    /// Marks it as forcing replacement when changed.
    pub fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    /// Marks it as the path of a template file (see [`AttrSchema::template_file`]).
    pub fn template_file(mut self) -> Self {
        self.template_file = true;
        self
    }

    /// Marks it sensitive.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Sets its description.
    pub fn describe(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }

    /// Whether the user may set it.
    pub fn settable(&self) -> bool {
        self.presence != Presence::Computed
    }
}

/// Managed resource or data source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// `[resources.TYPE.NAME]`
    Managed,
    /// `[data.TYPE.NAME]` (and `[clusters.NAME]` for the `cluster` data type)
    Data,
}

/// The schema of one resource or data type.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeSchema {
    /// Type name, e.g. `gcp_firewall`.
    pub name: String,
    /// Managed or data.
    pub kind: TypeKind,
    /// Its attributes.
    pub attrs: Vec<AttrSchema>,
    /// One line for the docs.
    pub description: String,
    /// The form of the id `meshform import` and `[[import]]` take (managed types), e.g.
    /// `NAME` or `CLUSTER/NAMESPACE/NAME`.
    pub import_id: Option<String>,
}

impl TypeSchema {
    /// A schema with no attributes yet.
    pub fn new(name: &str, kind: TypeKind, description: &str) -> TypeSchema {
        TypeSchema { name: name.into(), kind, attrs: Vec::new(), description: description.into(), import_id: None }
    }

    /// Says what an import id of this type looks like.
    pub fn import_id(mut self, form: &str) -> Self {
        self.import_id = Some(form.into());
        self
    }

    /// Adds an attribute.
    pub fn attr(mut self, a: AttrSchema) -> Self {
        self.attrs.push(a);
        self
    }

    /// Looks up an attribute.
    pub fn get(&self, name: &str) -> Option<&AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// What kind of failure a provider hit; the engine and the CLI act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// It exists already, or a concurrent change won (409, 412).
    Conflict,
    /// Try again later (429, 5xx, connection reset); the provider has already retried.
    Transient,
    /// Credentials are missing or lack a permission (401, 403).
    Permission,
    /// The request was rejected as invalid (400).
    Invalid,
    /// Anything else.
    Other,
}

/// A provider failure. The message must never hold a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderError {
    /// What kind.
    pub kind: ErrorKind,
    /// What happened, in words for the user.
    pub message: String,
    /// For a [`ErrorKind::Transient`] failure of a read-only call: how long to wait before the
    /// engine may try it once more (the server's Retry-After). None: do not retry.
    pub retry_after: Option<std::time::Duration>,
}

impl ProviderError {
    /// An error of a kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
        ProviderError { kind, message: message.into(), retry_after: None }
    }

    /// The same error with retry advice (see [`ProviderError::retry_after`]).
    pub fn retry_after(mut self, after: std::time::Duration) -> ProviderError {
        self.retry_after = Some(after);
        self
    }

    /// What the user can do about an error of this kind, for the CLI to print under it.
    pub fn hint(&self) -> Option<&'static str> {
        match self.kind {
            ErrorKind::Permission => Some(
                "check the credentials meshform uses (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, or the kubeconfig context) and their roles",
            ),
            ErrorKind::Conflict => Some(
                "another change won, or the object already exists: run `meshform plan` again, or adopt it with `meshform import`",
            ),
            ErrorKind::Transient => {
                Some("the service is busy or unreachable; meshform already retried: run again later")
            }
            ErrorKind::NotFound | ErrorKind::Invalid | ErrorKind::Other => None,
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Transient => "temporary failure",
            ErrorKind::Permission => "permission denied",
            ErrorKind::Invalid => "invalid request",
            ErrorKind::Other => "error",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

impl std::error::Error for ProviderError {}

/// Provider results.
pub type ProviderResult<T> = Result<T, ProviderError>;

/// How a provider waits for something to happen (an operation to finish, a kind to appear, a
/// condition to hold): the one polling loop every provider uses.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    /// Give up after this long.
    pub timeout: std::time::Duration,
    /// The first pause between attempts; it doubles each time.
    pub first: std::time::Duration,
    /// The longest pause between attempts.
    pub max: std::time::Duration,
}

impl Poll {
    /// Polling for at most `timeout`, pausing `first`, then twice as long each time up to `max`.
    pub fn new(timeout: std::time::Duration, first: std::time::Duration, max: std::time::Duration) -> Poll {
        Poll { timeout, first, max: max.max(first) }
    }

    /// Calls `check` until it returns `Some`, or an error (returned as it is), or the time is up
    /// (then the error `timed_out` makes). Uses tokio's clock, so tests on a paused clock do not
    /// wait.
    pub async fn until<T, F, Fut>(self, mut check: F, timed_out: impl FnOnce() -> ProviderError) -> ProviderResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ProviderResult<Option<T>>>,
    {
        let started = tokio::time::Instant::now();
        let mut pause = self.first;
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            let elapsed = started.elapsed();
            if elapsed >= self.timeout {
                return Err(timed_out());
            }
            tokio::time::sleep(pause.min(self.timeout - elapsed)).await;
            pause = (pause * 2).min(self.max);
        }
    }
}

/// The longest wait a provider's retry advice may impose on the engine.
const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs a read-only provider call, and once more when it failed transiently with retry advice
/// ([`ProviderError::retry_after`], at most 30 s): the engine's part of acting on error kinds.
/// Calls that change something are never repeated by the engine.
pub async fn retry_read<T, F, Fut>(mut call: F) -> ProviderResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ProviderResult<T>>,
{
    match call().await {
        Err(ProviderError { kind: ErrorKind::Transient, retry_after: Some(after), .. }) => {
            tokio::time::sleep(after.min(MAX_RETRY_AFTER)).await;
            call().await
        }
        r => r,
    }
}

/// What a provider returns about an object: its attributes, which of them hold secrets because
/// of what the object is rather than by its type's schema (a Kubernetes `Secret` given as a
/// generic manifest or read by a lookup), and notes for the user ("adopted an existing object").
/// The engine redacts the sensitive attributes wherever the object is recorded or shown, and
/// shows the notes after the run. Everything a call learns travels here: there is no other
/// channel from a provider to the engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object {
    /// The attributes.
    pub attrs: Map,
    /// Attributes holding secrets beyond the schema's sensitive ones.
    pub sensitive: BTreeSet<String>,
    /// Things the user should hear about.
    pub notes: Vec<String>,
}

impl From<Map> for Object {
    fn from(attrs: Map) -> Object {
        Object { attrs, sensitive: BTreeSet::new(), notes: Vec::new() }
    }
}

impl Object {
    /// Adds a note.
    pub fn note(mut self, n: impl Into<String>) -> Object {
        self.notes.push(n.into());
        self
    }

    /// Marks attributes sensitive.
    pub fn sensitive(mut self, names: impl IntoIterator<Item = String>) -> Object {
        self.sensitive.extend(names);
        self
    }
}

/// What every call can see besides its own attributes.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// The `[providers.NAME]` settings of this provider, evaluated.
    pub config: Arc<Map>,
    /// Every `[clusters.NAME]` looked up so far: name → its attributes.
    pub clusters: Arc<BTreeMap<String, Map>>,
    /// The directory of the desired-state file (relative paths in attributes resolve against it).
    pub dir: std::path::PathBuf,
    /// The resource's `timeouts` entry for the operation under way: how long the whole call may
    /// take (the engine gives up after it); providers wait for their operations this long instead
    /// of their own default.
    pub timeout: Option<std::time::Duration>,
    /// The resource's `lifecycle.create_before_destroy`: an update that replaces objects inside
    /// the resource (a manifest's renamed object) makes the new ones before deleting the old.
    pub create_before_destroy: bool,
}

/// A proposed new state for an object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Planned {
    /// Attributes after the change; unknowns are known only after apply.
    pub attrs: Map,
    /// Attributes whose change forces replacement (empty means update in place).
    pub replace_because: Vec<String>,
    /// Sensitive attributes: the engine fills in the schema's and those computed from sensitive
    /// inputs; a provider adds attributes it derives from sensitive ones.
    pub sensitive: BTreeSet<String>,
    /// Attributes the desired state sets (not null). An optional-computed attribute outside it
    /// carries the prior (live) value, which a provider recomputes when it chooses the value
    /// itself, so an out-of-band change to it is planned back.
    pub configured: BTreeSet<String>,
    /// The objects inside this one that the change creates or deletes.
    pub object_changes: Vec<ObjectChange>,
    /// Set by a provider's plan of a create when the object already exists and will be taken
    /// over rather than made: what adopting it means.
    pub adopts: Option<String>,
}

/// One object inside a resource (a manifest's object) that a change creates or deletes, shown in
/// the plan under the resource's change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectChange {
    /// `create` or `delete`.
    pub action: String,
    /// Which object (`Kind namespace/name`).
    pub object: String,
    /// Why, when it is not obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Something a refresh found that no planned change covers and that a reviewer must see: an
/// object meshform does not manage but the mesh trusts (a remote secret istiod reads). Reported
/// by `plan` and `drift` (exit 2); never deleted unless the desired state says so.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    /// A short kind, e.g. `unmanaged_remote_secret`.
    pub kind: String,
    /// What was found and what to do about it.
    pub message: String,
}

/// The result of a provider check (`[[checks]]` with a `kind`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Whether it held.
    pub passed: bool,
    /// What was found, for the report.
    pub detail: String,
}

/// A family of resource types.
///
/// Every method may be called concurrently for different objects. Methods must not print; they
/// return errors with a [`ErrorKind`] and a message without secrets.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's name: the key of its `[providers.NAME]` table.
    fn name(&self) -> &str;

    /// The schemas of every managed and data type this provider serves. Called once at startup.
    fn schemas(&self) -> Vec<TypeSchema>;

    /// The `kind`s of `[[checks]]` this provider evaluates.
    fn check_kinds(&self) -> Vec<String> {
        Vec::new()
    }

    /// Receives the evaluated `[providers.NAME]` table before any other call of a run (once per
    /// plan that reads live state, and once per apply; not again for a pass that reuses a run's
    /// reads, as drift's second comparison does). A provider that keeps what it read during a
    /// run (lists) forgets it here, so a run never sees another run's reads. Must not contact the
    /// cloud (a plan of nothing must work offline); validate settings only.
    async fn configure(&self, _config: &Map) -> ProviderResult<()> {
        Ok(())
    }

    /// Called once before a refresh with every object of this provider's types about to be read
    /// (type, prior). A provider that can read many objects at once (list calls) does it here and
    /// answers the following [`Provider::read`]s from what it got. Default: nothing.
    async fn prepare_refresh(&self, _objects: &[(String, Map)]) -> ProviderResult<()> {
        Ok(())
    }

    /// Reads the live state of an object recorded as `prior` (as stored in state: sensitive
    /// attributes may be [`Value::Redacted`]). Returns `None` when the object no longer exists;
    /// returns attributes in the same shape `create` returns, with plaintext for sensitive ones
    /// where the API gives them (the engine hashes them before anything is stored).
    async fn read(&self, ty: &str, prior: &Map, ctx: &CallContext) -> ProviderResult<Option<Object>>;

    /// Adjusts the engine's proposal for a change. `prior` is the refreshed live object (None for
    /// a create); `proposed` already holds the desired attributes over the prior ones, unknowns
    /// for computed attributes on create, and replacement reasons from `force_new` attributes.
    /// Normalise here (e.g. canonical CIDR forms) so that equal things compare equal, and name
    /// extra attributes that force replacement. Must not change anything live.
    async fn plan(
        &self,
        _ty: &str,
        _prior: Option<&Map>,
        proposed: Planned,
        _ctx: &CallContext,
    ) -> ProviderResult<Planned> {
        Ok(proposed)
    }

    /// What destroying the recorded object does when it is not plain deletion (an adopted
    /// namespace is unlabelled and kept), for the plan to say.
    fn describe_delete(&self, _ty: &str, _prior: &Map) -> Option<String> {
        None
    }

    /// After the refresh: what the provider finds around the objects in state (`(type, recorded
    /// attributes)`) that no change covers and a reviewer must see (see [`Finding`]). Read only.
    async fn findings(&self, _objects: &[(String, Map)], _ctx: &CallContext) -> ProviderResult<Vec<Finding>> {
        Ok(Vec::new())
    }

    /// Before a create changes anything: what must be recorded first, so that a crash between
    /// the create's calls loses nothing (e.g. a cluster setting's original value, which only a
    /// read before the first mutation can know). The engine journals the returned attributes as
    /// the object's record, durably, then calls `create` with them. `None`: nothing to record.
    async fn prepare_create(&self, _ty: &str, _planned: &Map, _ctx: &CallContext) -> ProviderResult<Option<Map>> {
        Ok(None)
    }

    /// Creates the object. `planned` has every known attribute; returns the full new state
    /// (with every computed attribute known). On `Conflict` (it already exists) the caller shows
    /// the message; providers that can adopt a matching object do so and return it.
    async fn create(&self, ty: &str, planned: &Map, ctx: &CallContext) -> ProviderResult<Object>;

    /// Updates the object in place from `prior` to `planned`; returns the full new state.
    async fn update(&self, ty: &str, prior: &Map, planned: &Map, ctx: &CallContext) -> ProviderResult<Object>;

    /// Deletes the object. Deleting an object that is already gone succeeds (the engine also
    /// takes a [`ErrorKind::NotFound`] from here as success).
    async fn delete(&self, ty: &str, prior: &Map, ctx: &CallContext) -> ProviderResult<()>;

    /// Reads an existing object by its provider-specific id so it can be adopted into state.
    async fn import(&self, ty: &str, id: &str, ctx: &CallContext) -> ProviderResult<Object>;

    /// Evaluates a data source (and `[clusters.NAME]`) from its fully known configuration.
    async fn read_data(&self, ty: &str, config: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let _ = config;
        Err(ProviderError::new(ErrorKind::Invalid, format!("{ty} is not a data type of {}", self.name())))
    }

    /// Runs a check of one of [`Provider::check_kinds`] with its evaluated arguments.
    async fn check(&self, kind: &str, _args: &Map, _ctx: &CallContext) -> ProviderResult<CheckOutcome> {
        Err(ProviderError::new(ErrorKind::Invalid, format!("no check kind `{kind}` in {}", self.name())))
    }
}

/// The providers of a run, by type name.
#[derive(Default, Clone)]
pub struct Registry {
    providers: Vec<Arc<dyn Provider>>,
    types: BTreeMap<(bool, String), (usize, Arc<TypeSchema>)>,
    checks: BTreeMap<String, usize>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a provider with all its types. A type already registered keeps its first provider.
    pub fn register(&mut self, p: Arc<dyn Provider>) {
        let idx = self.providers.len();
        for s in p.schemas() {
            let key = (s.kind == TypeKind::Data, s.name.clone());
            self.types.entry(key).or_insert((idx, Arc::new(s)));
        }
        for k in p.check_kinds() {
            self.checks.entry(k).or_insert(idx);
        }
        self.providers.push(p);
    }

    /// The provider and schema of a managed (`data = false`) or data type.
    pub fn lookup(&self, data: bool, ty: &str) -> Option<(&Arc<dyn Provider>, &Arc<TypeSchema>)> {
        self.types.get(&(data, ty.to_string())).map(|(i, s)| (&self.providers[*i], s))
    }

    /// The provider that runs a check kind.
    pub fn check_provider(&self, kind: &str) -> Option<&Arc<dyn Provider>> {
        self.checks.get(kind).map(|i| &self.providers[*i])
    }

    /// Every registered provider.
    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// Names of every managed (or data) type, sorted.
    pub fn type_names(&self, data: bool) -> Vec<&str> {
        self.types.keys().filter(|(d, _)| *d == data).map(|(_, n)| n.as_str()).collect()
    }

    /// Names of every check kind, sorted.
    pub fn check_kinds(&self) -> Vec<&str> {
        self.checks.keys().map(String::as_str).collect()
    }
}

/// Whether a value fits an attribute type (unknowns fit anything).
pub fn type_fits(ty: &AttrType, v: &Value) -> bool {
    match (ty, v) {
        (_, Value::Unknown | Value::Null | Value::Redacted(_)) | (AttrType::Any, _) => true,
        (AttrType::String, Value::String(_)) => true,
        // Numbers and bools interpolate into strings without loss.
        (AttrType::String, Value::Int(_) | Value::Float(_) | Value::Bool(_)) => true,
        (AttrType::Number, Value::Int(_) | Value::Float(_)) => true,
        (AttrType::Bool, Value::Bool(_)) => true,
        (AttrType::List(t), Value::List(items)) => items.iter().all(|i| type_fits(t, i)),
        (AttrType::Map(t), Value::Map(m)) => m.values().all(|i| type_fits(t, i)),
        (AttrType::Object(fields), Value::Map(m)) => {
            m.iter().all(|(k, v)| fields.iter().find(|f| &f.name == k).is_some_and(|f| type_fits(&f.ty, v)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_read_is_tried_once_more_after_the_advised_wait_and_no_more() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let r: ProviderResult<()> = retry_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(ProviderError::new(ErrorKind::Transient, "busy").retry_after(Duration::from_secs(3)))
        })
        .await;
        assert_eq!(r.unwrap_err().kind, ErrorKind::Transient);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        // Without advice, or for another kind, no retry.
        let calls = AtomicU32::new(0);
        let _ = retry_read(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(ProviderError::new(ErrorKind::Conflict, "no").retry_after(Duration::from_secs(1)))
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn polling_backs_off_and_gives_up_at_its_timeout() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let poll = Poll::new(Duration::from_secs(10), Duration::from_secs(1), Duration::from_secs(4));
        let r: ProviderResult<()> = poll
            .until(
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                },
                || ProviderError::new(ErrorKind::Transient, "never"),
            )
            .await;
        assert_eq!(r.unwrap_err().message, "never");
        // Checks at 0, 1, 3, 7 and, last, at the timeout (10).
        assert_eq!(calls.load(Ordering::SeqCst), 5);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let n = AtomicU32::new(0);
        let got =
            poll.until(|| async { Ok((n.fetch_add(1, Ordering::SeqCst) == 2).then_some(7)) }, || unreachable!()).await;
        assert_eq!(got.unwrap(), 7);
    }
}
