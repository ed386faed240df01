//! One pass of serde_json over a request body into just what the vote
//! parser needs, without building a `serde_json::Value`: the fields of each
//! object by name, their strings borrowed from the body where they have no
//! escapes.
//!
//! The semantics are those of a JSON object read into a map that keeps
//! insertion order (what `Value` with `preserve_order` gave before, in every
//! build): the whole body is parsed before anything is judged (a syntax error
//! anywhere wins over any field's problem), an object's fields are judged in
//! the order their names first appear, and a repeated name takes its last
//! value. Objects and arrays no field takes are read as `Value`, so nesting
//! is bounded by serde_json's recursion limit exactly as before. A batch keeps
//! at most `MAX_BATCH` items (the rest are parsed, counted and dropped: a
//! batch past the limit is refused by its length alone), so a body of a
//! hundred thousand tiny items costs no more memory than a full batch.
//!
//! One difference from `Value`, on purpose: where serde_json's `raw_value`
//! feature is on (builds that link axum), `Value` reads an object whose first
//! key is `$serde_json::private::RawValue` as the JSON text of its value; here
//! that is an unknown field like any other.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

use crate::limits;

/// Visitor methods for every JSON scalar, all giving `$value`.
macro_rules! scalars {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The names a vote object may carry, in slot order.
pub(super) const KNOWN: [&str; 9] = ["name", "artist", "band", "rank", "ranked", "album", "year", "vote_id", "voter"];

/// A parsed body.
// Unboxed: one object per request is the common case, a box would be an
// allocation for it.
#[allow(clippy::large_enum_variant)]
pub(super) enum Document<'a> {
    Object(Fields<'a>),
    /// The first `MAX_BATCH` items, and how many there were.
    Array { items: Vec<Item<'a>>, len: usize },
    /// A string, number, boolean or null.
    Scalar,
}

/// An element of a batch.
#[allow(clippy::large_enum_variant)]
pub(super) enum Item<'a> {
    Object(Fields<'a>),
    NotAnObject,
}

/// A field's value, as far as a vote cares.
pub(super) enum FieldValue<'a> {
    Text(Cow<'a, str>),
    Number(Number),
    /// An object, array, boolean or null.
    Other,
}

/// What [`Fields::in_order`] yields: a known field (its slot in [`KNOWN`]) or
/// the first name that is not one.
pub(super) enum Entry<'a> {
    Known(usize, FieldValue<'a>),
    Unknown(Cow<'a, str>),
}

/// An object's fields: the last value of each known name, and the order in
/// which names first appeared, up to and including the first unknown name
/// (judging stops there, so nothing after it is kept).
#[derive(Default)]
pub(super) struct Fields<'a> {
    values: [Option<FieldValue<'a>>; KNOWN.len()],
    /// Slots in order of first appearance; `UNKNOWN` for the first unknown name.
    order: Vec<u8>,
    unknown: Option<Cow<'a, str>>,
}

const UNKNOWN: u8 = u8::MAX;

impl<'a> Fields<'a> {
    fn insert(&mut self, name: Cow<'a, str>, value: FieldValue<'a>) {
        match KNOWN.iter().position(|k| *k == name) {
            Some(slot) => {
                if self.values[slot].is_none() && self.unknown.is_none() {
                    self.order.push(slot as u8);
                }
                self.values[slot] = Some(value);
            }
            None if self.unknown.is_none() => {
                self.order.push(UNKNOWN);
                self.unknown = Some(name);
            }
            None => {}
        }
    }

    /// The fields in the order they are judged.
    pub(super) fn in_order(mut self) -> impl Iterator<Item = Entry<'a>> {
        let order = std::mem::take(&mut self.order);
        order.into_iter().map(move |slot| match slot {
            UNKNOWN => Entry::Unknown(self.unknown.take().unwrap_or_default()),
            slot => {
                let slot = usize::from(slot);
                Entry::Known(slot, self.values[slot].take().unwrap_or(FieldValue::Other))
            }
        })
    }
}

/// Parse a whole body (trailing bytes other than whitespace are an error).
pub(super) fn parse(body: &[u8]) -> serde_json::Result<Document<'_>> {
    serde_json::from_slice(body)
}

impl<'de> de::Deserialize<'de> for Document<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_fields(map).map(Document::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let (mut items, mut len) = (Vec::new(), 0usize);
                while let Some(item) = seq.next_element::<Item>()? {
                    if items.len() < limits::MAX_BATCH {
                        items.push(item);
                    }
                    len += 1;
                }
                Ok(Document::Array { items, len })
            }
            scalars!(Document::Scalar);
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Item<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                read_fields(map).map(Item::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| Item::NotAnObject)
            }
            scalars!(Item::NotAnObject);
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldValue::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(FieldValue::Text(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(FieldValue::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(FieldValue::Number(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                // As `Value` reads it: a float that is not finite is null.
                Ok(Number::from_f64(v).map_or(FieldValue::Other, FieldValue::Number))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(FieldValue::Other)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(FieldValue::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| FieldValue::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| FieldValue::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key, borrowed from the body when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn read_fields<'de, A: MapAccess<'de>>(mut map: A) -> Result<Fields<'de>, A::Error> {
    let mut fields = Fields::default();
    while let Some(Name(name)) = map.next_key()? {
        let value = map.next_value()?;
        fields.insert(name, value);
    }
    Ok(fields)
}

/// The rest of a container no vote field takes, read as `Value` (serde_json's
/// recursion limit applies, as it did).
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Value>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<String, Value>()?.is_some() {}
    Ok(())
}
