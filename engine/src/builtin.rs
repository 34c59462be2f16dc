//! The built-in resource type `meshform_data`: a value stored in state and nothing else, like
//! Terraform's `terraform_data`. `input` is copied to `output`; a change of `triggers_replace`
//! replaces the object (new `id`). Useful to test graphs and to hang `depends_on` on.

use async_trait::async_trait;

use crate::provider::{
    AttrSchema, AttrType, CallContext, Object, Planned, Presence, Provider, ProviderResult, TypeKind, TypeSchema,
};
use crate::value::{Map, Value};

/// The provider serving `meshform_data`.
pub struct Builtin;

/// The provider's name.
pub const NAME: &str = "meshform";

#[async_trait]
impl Provider for Builtin {
    fn name(&self) -> &str {
        NAME
    }

    fn schemas(&self) -> Vec<TypeSchema> {
        vec![
            TypeSchema::new("meshform_data", TypeKind::Managed, "A value kept in state; input is copied to output.")
                .import_id("any text (becomes its id)")
                .attr(
                    AttrSchema::new("input", AttrType::Any, Presence::Optional)
                        .describe("Any value; copied to `output`."),
                )
                .attr(
                    AttrSchema::new("triggers_replace", AttrType::Any, Presence::Optional)
                        .force_new()
                        .describe("Any value; a change replaces the object."),
                )
                .attr(
                    AttrSchema::new("id", AttrType::String, Presence::Computed)
                        .describe("A random id, new on every replacement."),
                )
                .attr(AttrSchema::new("output", AttrType::Any, Presence::Computed).describe("The applied `input`.")),
        ]
    }

    async fn read(&self, _ty: &str, prior: &Map, _ctx: &CallContext) -> ProviderResult<Option<Object>> {
        Ok(Some(prior.clone().into()))
    }

    async fn plan(
        &self,
        _ty: &str,
        _prior: Option<&Map>,
        mut proposed: Planned,
        _ctx: &CallContext,
    ) -> ProviderResult<Planned> {
        // `output` is always the planned `input`: equal to the recorded output when the input is
        // unchanged (and then its plaintext, where state holds only a hash of a sensitive one).
        let input = proposed.attrs.get("input").cloned().unwrap_or(Value::Null);
        proposed.attrs.insert("output".into(), input);
        if proposed.sensitive.contains("input") {
            proposed.sensitive.insert("output".into());
        }
        Ok(proposed)
    }

    async fn create(&self, _ty: &str, planned: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let mut m = planned.clone();
        m.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
        m.insert("output".into(), planned.get("input").cloned().unwrap_or(Value::Null));
        Ok(m.into())
    }

    async fn update(&self, _ty: &str, prior: &Map, planned: &Map, _ctx: &CallContext) -> ProviderResult<Object> {
        let mut m = planned.clone();
        m.insert("id".into(), prior.get("id").cloned().unwrap_or(Value::Null));
        m.insert("output".into(), planned.get("input").cloned().unwrap_or(Value::Null));
        Ok(m.into())
    }

    async fn delete(&self, _ty: &str, _prior: &Map, _ctx: &CallContext) -> ProviderResult<()> {
        Ok(())
    }

    async fn import(&self, _ty: &str, id: &str, _ctx: &CallContext) -> ProviderResult<Object> {
        Ok(Map::from([("id".into(), Value::str(id))]).into())
    }
}
