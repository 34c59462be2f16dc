//! Deciding one managed object's change: the single sequence of steps that `plan` uses to make a
//! change and `apply` uses to finish one whose values were unknown (or only hashed) when the plan
//! was made. The steps: the engine's [`propose`]al from the schema, the provider's
//! [`Provider::plan`](crate::provider::Provider::plan), `lifecycle.ignore_changes`, then
//! [`settle`], then the action.

use std::collections::BTreeSet;

use super::{Action, attr_diff, same};
use crate::addr::Addr;
use crate::provider::{CallContext, ErrorKind, Planned, Presence, ProviderError, ProviderResult, TypeSchema};
use crate::session::Session;
use crate::value::{Map, Value};

/// What to decide from.
pub struct DecideInput<'a> {
    /// The instance.
    pub addr: &'a Addr,
    /// The object as it is (refreshed live, or recorded); None: it does not exist.
    pub prior: Option<&'a Map>,
    /// The object has a record in state (so a missing `prior` was deleted outside meshform).
    pub recorded: bool,
    /// The desired attributes, evaluated.
    pub desired: &'a Map,
    /// Attributes known to be sensitive besides the schema's (read from a secret, recorded so).
    pub sensitive: BTreeSet<String>,
}

/// One decided change of a managed object.
#[derive(Clone, Debug)]
pub struct Decision {
    /// What to do.
    pub action: Action,
    /// Why, when it is not obvious.
    pub reason: Option<String>,
    /// The object after the change, replacement reasons and objects inside it.
    pub planned: Planned,
    /// Every sensitive attribute of the planned object.
    pub sensitive: BTreeSet<String>,
}

/// Decides the change of a managed object (read only: nothing live is changed).
pub async fn decide(s: &Session, input: DecideInput<'_>, ctx: &CallContext) -> ProviderResult<Decision> {
    let DecideInput { addr, prior, recorded, desired, mut sensitive } = input;
    let (Some((p, schema)), Some(block)) = (s.provider_of(addr), s.graph.block_of(&s.cfg, addr)) else {
        return Err(ProviderError::new(
            ErrorKind::Invalid,
            format!("{addr} is not a managed resource of the desired state"),
        ));
    };
    sensitive.extend(schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()));
    let mut proposed = propose(schema, prior, desired);
    proposed.sensitive.extend(sensitive.iter().cloned());
    let mut planned = p.plan(&addr.block.ty, prior, proposed, ctx).await?;
    if let Some(prior) = prior {
        keep_ignored(block, prior, &mut planned);
    }
    settle(schema, prior, desired, &mut planned);
    sensitive.extend(planned.sensitive.iter().cloned());
    let (action, reason) = action_of(schema, prior, recorded, &mut planned);
    Ok(Decision { action, reason, planned, sensitive })
}

/// `lifecycle.ignore_changes`: each ignored attribute keeps what `prior` has, and is no reason
/// to replace.
pub fn keep_ignored(block: &crate::config::Block, prior: &Map, planned: &mut Planned) {
    for (name, _) in &block.lifecycle.ignore_changes {
        match prior.get(name) {
            Some(v) => planned.attrs.insert(name.clone(), v.clone()),
            None => planned.attrs.remove(name),
        };
        planned.replace_because.retain(|r| r != name);
    }
}

/// The action that takes `prior` to `planned`.
fn action_of(
    schema: &TypeSchema,
    prior: Option<&Map>,
    recorded: bool,
    planned: &mut Planned,
) -> (Action, Option<String>) {
    match prior {
        None if recorded => (Action::Create, Some("deleted outside meshform".to_string())),
        None => match planned.adopts.take() {
            Some(what) => (Action::Adopt, Some(what)),
            None => (Action::Create, None),
        },
        Some(_) if !planned.replace_because.is_empty() => (Action::Replace, None),
        Some(prior) => {
            // A computed attribute the prior object lacks (recorded by an older version) is not
            // by itself a change.
            let new_computed = |n: &str, a: Option<&Value>| {
                a.is_none() && schema.get(n).is_some_and(|x| x.presence == Presence::Computed)
            };
            let changed = attr_diff(Some(prior), Some(&planned.attrs))
                .iter()
                .any(|(n, a, b)| !same(*a, *b) && !new_computed(n, *a));
            (if changed { Action::Update } else { Action::NoOp }, None)
        }
    }
}

/// Whether an action decided at apply time carries out the one the plan showed: the same kind of
/// operation (a create that turns out to adopt is still a create; the new object of a
/// replacement is decided as a create; an update whose unknown values turned out unchanged still
/// runs). Anything else contradicts the plan.
pub fn carries_out(planned: Action, now: Action) -> bool {
    use Action::*;
    matches!((planned, now), (Create | Adopt | Replace, Create | Adopt) | (Update, Update | NoOp) | (NoOp, NoOp))
}

/// The engine's proposal for an object, from its schema: desired attributes over the prior
/// object, computed attributes kept (or unknown on create), and the `force_new` attributes whose
/// desired value differs (before the provider normalises; see [`settle`]).
pub fn propose(schema: &TypeSchema, prior: Option<&Map>, desired: &Map) -> Planned {
    let mut attrs = Map::new();
    let mut replace = Vec::new();
    for a in &schema.attrs {
        // `null` is the same as leaving the attribute out (an optional-computed one keeps its value).
        let d = desired.get(&a.name).filter(|v| !matches!(v, Value::Null));
        let p = prior.and_then(|p| p.get(&a.name));
        let v = match a.presence {
            Presence::Required | Presence::Optional => d.cloned(),
            Presence::Computed => match prior {
                Some(_) => p.cloned(),
                None => Some(Value::Unknown),
            },
            Presence::OptionalComputed => {
                d.cloned().or_else(|| p.cloned()).or(if prior.is_none() { Some(Value::Unknown) } else { None })
            }
        };
        if let Some(v) = v {
            attrs.insert(a.name.clone(), v);
        }
        if a.force_new && prior.is_some() && a.presence != Presence::Computed && !same(p, attrs.get(&a.name)) {
            replace.push(a.name.clone());
        }
    }
    let sensitive = schema.attrs.iter().filter(|a| a.sensitive).map(|a| a.name.clone()).collect();
    let configured = desired.iter().filter(|(_, v)| !matches!(v, Value::Null)).map(|(k, _)| k.clone()).collect();
    Planned { attrs, replace_because: replace, sensitive, configured, object_changes: Vec::new(), adopts: None }
}

/// Finishes a provider's plan: a replacement reason stands only if the attribute still differs
/// after the provider normalised it; when the object is replaced, what the server chooses
/// (computed attributes, and optional ones the desired state leaves out) is unknown.
pub fn settle(schema: &TypeSchema, prior: Option<&Map>, desired: &Map, planned: &mut Planned) {
    let Some(prior) = prior else { return };
    planned.replace_because.retain(|a| !same(prior.get(a), planned.attrs.get(a)));
    if !planned.replace_because.is_empty() {
        server_chosen_unknown(schema, desired, planned);
    }
}

/// For a replacement: what the server chooses (computed attributes, and optional ones the
/// desired state leaves out) is unknown until the new object exists.
pub fn server_chosen_unknown(schema: &TypeSchema, desired: &Map, planned: &mut Planned) {
    for a in &schema.attrs {
        let server_chosen = a.presence == Presence::Computed
            || (a.presence == Presence::OptionalComputed
                && desired.get(&a.name).is_none_or(|v| matches!(v, Value::Null)));
        if server_chosen {
            planned.attrs.insert(a.name.clone(), Value::Unknown);
        }
    }
}
