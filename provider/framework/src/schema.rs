//! Schema model: attributes, nested attributes, blocks, versions, plan modifiers, defaults.
//!
//! Build schemas with the fluent builders:
//! ```
//! use waddle_framework::schema::{Attribute, Block, NestedBlock, Schema};
//! use waddle_framework::types::Type;
//! let s = Schema::new("Manages a thing.")
//!     .version(1)
//!     .attribute("id", Attribute::string().computed().use_state_for_unknown())
//!     .attribute("name", Attribute::string().required().requires_replace())
//!     .attribute("password", Attribute::string().optional().sensitive().write_only())
//!     .attribute("tags", Attribute::new(Type::list(Type::String)).optional())
//!     .block("route", NestedBlock::list(Block::new().attribute("host", Attribute::string().required())).min_items(1));
//! assert!(s.check().is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::Diagnostics;
use crate::path::{AttributePath, PathStep};
use crate::types::{ObjectType, Type};
use crate::value::Value;

/// Plan-time behaviour attached to an attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanModifier {
    /// A change of this attribute on an existing resource forces replacement.
    RequiresReplace,
    /// When the planned value is unknown (a computed attribute on update), reuse the prior
    /// state's value instead, since the provider knows it does not change.
    UseStateForUnknown,
}

/// Nesting of nested attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestingMode {
    Single,
    List,
    Set,
    Map,
}

/// Nesting of blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockNesting {
    Single,
    List,
    Set,
    Map,
    /// Like Single but never null (all attributes optional).
    Group,
}

/// An attribute's type: a plain cty type or nested attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeType {
    Type(Type),
    Nested(NestedAttributes),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NestedAttributes {
    pub nesting: NestingMode,
    pub attributes: BTreeMap<String, Attribute>,
}

/// One attribute. Exactly one of required / optional / computed / optional+computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    pub ty: AttributeType,
    pub description: String,
    pub required: bool,
    pub optional: bool,
    pub computed: bool,
    pub sensitive: bool,
    /// Write-only: accepted in configuration, never persisted in plan or state.
    pub write_only: bool,
    /// Deprecation message (the attribute is deprecated when set).
    pub deprecation: Option<String>,
    /// Value planned when the configuration leaves the attribute null (needs `computed`).
    pub default: Option<Value>,
    pub plan_modifiers: Vec<PlanModifier>,
    /// Declarative checks of known values ([`crate::validators`]).
    pub validators: Vec<crate::validators::Validator>,
}

impl Attribute {
    /// An attribute of a plain cty type (set required/optional/computed next).
    pub fn new(ty: Type) -> Self {
        Attribute {
            ty: AttributeType::Type(ty),
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            deprecation: None,
            default: None,
            plan_modifiers: Vec::new(),
            validators: Vec::new(),
        }
    }
    pub fn string() -> Self {
        Self::new(Type::String)
    }
    pub fn number() -> Self {
        Self::new(Type::Number)
    }
    pub fn bool() -> Self {
        Self::new(Type::Bool)
    }
    pub fn list_of(t: Type) -> Self {
        Self::new(Type::list(t))
    }
    pub fn set_of(t: Type) -> Self {
        Self::new(Type::set(t))
    }
    pub fn map_of(t: Type) -> Self {
        Self::new(Type::map(t))
    }
    pub fn dynamic() -> Self {
        Self::new(Type::Dynamic)
    }
    /// Nested attributes with the given nesting.
    pub fn nested<I, S>(nesting: NestingMode, attrs: I) -> Self
    where
        I: IntoIterator<Item = (S, Attribute)>,
        S: Into<String>,
    {
        let mut a = Self::new(Type::Dynamic);
        a.ty = AttributeType::Nested(NestedAttributes {
            nesting,
            attributes: attrs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        });
        a
    }
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }
    pub fn deprecated(mut self, message: impl Into<String>) -> Self {
        self.deprecation = Some(message.into());
        self
    }
    /// Markdown description.
    pub fn description(mut self, md: impl Into<String>) -> Self {
        self.description = md.into();
        self
    }
    /// Default value; makes the attribute optional + computed.
    pub fn default(mut self, v: impl Into<Value>) -> Self {
        self.default = Some(v.into());
        self.optional = true;
        self.computed = true;
        self
    }
    pub fn plan_modifier(mut self, m: PlanModifier) -> Self {
        self.plan_modifiers.push(m);
        self
    }
    pub fn requires_replace(self) -> Self {
        self.plan_modifier(PlanModifier::RequiresReplace)
    }
    pub fn use_state_for_unknown(self) -> Self {
        self.plan_modifier(PlanModifier::UseStateForUnknown)
    }
    pub fn has_modifier(&self, m: &PlanModifier) -> bool {
        self.plan_modifiers.contains(m)
    }
    /// Computed and not settable in configuration.
    pub fn is_read_only(&self) -> bool {
        self.computed && !self.optional && !self.required
    }

    /// The cty type of this attribute's value.
    pub fn implied_type(&self) -> Type {
        match &self.ty {
            AttributeType::Type(t) => t.clone(),
            AttributeType::Nested(n) => {
                let obj = Type::Object(ObjectType {
                    attrs: n
                        .attributes
                        .iter()
                        .map(|(k, a)| (k.clone(), a.implied_type()))
                        .collect(),
                    optional: BTreeSet::new(),
                });
                match n.nesting {
                    NestingMode::Single => obj,
                    NestingMode::List => Type::list(obj),
                    NestingMode::Set => Type::set(obj),
                    NestingMode::Map => Type::map(obj),
                }
            }
        }
    }
}

/// A block: attributes plus nested blocks.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Block {
    pub attributes: BTreeMap<String, Attribute>,
    pub blocks: BTreeMap<String, NestedBlock>,
    pub description: String,
    pub deprecated: bool,
}

impl Block {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn attribute(mut self, name: impl Into<String>, a: Attribute) -> Self {
        self.attributes.insert(name.into(), a);
        self
    }
    pub fn block(mut self, name: impl Into<String>, b: NestedBlock) -> Self {
        self.blocks.insert(name.into(), b);
        self
    }
    pub fn description(mut self, md: impl Into<String>) -> Self {
        self.description = md.into();
        self
    }
    pub fn deprecated(mut self) -> Self {
        self.deprecated = true;
        self
    }
    /// The object type of this block's value.
    pub fn implied_type(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> = self
            .attributes
            .iter()
            .map(|(k, a)| (k.clone(), a.implied_type()))
            .collect();
        for (k, b) in &self.blocks {
            attrs.insert(k.clone(), b.implied_type());
        }
        Type::Object(ObjectType {
            attrs,
            optional: BTreeSet::new(),
        })
    }
    /// A value of this block with every attribute null (and collections of blocks empty).
    pub fn null_value(&self) -> Value {
        let mut m: BTreeMap<String, Value> = self
            .attributes
            .keys()
            .map(|k| (k.clone(), Value::Null))
            .collect();
        for (k, b) in &self.blocks {
            let v = match b.nesting {
                BlockNesting::Single => Value::Null,
                BlockNesting::Group => b.block.null_value(),
                BlockNesting::List => Value::List(vec![]),
                BlockNesting::Set => Value::Set(vec![]),
                BlockNesting::Map => Value::Map(BTreeMap::new()),
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    }
}

/// A nested block with its nesting mode and item limits (0 = no limit).
#[derive(Clone, Debug, PartialEq)]
pub struct NestedBlock {
    pub nesting: BlockNesting,
    pub block: Block,
    pub min_items: i64,
    pub max_items: i64,
}

impl NestedBlock {
    pub fn new(nesting: BlockNesting, block: Block) -> Self {
        NestedBlock {
            nesting,
            block,
            min_items: 0,
            max_items: 0,
        }
    }
    pub fn single(block: Block) -> Self {
        Self::new(BlockNesting::Single, block)
    }
    pub fn list(block: Block) -> Self {
        Self::new(BlockNesting::List, block)
    }
    pub fn set(block: Block) -> Self {
        Self::new(BlockNesting::Set, block)
    }
    pub fn map(block: Block) -> Self {
        Self::new(BlockNesting::Map, block)
    }
    pub fn group(block: Block) -> Self {
        Self::new(BlockNesting::Group, block)
    }
    pub fn min_items(mut self, n: i64) -> Self {
        self.min_items = n;
        self
    }
    pub fn max_items(mut self, n: i64) -> Self {
        self.max_items = n;
        self
    }
    pub fn implied_type(&self) -> Type {
        let obj = self.block.implied_type();
        match self.nesting {
            BlockNesting::Single | BlockNesting::Group => obj,
            BlockNesting::List => Type::list(obj),
            BlockNesting::Set => Type::set(obj),
            BlockNesting::Map => Type::map(obj),
        }
    }
}

/// A versioned schema (of a provider, resource or data source).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

impl Schema {
    /// A new schema with a markdown description.
    pub fn new(description: impl Into<String>) -> Self {
        Schema {
            version: 0,
            block: Block::new().description(description),
        }
    }
    pub fn version(mut self, v: i64) -> Self {
        self.version = v;
        self
    }
    pub fn attribute(mut self, name: impl Into<String>, a: Attribute) -> Self {
        self.block.attributes.insert(name.into(), a);
        self
    }
    pub fn block(mut self, name: impl Into<String>, b: NestedBlock) -> Self {
        self.block.blocks.insert(name.into(), b);
        self
    }
    pub fn deprecated(mut self) -> Self {
        self.block.deprecated = true;
        self
    }
    /// The cty type of values of this schema (what DynamicValues decode with).
    pub fn implied_type(&self) -> Type {
        self.block.implied_type()
    }
    /// A value with every attribute null.
    pub fn null_value(&self) -> Value {
        self.block.null_value()
    }
    /// Look up the attribute at a schema path (attribute names only; index/key steps skip
    /// through collections).
    pub fn attribute_at(&self, path: &AttributePath) -> Option<&Attribute> {
        let mut block = &self.block;
        let mut attrs: Option<&BTreeMap<String, Attribute>> = None;
        let mut found: Option<&Attribute> = None;
        for step in &path.steps {
            let PathStep::Attr(name) = step else { continue };
            if let Some(map) = attrs {
                found = map.get(name);
            } else if let Some(a) = block.attributes.get(name) {
                found = Some(a);
            } else if let Some(b) = block.blocks.get(name) {
                block = &b.block;
                found = None;
                continue;
            } else {
                return None;
            }
            let a = found?;
            attrs = match &a.ty {
                AttributeType::Nested(n) => Some(&n.attributes),
                AttributeType::Type(_) => None,
            };
        }
        found
    }

    /// Static checks of the schema definition (a provider bug when not empty).
    pub fn check(&self) -> Diagnostics {
        let mut d = Diagnostics::new();
        check_block(&self.block, &AttributePath::root(), &mut d);
        d
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !n.starts_with(|c: char| c.is_ascii_digit())
}

fn check_attrs(attrs: &BTreeMap<String, Attribute>, path: &AttributePath, d: &mut Diagnostics) {
    for (name, a) in attrs {
        let p = path.with(PathStep::Attr(name.clone()));
        let mut bad = |msg: &str| d.error_at(p.clone(), "Invalid schema", format!("{p}: {msg}"));
        if !valid_name(name) {
            bad("attribute names must be lowercase letters, digits and underscores");
        }
        match (a.required, a.optional, a.computed) {
            (true, false, false) | (false, true, _) | (false, false, true) => {}
            _ => bad("set exactly one of required, optional, computed (or optional+computed)"),
        }
        if a.write_only && a.computed {
            bad("write-only attributes cannot be computed");
        }
        if a.default.is_some() && !a.computed {
            bad("attributes with a default must be computed");
        }
        if a.has_modifier(&PlanModifier::UseStateForUnknown) && !a.computed {
            bad("UseStateForUnknown only makes sense on computed attributes");
        }
        if let AttributeType::Nested(n) = &a.ty {
            check_attrs(&n.attributes, &p, d);
        }
    }
}

fn check_block(b: &Block, path: &AttributePath, d: &mut Diagnostics) {
    check_attrs(&b.attributes, path, d);
    for (name, nb) in &b.blocks {
        let p = path.with(PathStep::Attr(name.clone()));
        if b.attributes.contains_key(name) || !valid_name(name) {
            d.error_at(
                p.clone(),
                "Invalid schema",
                format!("{p}: bad or duplicate block name"),
            );
        }
        if nb.max_items > 0 && nb.min_items > nb.max_items {
            d.error_at(
                p.clone(),
                "Invalid schema",
                format!("{p}: min_items > max_items"),
            );
        }
        check_block(&nb.block, &p, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new("test")
            .version(2)
            .attribute("id", Attribute::string().computed().use_state_for_unknown())
            .attribute(
                "servers",
                Attribute::nested(
                    NestingMode::Map,
                    [("port", Attribute::number().optional().computed())],
                )
                .optional(),
            )
            .block(
                "route",
                NestedBlock::list(Block::new().attribute("host", Attribute::string().required()))
                    .min_items(1),
            )
    }

    #[test]
    fn implied_type() {
        assert_eq!(
            schema().implied_type().to_json().to_string(),
            r#"["object",{"id":"string","route":["list",["object",{"host":"string"}]],"servers":["map",["object",{"port":"number"}]]}]"#
        );
    }

    #[test]
    fn attribute_lookup() {
        let s = schema();
        let p = AttributePath::attr("servers")
            .then_key("a")
            .then_attr("port");
        assert!(s.attribute_at(&p).unwrap().computed);
        let p = AttributePath::attr("route").then_index(0).then_attr("host");
        assert!(s.attribute_at(&p).unwrap().required);
        assert!(s.attribute_at(&AttributePath::attr("nope")).is_none());
    }

    #[test]
    fn check_finds_mistakes() {
        assert!(schema().check().is_empty());
        let bad = Schema::new("x")
            .attribute("a", Attribute::string())
            .attribute("b", Attribute::string().computed().write_only())
            .attribute("C", Attribute::string().required())
            .block(
                "d",
                NestedBlock::list(Block::new()).min_items(3).max_items(1),
            );
        let d = bad.check();
        assert_eq!(d.len(), 4, "{d}");
    }

    #[test]
    fn null_value_shape() {
        let v = schema().null_value();
        assert_eq!(v.get_attr("route"), Some(&Value::List(vec![])));
        assert!(v.get_attr("id").unwrap().is_null());
    }
}
