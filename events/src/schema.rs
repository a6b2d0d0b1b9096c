//! JSON Schema (draft 2020-12) of every event type as a publisher sends it,
//! generated from the catalogue's own types: each value type states its
//! schema beside its parser (`ids`, `codes`, `personal`), each data struct
//! gets its fields from the same list its parser reads (`catalogue`), and
//! the rules across fields that a schema can say are written beside the
//! `check` that enforces them. So a generated client refuses what the
//! gateway would refuse, as far as a schema can.
//!
//! What no schema can say is left to the gateway and named in descriptions:
//! check digits (NHS number, UPN), "not in the future", and the subject's
//! own history (a child registered once and first).
//!
//! The documents are published at `GET /v1/schemas/{type}` and committed
//! under `events/schemas/`; the OpenAPI documents embed the same schemas.

use crate::catalogue::{EventType, SubjectKind};
use crate::codes::AuthorRole;
use crate::ids::{ChildId, CouncilCode, EventId, PrincipalName, WorkerId};
use crate::json::MAX_SAFE_INTEGER;
use crate::problem::Problems;
use schemars::generate::SchemaSettings;
use schemars::{SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

pub use schemars::Schema;

/// Where the `$id` of each published document points: the gateway's own
/// route, relative, so the documents do not name a host.
pub const PATH: &str = "/v1/schemas";

/// The one JSON Schema document of `event_type`: the whole event as a
/// publisher sends it, with every type it uses under `$defs`.
pub fn document(event_type: EventType) -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let mut schema = envelope(event_type, &mut generator);
    let definitions = generator.take_definitions(true);
    schema.insert("$schema".into(), "https://json-schema.org/draft/2020-12/schema".into());
    schema.insert("$id".into(), format!("{PATH}/{}", event_type.name()).into());
    if !definitions.is_empty() {
        schema.insert("$defs".into(), Value::Object(definitions));
    }
    schema.to_value()
}

/// Every type's event schema as OpenAPI 3.1 components: one named schema
/// per event type (`event.child.registered`, …) and one, `Event`, that is
/// their `oneOf`, told apart by `type`. References point into
/// `#/components/schemas`.
pub fn components() -> Map<String, Value> {
    let mut generator =
        SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into()).into_generator();
    let mut components = Map::new();
    let mut branches = Vec::new();
    let mut mapping = Map::new();
    for &event_type in EventType::ALL {
        let name = format!("event.{}", event_type.name());
        let reference = format!("#/components/schemas/{name}");
        components.insert(name, envelope(event_type, &mut generator).to_value());
        branches.push(json!({"$ref": reference}));
        mapping.insert(event_type.name().into(), reference.into());
    }
    components.insert(
        "Event".into(),
        json!({
            "description": "One event of catalogue v1, as a publisher sends it (CloudEvents 1.0, structured mode).",
            "oneOf": branches,
            "discriminator": {"propertyName": "type", "mapping": mapping},
        }),
    );
    components.extend(generator.take_definitions(true));
    components
}

/// The envelope of one type: CloudEvents 1.0 attributes as
/// `envelope::parse_received` reads them, and the type's own data.
fn envelope(event_type: EventType, generator: &mut SchemaGenerator) -> Schema {
    let subject = match event_type.subject_kind() {
        SubjectKind::Child => generator.subschema_for::<ChildId>(),
        SubjectKind::Worker => generator.subschema_for::<WorkerId>(),
        SubjectKind::Council => generator.subschema_for::<CouncilCode>(),
    };
    // The parser refuses a year before 1900 (in the offset given), which
    // `date-time` alone allows.
    let instant = |what: &str| json!({"type": "string", "format": "date-time", "pattern": "^(19|[2-9][0-9])[0-9]{2}-", "description": what});
    json_schema!({
        "title": event_type.name(),
        "description": format!(
            "A {} event as a publisher sends it: CloudEvents 1.0, structured mode (or binary mode, the same attributes as ce- headers).",
            event_type.name()
        ),
        "type": "object",
        "properties": {
            "specversion": {"const": crate::envelope::SPEC_VERSION},
            "id": generator.subschema_for::<EventId>(),
            "type": {"const": event_type.name()},
            "subject": subject,
            "time": instant("When it happened: RFC 3339 with an offset, at most 5 minutes in the future. Its Europe/London date is the business date."),
            "data": event_type.data_schema(generator),
            "source": generator.subschema_for::<PrincipalName>(),
            "recordedat": instant("The original recording time of a legacy record: admin import only."),
            "expectedsequence": {
                "type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER,
                "description": "The subject's position the publisher last saw (0 for a new subject); a mismatch is 409.",
            },
            "datacontenttype": {"const": "application/json"},
            "authorrole": generator.subschema_for::<AuthorRole>(),
            "significant": {"type": "boolean"},
            "traceparent": {
                "type": "string",
                "pattern": TRACEPARENT,
                "not": {"pattern": "^..-(0{32}-|.{32}-0{16}-)"},
                "description": "W3C Trace Context traceparent; carried beside the stored event.",
            },
            "tracestate": {"type": "string", "maxLength": 512, "pattern": TRACESTATE},
        },
        "required": ["specversion", "id", "type", "subject", "time", "data"],
        "dependentRequired": {"tracestate": ["traceparent"]},
        "additionalProperties": false,
    })
}

/// Version 00 exactly; a later version (not ff) may append fields.
const TRACEPARENT: &str = "^(00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}|(0[1-9a-f]|[1-9a-e][0-9a-f]|f[0-9a-e])-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[ -~]*)?)$";
/// Comma-separated members, each key=value or blank, printable ASCII.
const TRACESTATE: &str = "^(?:[ -+\\--~]*=[ -+\\--~]*| *)(?:,(?:[ -+\\--~]*=[ -+\\--~]*| *))*$";

/// `T`'s schema with every definition inline: for a parameter of an API
/// (a child's id in a path, a council's code in a query string).
pub fn inline<T: schemars::JsonSchema>() -> Value {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// A calendar date as `fields::parse_date` reads it: `YYYY-MM-DD`, a real day.
pub fn date() -> Value {
    json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
}

/// A financial year as the indicators and the CIN census name it: `2024-25`,
/// April to March, the second year the first's next (a four-digit first
/// year). The pattern says exactly that, one alternative per century's
/// year, so a generated client cannot write `2024-26`.
pub fn financial_year() -> Value {
    let pairs: Vec<String> = (0..100).map(|y| format!("{y:02}-{:02}", (y + 1) % 100)).collect();
    json!({
        "type": "string",
        "pattern": format!("^[1-9][0-9]({})$", pairs.join("|")),
        "description": "A financial year such as 2024-25: 1 April 2024 to 31 March 2025",
    })
}

/// A data struct's schema, built field by field (`catalogue::data_struct!`).
#[derive(Debug)]
pub struct Object {
    description: String,
    properties: Map<String, Value>,
    required: Vec<&'static str>,
}

impl Object {
    /// `doc` is the struct's doc comment, line by line.
    pub fn new(doc: &[&str]) -> Self {
        let description = doc.iter().map(|line| line.trim()).collect::<Vec<_>>().join(" ");
        Self { description, properties: Map::new(), required: Vec::new() }
    }

    /// A field of `schema`. Lists mean "at least one" everywhere in the
    /// catalogue (`fields`); an optional field may be null, which the
    /// parser reads as absent.
    pub fn field(&mut self, name: &'static str, mut schema: Schema, required: bool) {
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            schema.insert("minItems".into(), 1.into());
        }
        let schema = if required { schema.to_value() } else { json!({"anyOf": [schema.to_value(), {"type": "null"}]}) };
        self.properties.insert(name.into(), schema);
        if required {
            self.required.push(name);
        }
    }

    pub fn finish(self) -> Schema {
        let mut schema = json_schema!({
            "type": "object",
            "properties": self.properties,
            "additionalProperties": false,
        });
        if !self.description.is_empty() {
            schema.insert("description".into(), self.description.into());
        }
        if !self.required.is_empty() {
            schema.insert("required".into(), json!(self.required));
        }
        schema
    }
}

/// A code set: its codes, and each code's label in the description.
pub fn code_set(what: &str, codes: &[(&str, &str)]) -> Schema {
    let listed: Vec<String> = codes.iter().map(|(code, label)| format!("{code} ({label})")).collect();
    json_schema!({
        "type": "string",
        "enum": codes.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
        "description": format!("A {what}: {}", listed.join("; ")),
    })
}

/// A whole number's range, as its field declares it.
pub fn bound(schema: &mut Schema, (low, high): (u64, u64)) {
    schema.insert("minimum".into(), low.into());
    schema.insert("maximum".into(), high.into());
}

/// The parser's side of [`bound`]: one message for every ranged field.
pub fn check_range(value: u64, (low, high): (u64, u64), at: &str, problems: &mut Problems) {
    if !(low..=high).contains(&value) {
        let open_ended = high == u64::from(u32::MAX) || high == MAX_SAFE_INTEGER;
        if open_ended {
            problems.push(at, format!("must be at least {low}"));
        } else {
            problems.push(at, format!("must be between {low} and {high}"));
        }
    }
}

/// At least one field given, and not null (the parser reads null as absent).
pub fn some_field(schema: &mut Schema) {
    let fields: Vec<String> =
        schema.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default();
    let given: Vec<Value> = fields.iter().map(|f| given(f)).collect();
    all_of(schema, json!({"anyOf": given}));
}

/// `a` and `b` not both given.
pub fn not_together(schema: &mut Schema, a: &str, b: &str) {
    all_of(schema, json!({"not": {"allOf": [given(a), given(b)]}}));
}

/// `a` or `b` given, or both.
pub fn either_of(schema: &mut Schema, a: &str, b: &str) {
    all_of(schema, json!({"anyOf": [given(a), given(b)]}));
}

/// `field` is present with a value other than null.
pub fn given(field: &str) -> Value {
    json!({"required": [field], "properties": {field: {"not": {"type": "null"}}}})
}

/// The list `field` repeats no item, and `alone`, when listed, is its only item.
pub fn list(schema: &mut Schema, field: &str, alone: Option<&str>) {
    if let Some(property) = schema.get_mut("properties").and_then(|p| p.get_mut(field)) {
        // An optional field's schema is `anyOf: [list, null]`.
        let list = match property.get_mut("anyOf").and_then(|a| a.get_mut(0)) {
            Some(list) => list,
            None => property,
        };
        if let Some(list) = list.as_object_mut() {
            list.insert("uniqueItems".into(), true.into());
        }
    }
    if let Some(code) = alone {
        all_of(
            schema,
            json!({
                "if": {"properties": {field: {"type": "array", "contains": {"const": code}}}, "required": [field]},
                "then": {"properties": {field: {"maxItems": 1}}},
            }),
        );
    }
}

/// When `field` is one of `values`, `then` holds too.
pub fn when(schema: &mut Schema, field: &str, values: &[&str], then: Value) {
    all_of(schema, json!({"if": {"properties": {field: {"enum": values}}, "required": [field]}, "then": then}));
}

fn all_of(schema: &mut Schema, rule: Value) {
    let Some(object) = schema.as_object_mut() else { return };
    match object.entry("allOf").or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(rules) => rules.push(rule),
        other => *other = Value::Array(vec![rule]),
    }
}

impl EventType {
    /// Every type's name and document, in catalogue order: what
    /// `events/schemas/` holds.
    pub fn documents() -> impl Iterator<Item = (&'static str, Value)> {
        Self::ALL.iter().map(|&t| (t.name(), document(t)))
    }
}

/// The generic form of `JsonSchema` for a type the catalogue names but whose
/// schema is a plain object (the data of a correction).
pub(crate) fn any_object(description: &str) -> Schema {
    json_schema!({"type": "object", "description": description})
}
