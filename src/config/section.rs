//! The parts of a definition that belong to a service: a section under `service_parameters`
//! (`extension_mobility`) or at the top level (`paging`). The definition holds them as plain
//! values ([`Sections`]) so that `config` and `store` know no service; the service declares its
//! typed section ([`Section`]) and gives the reader a [`SectionSpec`] of it, which reads the
//! section typed from the YAML text (so its mistakes are located as any other field's) and
//! turns it into the canonical value the definition keeps (every default written out).

use std::fmt;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A service's typed section of the definition.
pub trait Section:
    Serialize + DeserializeOwned + Default + PartialEq + Send + Sync + 'static
{
    /// Where it sits: `["service_parameters", "extension_mobility"]` or `["paging"]`.
    const PATH: &'static [&'static str];
    /// Left out of a written definition while it is all defaults (a top-level section that
    /// most clusters do not use); sections under `service_parameters` are always written.
    const OMIT_DEFAULT: bool = false;
}

/// Service sections, as values, in the order the definition writes them. Equal when they hold
/// the same sections, whatever the order. Written in each section's own field order when the
/// schema is attached ([`Schema::attach`]; the reader does it), otherwise as stored.
#[derive(Debug, Clone, Default)]
pub struct Sections(Vec<Entry>);

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: Value,
    spec: Option<&'static SectionSpec>,
}

impl PartialEq for Sections {
    fn eq(&self, other: &Sections) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|e| other.get(&e.key) == Some(&e.value))
    }
}

impl Sections {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value,
            None => self.0.push(Entry {
                key: key.to_string(),
                value,
                spec: None,
            }),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.0.iter().position(|e| e.key == key)?;
        Some(self.0.remove(i).value)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|e| e.key.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Puts the sections in the schema's order and lets each be written in its type's order.
    fn attach(&mut self, schema: &Schema, service_parameters: bool) {
        for e in &mut self.0 {
            e.spec = schema.section(service_parameters, &e.key);
        }
        let place = |e: &Entry| {
            e.spec
                .and_then(|s| schema.sections.iter().position(|x| std::ptr::eq(*x, s)))
                .unwrap_or(usize::MAX)
        };
        self.0.sort_by_key(place);
    }
}

impl Serialize for Sections {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for e in &self.0 {
            match e.spec.and_then(|spec| (spec.ordered)(&e.value)) {
                Some(tree) => m.serialize_entry(&e.key, &tree)?,
                None => m.serialize_entry(&e.key, &e.value)?,
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Sections {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sections, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Sections;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of sections")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sections, A::Error> {
                let mut out = Sections::default();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.set(&k, v);
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A value whose mappings keep their order (`serde_json`'s sort their keys): a section as its
/// type writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Tree>),
    Map(Vec<(String, Tree)>),
}

impl Serialize for Tree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::I64(n) => s.serialize_i64(*n),
            Tree::U64(n) => s.serialize_u64(*n),
            Tree::F64(n) => s.serialize_f64(*n),
            Tree::Str(t) => s.serialize_str(t),
            Tree::Seq(items) => {
                let mut q = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    q.serialize_element(i)?;
                }
                q.end()
            }
            Tree::Map(entries) => {
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tree, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Tree, E> {
                Ok(Tree::Bool(b))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Tree, E> {
                Ok(Tree::I64(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Tree, E> {
                Ok(Tree::U64(n))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Tree, E> {
                Ok(Tree::F64(n))
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Tree, E> {
                Ok(Tree::Str(t.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
                Tree::deserialize(d)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(t) = seq.next_element()? {
                    v.push(t);
                }
                Ok(Tree::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = map.next_entry()? {
                    v.push(e);
                }
                Ok(Tree::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A section as the reader sees it, whatever its type: see [`SectionSpec::of`].
pub struct SectionSpec {
    pub path: &'static [&'static str],
    /// The section's type name (`crate::...::ExtensionMobilityParameters`), for the reference.
    type_name: fn() -> &'static str,
    pub omit_default: bool,
    /// Reads the section from YAML text (a top-level section's own value; for one below
    /// `service_parameters`, that mapping's): its canonical value, or `None` when left out.
    read: fn(&str, serde_saphyr::Options) -> Result<Option<Value>, serde_saphyr::Error>,
    /// The canonical value of a section left out.
    default: fn() -> Value,
    /// The canonical value of a section read from a value (a stored definition).
    canonical: fn(&Value) -> Result<Value, String>,
    /// A section's value in its type's field order (`None`: it does not read as the type).
    ordered: fn(&Value) -> Option<Tree>,
}

impl fmt::Debug for SectionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionSpec({})", self.path.join("."))
    }
}

impl SectionSpec {
    pub const fn of<T: Section>() -> SectionSpec {
        SectionSpec {
            path: T::PATH,
            type_name: std::any::type_name::<T>,
            omit_default: T::OMIT_DEFAULT,
            read: read_section::<T>,
            default: default_value::<T>,
            canonical: canonical::<T>,
            ordered: ordered::<T>,
        }
    }

    /// The key it has in the mapping that holds it.
    pub fn key(&self) -> &'static str {
        self.path[self.path.len() - 1]
    }

    /// Whether it sits under `service_parameters` (otherwise at the top level).
    pub fn is_service_parameter(&self) -> bool {
        self.path.len() == 2 && self.path[0] == "service_parameters"
    }

    pub fn read(
        &self,
        text: &str,
        opts: serde_saphyr::Options,
    ) -> Result<Option<Value>, serde_saphyr::Error> {
        (self.read)(text, opts)
    }

    /// The type's own name, without its module path.
    pub fn type_name(&self) -> &'static str {
        let full = (self.type_name)();
        full.rsplit("::").next().unwrap_or(full)
    }

    pub fn default_value(&self) -> Value {
        (self.default)()
    }

    pub fn canonical(&self, v: &Value) -> Result<Value, String> {
        (self.canonical)(v)
    }
}

fn default_value<T: Section>() -> Value {
    serde_json::to_value(T::default()).unwrap_or(Value::Null)
}

fn canonical<T: Section>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

fn ordered<T: Section>(v: &Value) -> Option<Tree> {
    // serde_json writes a struct's fields in their order; its `Value` would sort them.
    let t: T = serde_json::from_value(v.clone()).ok()?;
    serde_json::from_str(&serde_json::to_string(&t).ok()?).ok()
}

fn read_section<T: Section>(
    text: &str,
    opts: serde_saphyr::Options,
) -> Result<Option<Value>, serde_saphyr::Error> {
    // A top-level section's text is the section; one below `service_parameters` is read
    // from the whole of that mapping.
    let t = if T::PATH.len() == 1 {
        serde_saphyr::from_str_with_options::<Option<T>>(text, opts)?
    } else {
        serde_saphyr::from_str_with_options::<Only<T>>(text, opts)?.0
    };
    Ok(t.and_then(|t| serde_json::to_value(t).ok()))
}

/// A mapping read for one key only (the section's), every other entry skipped unread.
struct Only<T>(Option<T>);

impl<'de, T: Section> Deserialize<'de> for Only<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Only<T>, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Section> Visitor<'de> for V<T> {
            type Value = Only<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Only<T>, A::Error> {
                let key = T::PATH[T::PATH.len() - 1];
                let mut found = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == key {
                        found = Some(map.next_value_seed(Typed::<T>(std::marker::PhantomData))?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Only(found))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Only<T>, E> {
                Ok(Only(None))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

struct Typed<T>(std::marker::PhantomData<T>);

impl<'de, T: Section> DeserializeSeed<'de> for Typed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        // `section:` with nothing after it is the section's defaults, as before.
        Option::<T>::deserialize(d).map(Option::unwrap_or_default)
    }
}

/// A service's checks of its sections (and of how they refer to the rest of the definition).
pub type Check = fn(&super::ClusterDefinition, &mut super::validate::Diagnostics);

/// What a definition is read against besides the generic model: the services' sections and
/// their checks. `services::schema()` gives the one of every service.
#[derive(Default)]
pub struct Schema {
    pub sections: Vec<&'static SectionSpec>,
    pub checks: Vec<Check>,
}

impl Schema {
    /// The section at `key` of the top level (`service_parameters: false`) or of
    /// `service_parameters`.
    pub fn section(&self, service_parameters: bool, key: &str) -> Option<&'static SectionSpec> {
        self.sections
            .iter()
            .find(|s| s.is_service_parameter() == service_parameters && s.key() == key)
            .copied()
    }

    /// Puts `def`'s sections in the schema's order, each written in its type's field order
    /// (as the reader leaves them; a definition loaded from the store has its keys sorted).
    pub fn attach(&self, def: &mut super::ClusterDefinition) {
        def.sections.attach(self, false);
        def.service_parameters.sections.attach(self, true);
    }

    /// The keys a mapping may hold: the generic model's and the services' (top level: in
    /// the place the model keeps for them).
    pub fn known_keys(&self, service_parameters: bool) -> Vec<&'static str> {
        let services = self
            .sections
            .iter()
            .filter(|s| s.is_service_parameter() == service_parameters)
            .map(|s| s.key());
        if service_parameters {
            let mut keys = super::model::SERVICE_PARAMETERS.to_vec();
            keys.extend(services);
            keys
        } else {
            let services: Vec<_> = services.collect();
            super::model::TOP_LEVEL
                .iter()
                .flat_map(|k| match k {
                    Some(k) => vec![*k],
                    None => services.clone(),
                })
                .collect()
        }
    }
}
