//! `sluice schema`: a JSON Schema of the topology format, for editors.

use serde_json::{json, Map, Value};

use super::RuntimeConfig;
use crate::registry::{Registry, Role};

/// The JSON Schema (draft 2020-12) of a topology file with every registered component type.
pub fn json_schema(registry: &Registry) -> Value {
    let mut sections = Map::new();
    let mut all_defs = Map::new();
    for role in [Role::Source, Role::Operator, Role::Sink] {
        let mut variants = Vec::new();
        for p in registry.plugins().filter(|p| p.role() == role) {
            let mut s = p.schema();
            let defs = s
                .as_object_mut()
                .and_then(|o| o.remove("$defs"))
                .unwrap_or(json!({}));
            if let Some(obj) = s.as_object_mut() {
                obj.remove("$schema");
                obj.insert("description".into(), json!(p.about()));
                let props = obj.entry("properties").or_insert_with(|| json!({}));
                if let Some(props) = props.as_object_mut() {
                    props.insert("type".into(), json!({"const": p.type_name()}));
                    if role != Role::Source {
                        props.insert(
                            "inputs".into(),
                            json!({"type": "array", "items": {"type": "string"}, "minItems": 1,
                                   "description": "Names of the components whose output this one takes."}),
                        );
                    }
                }
                let req = obj.entry("required").or_insert_with(|| json!([]));
                if let Some(req) = req.as_array_mut() {
                    req.push(json!("type"));
                    if role != Role::Source {
                        req.push(json!("inputs"));
                    }
                }
                if let Value::Object(defs) = defs {
                    all_defs.extend(defs);
                }
            }
            variants.push(s);
        }
        sections.insert(
            role.section().to_string(),
            json!({"type": "object", "additionalProperties": {"oneOf": variants}}),
        );
    }
    let runtime = serde_json::to_value(schemars::schema_for!(RuntimeConfig)).unwrap_or(Value::Null);
    sections.insert("runtime".into(), runtime);
    sections.insert("name".into(), json!({"type": "string"}));
    sections.insert("description".into(), json!({"type": "string"}));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sluice topology",
        "type": "object",
        "additionalProperties": false,
        "required": ["sources", "sinks"],
        "properties": sections,
        "$defs": all_defs,
    })
}
