//! Which parts of an event are personal data, as a property of the types.
//!
//! A field whose type is [`Personal<T>`] is personal data; nothing else is.
//! [`personal_pointers`] walks any serialisable value and returns the JSON
//! pointers of its personal fields, so the gateway can encrypt exactly those
//! and a new catalogue type needs no list kept by hand: declaring the field as
//! `Personal<_>` is the whole job.
//!
//! It works by serialising the value into a serializer that records paths and
//! recognises `Personal` by the newtype name it serialises under. Serde passes
//! that name to every serializer, and JSON serializers ignore it, so the wire
//! form of a `Personal<T>` is exactly that of `T`.

use crate::fields::FromJson;
use crate::privacy::{DataKey, Sealed};
use crate::problem::{Form, Problems, child_pointer};
use serde::ser::{self, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// The newtype name `Personal` serialises under. Chosen to be unlike any
/// other type's name.
const MARKER: &str = "$safeguard::Personal";

/// A value that is personal data: a person's details or free text. It is
/// in clear as a publisher sends it and sealed as the stream stores it
/// ([`Form`]); readers of stored events open it with the child's key.
///
/// Its `Debug` form never shows the value, so a stray `{:?}` cannot leak it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    Clear(T),
    Sealed(Sealed),
}

impl<T> Personal<T> {
    /// The value, if it is in clear.
    pub fn clear(&self) -> Option<&T> {
        match self {
            Self::Clear(v) => Some(v),
            Self::Sealed(_) => None,
        }
    }

    /// The sealed value, if it is sealed.
    pub fn sealed(&self) -> Option<&Sealed> {
        match self {
            Self::Clear(_) => None,
            Self::Sealed(s) => Some(s),
        }
    }
}

impl<T: FromJson> Personal<T> {
    /// This field in clear: as it is, or opened with `key` in the place
    /// `aad`. `None` when it does not open (the wrong key or place).
    pub fn opened(&self, key: &DataKey, aad: &str) -> Option<T>
    where
        T: Clone,
    {
        match self {
            Self::Clear(v) => Some(v.clone()),
            Self::Sealed(s) => s.open(key, aad).ok(),
        }
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Clear(_) => f.write_str("Personal(<redacted>)"),
            Self::Sealed(_) => f.write_str("Personal(<sealed>)"),
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Clear(v) => s.serialize_newtype_struct(MARKER, v),
            Self::Sealed(v) => s.serialize_newtype_struct(MARKER, v),
        }
    }
}

/// A personal field's schema is its value's, as a publisher sends it, marked
/// `x-personal` so a client knows the gateway seals it: the stored form is
/// never published.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Personal<T> {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Personal_{}", T::schema_name()).into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = T::json_schema(generator);
        schema.insert("x-personal".into(), true.into());
        schema
    }
}

impl<T: FromJson> FromJson for Personal<T> {
    fn from_json(value: &Value, at: &str, problems: &mut Problems) -> Option<Self> {
        match problems.form() {
            Form::Received => T::from_json(value, at, problems).map(Self::Clear),
            Form::Stored => Sealed::from_json(value, at, problems).map(Self::Sealed),
        }
    }
}

/// The JSON pointers (relative to `value`'s own root, prefixed by `root`) of
/// every personal field present in `value`, in serialisation order.
pub fn personal_pointers<T: Serialize + ?Sized>(value: &T, root: &str) -> Vec<String> {
    let mut finder = Finder { path: root.to_owned(), found: Vec::new() };
    // The finder itself never fails; an error could only come from a
    // value's own Serialize implementation, and ours do not fail.
    let _ = value.serialize(&mut finder);
    finder.found
}

struct Finder {
    path: String,
    found: Vec<String>,
}

#[derive(Debug)]
struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("serialisation failed")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Never
    }
}

impl Finder {
    fn nested<T: Serialize + ?Sized>(&mut self, token: &str, value: &T) -> Result<(), Never> {
        let saved = std::mem::take(&mut self.path);
        self.path = child_pointer(&saved, token);
        let r = value.serialize(&mut *self);
        self.path = saved;
        r
    }
}

impl<'a> Serializer for &'a mut Finder {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = MapWalk<'a>;
    type SerializeStruct = MapWalk<'a>;
    type SerializeStructVariant = MapWalk<'a>;

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), Never> {
        if name == MARKER {
            self.found.push(self.path.clone());
            Ok(())
        } else {
            value.serialize(self)
        }
    }

    fn serialize_bool(self, _: bool) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_str(self, _: &str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit(self) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Never> {
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Never> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        self.nested(variant, value)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Never> {
        Ok(Seq { finder: self, index: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Seq<'a>, Never> {
        Ok(Seq { finder: self, index: 0 })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, Never> {
        Ok(Seq { finder: self, index: 0 })
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Seq<'a>, Never> {
        Ok(Seq { finder: self, index: 0 })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapWalk<'a>, Never> {
        Ok(MapWalk { finder: self, key: None })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapWalk<'a>, Never> {
        Ok(MapWalk { finder: self, key: None })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<MapWalk<'a>, Never> {
        Ok(MapWalk { finder: self, key: None })
    }
}

struct Seq<'a> {
    finder: &'a mut Finder,
    index: usize,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        let token = self.index.to_string();
        self.index += 1;
        self.finder.nested(&token, value)
    }
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTuple for Seq<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Seq<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Seq<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        self.element(value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

struct MapWalk<'a> {
    finder: &'a mut Finder,
    key: Option<String>,
}

impl ser::SerializeMap for MapWalk<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        self.key = Some(serde_json::to_value(key).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default());
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Never> {
        let key = self.key.take().unwrap_or_default();
        self.finder.nested(&key, value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStruct for MapWalk<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        self.finder.nested(key, value)
    }
    fn skip_field(&mut self, _: &'static str) -> Result<(), Never> {
        Ok(())
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for MapWalk<'_> {
    type Ok = ();
    type Error = Never;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Never> {
        self.finder.nested(key, value)
    }
    fn end(self) -> Result<(), Never> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Inner {
        code: &'static str,
        note: Personal<&'static str>,
    }

    #[derive(serde::Serialize)]
    struct Outer {
        plain: u32,
        who: Personal<Inner>,
        notes: Vec<Inner>,
        #[serde(skip_serializing_if = "Option::is_none")]
        absent: Option<Personal<String>>,
    }

    #[test]
    fn finds_personal_fields_at_any_depth_and_stops_at_the_outermost() {
        let v = Outer {
            plain: 1,
            who: Personal::Clear(Inner { code: "x", note: Personal::Clear("n") }),
            notes: vec![Inner { code: "y", note: Personal::Clear("m") }],
            absent: None,
        };
        assert_eq!(personal_pointers(&v, "/data"), vec!["/data/who", "/data/notes/0/note"]);
    }

    #[test]
    fn the_json_form_is_unchanged_by_the_marker() {
        let v = Personal::Clear(Inner { code: "x", note: Personal::Clear("n") });
        assert_eq!(serde_json::to_string(&v).expect("json"), r#"{"code":"x","note":"n"}"#);
    }
}
