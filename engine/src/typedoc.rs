//! What the registry declares, for people and for editors: `meshform schema` (every type's
//! attributes: type, required / optional / computed, sensitive, force-new, description, import
//! id) and a JSON Schema of the desired-state TOML (checked in as
//! `engine/schemas/desired-state.schema.json`, which editors with TOML schema support use for
//! completion and validation; a test holds it to the registry).

use std::fmt::Write;

use serde_json::{Map as JMap, Value as J, json};

use crate::addr::CLUSTER_TYPE;
use crate::provider::{AttrSchema, AttrType, Presence, Registry, TypeKind, TypeSchema};

/// Every type of the registry, by name (managed and data sources; the `cluster` lookup is what
/// `[clusters.NAME]` blocks are).
pub fn types(r: &Registry) -> Vec<TypeSchema> {
    let mut v: Vec<TypeSchema> = r.providers().iter().flat_map(|p| p.schemas()).collect();
    v.sort_by(|a, b| (a.kind == TypeKind::Data, &a.name).cmp(&(b.kind == TypeKind::Data, &b.name)));
    v
}

fn presence(p: Presence) -> &'static str {
    match p {
        Presence::Required => "required",
        Presence::Optional => "optional",
        Presence::Computed => "computed",
        Presence::OptionalComputed => "optional, computed",
    }
}

/// One type for people: its description, import id and a table of attributes.
pub fn render_type(t: &TypeSchema) -> String {
    let mut s = String::new();
    let (table, kind) = match t.kind {
        TypeKind::Managed => (format!("[resources.{}.NAME]", t.name), "resource"),
        TypeKind::Data if t.name == CLUSTER_TYPE => ("[clusters.NAME]".to_string(), "cluster lookup"),
        TypeKind::Data => (format!("[data.{}.NAME]", t.name), "data source"),
    };
    let _ = writeln!(s, "{} ({kind}): {}\n  {table}", t.name, t.description);
    if let Some(id) = &t.import_id {
        let _ = writeln!(s, "  import id: {id}");
    }
    let w = t.attrs.iter().map(|a| a.name.len()).max().unwrap_or(0);
    let tw = t.attrs.iter().map(|a| a.ty.to_string().len()).max().unwrap_or(0);
    for a in &t.attrs {
        let mut flags = vec![presence(a.presence).to_string()];
        if a.sensitive {
            flags.push("sensitive".into());
        }
        if a.force_new {
            flags.push("forces replacement".into());
        }
        let desc = if a.description.is_empty() { String::new() } else { format!("  {}", a.description) };
        let _ = writeln!(s, "    {:<w$}  {:<tw$}  {}{desc}", a.name, a.ty.to_string(), flags.join(", "));
    }
    s
}

/// Every type as JSON: name, kind, description, import id and attributes.
pub fn types_json(types: &[TypeSchema]) -> J {
    J::Array(
        types
            .iter()
            .map(|t| {
                let attrs: Vec<J> = t
                    .attrs
                    .iter()
                    .map(|a| {
                        json!({
                            "name": a.name, "type": a.ty.to_string(), "presence": presence(a.presence),
                            "required": a.presence == Presence::Required,
                            "computed": matches!(a.presence, Presence::Computed | Presence::OptionalComputed),
                            "sensitive": a.sensitive, "force_new": a.force_new, "description": a.description,
                        })
                    })
                    .collect();
                let kind = if t.kind == TypeKind::Managed { "managed" } else { "data" };
                json!({ "name": t.name, "kind": kind, "description": t.description, "import_id": t.import_id, "attributes": attrs })
            })
            .collect(),
    )
}

/// An expression string: any value may be given as `"${...}"`.
fn expr() -> J {
    json!({ "type": "string", "pattern": "\\$\\{" })
}

fn value_schema(ty: &AttrType) -> J {
    match ty {
        AttrType::String => json!({ "type": "string" }),
        AttrType::Number => json!({ "anyOf": [{ "type": "number" }, expr()] }),
        AttrType::Bool => json!({ "anyOf": [{ "type": "boolean" }, expr()] }),
        AttrType::List(item) => json!({ "anyOf": [{ "type": "array", "items": value_schema(item) }, expr()] }),
        AttrType::Map(item) => {
            json!({ "anyOf": [{ "type": "object", "additionalProperties": value_schema(item) }, expr()] })
        }
        AttrType::Object(attrs) => {
            let props: JMap<String, J> = attrs.iter().map(|a| (a.name.clone(), attr_schema(a))).collect();
            json!({ "anyOf": [{ "type": "object", "properties": props }, expr()] })
        }
        AttrType::Any => json!({}),
    }
}

fn attr_schema(a: &AttrSchema) -> J {
    let mut v = value_schema(&a.ty);
    let mut desc = a.description.clone();
    for (on, what) in [(a.sensitive, "sensitive"), (a.force_new, "a change forces replacement")] {
        if on {
            desc = if desc.is_empty() { what.to_string() } else { format!("{desc} ({what})") };
        }
    }
    if let (J::Object(o), false) = (&mut v, desc.is_empty()) {
        o.insert("description".into(), J::from(desc));
    }
    v
}

/// The body of a block of type `t` with the meta-arguments `meta`.
fn block_schema(t: &TypeSchema, meta: &[&str]) -> J {
    let mut props: JMap<String, J> =
        t.attrs.iter().filter(|a| a.presence != Presence::Computed).map(|a| (a.name.clone(), attr_schema(a))).collect();
    for m in meta {
        let s = match *m {
            "for_each" => {
                json!({ "description": "one instance per key of this map or set (`each.key`, `each.value`)" })
            }
            "depends_on" => {
                json!({ "type": "array", "items": { "type": "string" }, "description": "addresses (or `'${ADDRESS[EXPR]}'`) this block waits for" })
            }
            "lifecycle" => json!({ "type": "object", "additionalProperties": false, "properties": {
                "prevent_destroy": { "type": "boolean" }, "create_before_destroy": { "type": "boolean" },
                "ignore_changes": { "type": "array", "items": { "type": "string" } } } }),
            _ => json!({ "type": "object", "additionalProperties": false, "properties": {
                "create": { "type": "string" }, "update": { "type": "string" }, "delete": { "type": "string" } } }),
        };
        props.insert((*m).to_string(), s);
    }
    let required: Vec<&str> =
        t.attrs.iter().filter(|a| a.presence == Presence::Required).map(|a| a.name.as_str()).collect();
    json!({ "type": "object", "description": t.description, "properties": props, "required": required, "additionalProperties": false })
}

fn named_blocks(def: &str) -> J {
    json!({ "type": "object", "additionalProperties": { "$ref": format!("#/$defs/{def}") } })
}

/// The JSON Schema (draft 2020-12) of a desired-state file for the types of `r`.
pub fn desired_state_schema(r: &Registry) -> J {
    let types = types(r);
    let mut defs = JMap::new();
    let (mut resources, mut data) = (JMap::new(), JMap::new());
    for t in &types {
        match t.kind {
            TypeKind::Managed => {
                defs.insert(
                    format!("resource.{}", t.name),
                    block_schema(t, &["for_each", "depends_on", "lifecycle", "timeouts"]),
                );
                resources.insert(t.name.clone(), named_blocks(&format!("resource.{}", t.name)));
            }
            TypeKind::Data if t.name == CLUSTER_TYPE => {
                defs.insert("cluster".into(), block_schema(t, &["for_each", "depends_on"]));
            }
            TypeKind::Data => {
                defs.insert(format!("data.{}", t.name), block_schema(t, &["for_each", "depends_on"]));
                data.insert(t.name.clone(), named_blocks(&format!("data.{}", t.name)));
            }
        }
    }
    let strings = json!({ "type": "string" });
    let entries = |props: J, required: &[&str]| json!({ "type": "array", "items": { "type": "object", "properties": props, "required": required, "additionalProperties": false } });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://meshform.dev/schemas/desired-state.schema.json",
        "title": "meshform desired state",
        "description": "A meshform desired-state file (TOML). Generated by `meshform schema --json-schema`; do not edit.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "state": { "type": "object", "description": "where state lives: `backend` (local, gcs, kubernetes) and its settings" },
            "variables": { "type": "object", "additionalProperties": { "type": "object", "additionalProperties": false, "properties": {
                "type": { "enum": ["string", "number", "bool", "list", "map", "any"] }, "default": {}, "description": strings, "sensitive": { "type": "boolean" } } } },
            "providers": { "type": "object", "additionalProperties": { "type": "object" } },
            "clusters": named_blocks("cluster"),
            "resources": { "type": "object", "properties": resources, "additionalProperties": false },
            "data": { "type": "object", "properties": data, "additionalProperties": false },
            "outputs": { "type": "object", "additionalProperties": { "type": "object", "required": ["value"], "additionalProperties": false,
                "properties": { "value": {}, "sensitive": { "type": "boolean" }, "description": strings } } },
            "checks": { "type": "array", "items": { "type": "object", "required": ["name"] } },
            "moved": entries(json!({ "from": strings, "to": strings }), &["from", "to"]),
            "removed": entries(json!({ "from": strings, "destroy": { "type": "boolean" } }), &["from"]),
            "import": entries(json!({ "to": strings, "id": strings }), &["to", "id"]),
        },
        "$defs": defs,
    })
}
