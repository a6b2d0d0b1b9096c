//! What both roles' OpenAPI documents share, applied to each as a whole so
//! no operation can be written without it: the bearer scheme, and the one
//! problem+json body (RFC 9457) under every error answer, including the 401
//! every operation that needs a token can answer. utoipa writes the
//! operations from their annotations; this finishes the document.

use serde_json::{Value, json};

/// The component every problem+json answer refers to.
pub const PROBLEM: &str = "#/components/schemas/Problem";

/// Finishes `doc` (an OpenAPI 3.1 document as JSON): declares the bearer
/// scheme; gives each parameter the schema `parameter` has for its name
/// in the operation at its path (the role's real formats: a child's UUID, a
/// council's ONS code, a date),
/// so every operation taking a `council` says the same of it; gives every
/// `application/problem+json` answer the `Problem` schema (which the role
/// must list among its components); and adds the answers every operation
/// of a kind can give: 401 where a bearer token is required, 422 where
/// there is anything to be invalid, 413 where there is a body, and the
/// 408 and 503 of `platform::http` everywhere.
pub fn finish(doc: &mut Value, parameter: &dyn Fn(&str, &str) -> Option<Value>) {
    if let Some(components) = doc.pointer_mut("/components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({"bearer": {"type": "http", "scheme": "bearer", "description": "A token of principals.toml, or an access token of one of its identity providers"}}),
        );
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, operation) in paths
        .iter_mut()
        .filter_map(|(path, p)| Some((path, p.as_object_mut()?)))
        .flat_map(|(path, p)| p.values_mut().map(move |o| (path, o)))
    {
        let Some(operation) = operation.as_object_mut() else { continue };
        let operation_has_body = operation.contains_key("requestBody");
        let mut takes_input = operation_has_body;
        if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
            takes_input |= !parameters.is_empty();
            for p in parameters.iter_mut() {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                if let Some(schema) = parameter(path, &name) {
                    p["schema"] = schema;
                }
            }
        }
        let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        if secured && !responses.contains_key("401") {
            responses.insert("401".into(), problem("No bearer token, or one that is unknown or refused"));
        }
        if takes_input && !responses.contains_key("422") {
            responses.insert("422".into(), problem("A parameter is invalid: each is named with the reason"));
        }
        if operation_has_body && !responses.contains_key("413") {
            responses.insert("413".into(), problem("The body is larger than this operation takes"));
        }
        // What `platform::http` answers for any route: a request too slow
        // to arrive, and a role at its cap of requests in flight.
        responses.entry("408").or_insert_with(|| problem("The request took longer than the role allows to arrive"));
        responses.entry("503").or_insert_with(|| {
            problem("The role is at its cap of requests in flight (Retry-After), or a store it needs is unavailable")
        });
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
