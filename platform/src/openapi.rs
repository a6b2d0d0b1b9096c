//! What both roles' OpenAPI documents share, applied to each as a whole so
//! no operation can be written without it: the bearer scheme, and the one
//! problem+json body (RFC 9457) under every error answer, including the 401
//! every operation that needs a token can answer. utoipa writes the
//! operations from their annotations; this finishes the document.

use serde_json::{Value, json};

/// The component every problem+json answer refers to.
pub const PROBLEM: &str = "#/components/schemas/Problem";

/// Finishes `doc` (an OpenAPI 3.1 document as JSON): declares the bearer
/// scheme, gives every `application/problem+json` answer the `Problem`
/// schema (which the role must list among its components), and adds the
/// 401 to each operation that requires a bearer token.
pub fn finish(doc: &mut Value) {
    if let Some(components) = doc.pointer_mut("/components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({"bearer": {"type": "http", "scheme": "bearer", "description": "A token of principals.toml, or an access token of one of its identity providers"}}),
        );
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|p| p.values_mut()) {
        let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        if secured && !responses.contains_key("401") {
            responses.insert("401".into(), problem("No bearer token, or one that is unknown or refused"));
        }
        for response in responses.values_mut() {
            if let Some(content) = response.pointer_mut("/content/application~1problem+json") {
                content["schema"] = json!({"$ref": PROBLEM});
            }
        }
    }
}

/// An answer with a problem+json body.
pub fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": PROBLEM}}}})
}
