//! Registry-layout documentation generated from the provider's own schemas:
//! `index.md`, `data-sources/<name>.md`, `resources/<name>.md`, `functions/<name>.md`,
//! `ephemeral-resources/<name>.md` (names without the `waddle_` prefix), in the layout the Terraform/OpenTofu registries
//! read. Examples come from the repository's `examples/` tree, in the conventional places:
//! `examples/provider/provider.tf`, `examples/data-sources/<type>/data-source.tf`,
//! `examples/resources/<type>/resource.tf`, `examples/functions/<name>/function.tf`,
//! `examples/ephemeral-resources/<type>/ephemeral-resource.tf` (each optional).
//!
//! Regenerate with `cargo run -p terraform-provider-waddle --bin waddle-docs`; the
//! `docs` integration test fails when the committed `docs/` differ from the output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use waddle_framework::schema::{AttributeType, BlockNesting, NestingMode};
use waddle_framework::{
    Attribute, Block, FunctionSignature, IdentitySchema, Provider, Schema, Type,
};

/// Sub-directories of `docs/` whose every `.md` file is generated.
pub const GENERATED_DIRS: [&str; 4] = [
    "data-sources",
    "resources",
    "functions",
    "ephemeral-resources",
];

/// Generation failures.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error("reading example {path}: {source}")]
    Example {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// All generated files: path relative to `docs/` → content.
pub fn generate(
    provider: &dyn Provider,
    examples_dir: &Path,
) -> Result<BTreeMap<String, String>, DocsError> {
    let name = provider.type_name().to_string();
    let prefix = format!("{name}_");
    let mut out = BTreeMap::new();

    let example = |rel: &str| -> Result<Option<String>, DocsError> {
        let path = examples_dir.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DocsError::Example { path, source }),
        }
    };

    out.insert(
        "index.md".to_string(),
        index_page(
            &name,
            &provider.schema(),
            example("provider/provider.tf")?.as_deref(),
        ),
    );
    for ds in provider.data_sources() {
        let ty = ds.type_name().to_string();
        let short = ty.strip_prefix(&prefix).unwrap_or(&ty).to_string();
        let ex = example(&format!("data-sources/{ty}/data-source.tf"))?;
        out.insert(
            format!("data-sources/{short}.md"),
            schema_page(&name, &ty, "Data Source", &ds.schema(), ex.as_deref()),
        );
    }
    for r in provider.resources() {
        let ty = r.type_name().to_string();
        let short = ty.strip_prefix(&prefix).unwrap_or(&ty).to_string();
        let ex = example(&format!("resources/{ty}/resource.tf"))?;
        let mut page = schema_page(&name, &ty, "Resource", &r.schema(), ex.as_deref());
        if let Some(identity) = r.identity_schema() {
            identity_section(&mut page, &ty, &identity);
        }
        out.insert(format!("resources/{short}.md"), page);
    }
    for e in provider.ephemeral_resources() {
        let ty = e.type_name().to_string();
        let short = ty.strip_prefix(&prefix).unwrap_or(&ty).to_string();
        let ex = example(&format!("ephemeral-resources/{ty}/ephemeral-resource.tf"))?;
        out.insert(
            format!("ephemeral-resources/{short}.md"),
            schema_page(&name, &ty, "Ephemeral Resource", &e.schema(), ex.as_deref()),
        );
    }
    for f in provider.functions() {
        let fname = f.name().to_string();
        let ex = example(&format!("functions/{fname}/function.tf"))?;
        out.insert(
            format!("functions/{fname}.md"),
            function_page(&name, &fname, &f.signature(), ex.as_deref()),
        );
    }
    Ok(out)
}

/// Differences between `generated` and the files under `docs_dir`: a list of
/// human-readable problems (empty when up to date).
pub fn stale(generated: &BTreeMap<String, String>, docs_dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for (rel, content) in generated {
        match std::fs::read_to_string(docs_dir.join(rel)) {
            Ok(on_disk) if &on_disk == content => {}
            Ok(_) => problems.push(format!("docs/{rel} is out of date")),
            Err(_) => problems.push(format!("docs/{rel} is missing")),
        }
    }
    for dir in GENERATED_DIRS {
        let Ok(entries) = std::fs::read_dir(docs_dir.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if rel.ends_with(".md") && !generated.contains_key(&rel) {
                problems.push(format!("docs/{rel} documents nothing the provider has"));
            }
        }
    }
    problems
}

/// Write the generated files under `docs_dir` and remove generated-directory pages that
/// no longer correspond to anything. Returns the paths written or removed.
pub fn write(
    generated: &BTreeMap<String, String>,
    docs_dir: &Path,
) -> std::io::Result<Vec<String>> {
    let mut changed = Vec::new();
    for (rel, content) in generated {
        let path = docs_dir.join(rel);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(content.as_str()) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
        changed.push(format!("wrote docs/{rel}"));
    }
    for dir in GENERATED_DIRS {
        let Ok(entries) = std::fs::read_dir(docs_dir.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if rel.ends_with(".md") && !generated.contains_key(&rel) {
                std::fs::remove_file(e.path())?;
                changed.push(format!("removed docs/{rel}"));
            }
        }
    }
    Ok(changed)
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

/// The first paragraph of a markdown description, for the front matter.
fn summary(md: &str) -> String {
    md.split("\n\n").next().unwrap_or("").trim().to_string()
}

fn front_matter(out: &mut String, title: &str, description: &str) {
    out.push_str("---\n");
    let _ = writeln!(out, "page_title: \"{title}\"");
    out.push_str("subcategory: \"\"\n");
    out.push_str("description: |-\n");
    for line in summary(description).lines() {
        let _ = writeln!(out, "  {line}");
    }
    out.push_str("---\n\n");
}

fn example_section(out: &mut String, example: Option<&str>) {
    if let Some(ex) = example {
        out.push_str("## Example Usage\n\n```terraform\n");
        out.push_str(ex.trim_end());
        out.push_str("\n```\n\n");
    }
}

fn index_page(name: &str, schema: &Schema, example: Option<&str>) -> String {
    let mut out = String::new();
    front_matter(
        &mut out,
        &format!("Provider: {name}"),
        &schema.block.description,
    );
    let _ = writeln!(out, "# {name} Provider\n");
    out.push_str(schema.block.description.trim());
    out.push_str("\n\n");
    example_section(&mut out, example);
    schema_section(&mut out, &schema.block);
    finish(out)
}

fn schema_page(
    provider: &str,
    ty: &str,
    kind: &str,
    schema: &Schema,
    example: Option<&str>,
) -> String {
    let mut out = String::new();
    front_matter(
        &mut out,
        &format!("{ty} {kind} - {provider}"),
        &schema.block.description,
    );
    let _ = writeln!(out, "# {ty} ({kind})\n");
    out.push_str(schema.block.description.trim());
    out.push_str("\n\n");
    example_section(&mut out, example);
    schema_section(&mut out, &schema.block);
    finish(out)
}

/// "Import by identity": an `import` block with the identity's attributes (Terraform >= 1.12)
/// and the list of them.
fn identity_section(out: &mut String, ty: &str, identity: &IdentitySchema) {
    out.push_str("\n## Import by identity\n\n");
    out.push_str(
        "On Terraform >= 1.12 an `import` block can name the object by its identity instead \
         of an import ID:\n\n```terraform\nimport {\n",
    );
    let _ = writeln!(out, "  to = {ty}.this");
    out.push_str("  identity = {\n");
    let width = identity
        .attributes
        .iter()
        .map(|a| a.name.len())
        .max()
        .unwrap_or(0);
    for a in &identity.attributes {
        let example = match a.ty {
            Type::Number => "100".to_string(),
            _ => format!("\"<{}>\"", a.name),
        };
        let _ = writeln!(out, "    {:<width$} = {example}", a.name);
    }
    out.push_str("  }\n}\n```\n\n");
    for a in &identity.attributes {
        let need = if a.required_for_import {
            "Required"
        } else {
            "Optional"
        };
        let _ = writeln!(
            out,
            "- `{}` ({}, {need}) {}",
            a.name,
            doc_type(&a.ty),
            a.description
        );
    }
}

fn function_page(
    provider: &str,
    name: &str,
    sig: &FunctionSignature,
    example: Option<&str>,
) -> String {
    let mut out = String::new();
    let desc = if sig.summary.is_empty() {
        sig.description.clone()
    } else {
        sig.summary.clone()
    };
    front_matter(&mut out, &format!("{name} function - {provider}"), &desc);
    let _ = writeln!(out, "# function: {name}\n");
    if !sig.summary.is_empty() {
        let _ = writeln!(out, "{}\n", sig.summary.trim());
    }
    if !sig.description.is_empty() {
        let _ = writeln!(out, "{}\n", sig.description.trim());
    }
    if let Some(msg) = &sig.deprecation {
        let _ = writeln!(out, "~> **Deprecated:** {msg}\n");
    }
    let _ = writeln!(
        out,
        "Call it as `provider::{provider}::{name}(...)` (OpenTofu >= 1.7, Terraform >= 1.8).\n"
    );
    example_section(&mut out, example);
    out.push_str("## Signature\n\n```text\n");
    let mut params: Vec<String> = sig
        .parameters
        .iter()
        .map(|p| format!("{} {}", p.name, hcl_type(&p.ty)))
        .collect();
    if let Some(v) = &sig.variadic {
        params.push(format!("{}... {}", v.name, hcl_type(&v.ty)));
    }
    let _ = writeln!(
        out,
        "{name}({}) {}",
        params.join(", "),
        hcl_type(&sig.return_type)
    );
    out.push_str("```\n\n## Arguments\n\n");
    for (n, p) in (1..).zip(sig.parameters.iter().chain(sig.variadic.iter())) {
        let variadic = sig.variadic.as_ref() == Some(p);
        let mut flags = vec![doc_type(&p.ty)];
        if variadic {
            flags.push("Variadic".into());
        }
        if p.allow_null {
            flags.push("Nullable".into());
        }
        let _ = writeln!(
            out,
            "{n}. `{}` ({}) {}",
            p.name,
            flags.join(", "),
            p.description.trim()
        );
    }
    out.push_str("\n## Return Type\n\n");
    let _ = writeln!(out, "{}", doc_type(&sig.return_type));
    finish(out)
}

/// Collapse trailing blank lines into exactly one newline.
fn finish(mut out: String) -> String {
    while out.ends_with("\n\n") {
        out.pop();
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// HCL type constraint spelling (`string`, `list(string)`, `object({...})`).
fn hcl_type(t: &Type) -> String {
    match t {
        Type::String => "string".into(),
        Type::Number => "number".into(),
        Type::Bool => "bool".into(),
        Type::Dynamic => "any".into(),
        Type::List(e) => format!("list({})", hcl_type(e)),
        Type::Set(e) => format!("set({})", hcl_type(e)),
        Type::Map(e) => format!("map({})", hcl_type(e)),
        Type::Tuple(ts) => format!(
            "tuple([{}])",
            ts.iter().map(hcl_type).collect::<Vec<_>>().join(", ")
        ),
        Type::Object(o) => format!(
            "object({{{}}})",
            o.attrs
                .iter()
                .map(|(k, v)| format!("{k} = {}", hcl_type(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Registry-doc type spelling (`String`, `List of String`, ...).
fn doc_type(t: &Type) -> String {
    match t {
        Type::String => "String".into(),
        Type::Number => "Number".into(),
        Type::Bool => "Boolean".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", doc_type(e)),
        Type::Set(e) => format!("Set of {}", doc_type(e)),
        Type::Map(e) => format!("Map of {}", doc_type(e)),
        Type::Tuple(_) => "Tuple".into(),
        Type::Object(_) => "Object".into(),
    }
}

enum Nested<'a> {
    Attributes(&'a BTreeMap<String, Attribute>),
    Block(&'a Block),
}

struct Pending<'a> {
    anchor: String,
    title: String,
    nested: Nested<'a>,
}

fn attribute_line<'a>(
    out: &mut String,
    path: &str,
    name: &str,
    a: &'a Attribute,
    pending: &mut Vec<Pending<'a>>,
) {
    let full = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    };
    let mut flags = Vec::new();
    let mut link = String::new();
    match &a.ty {
        AttributeType::Type(t) => flags.push(doc_type(t)),
        AttributeType::Nested(n) => {
            let kind = match n.nesting {
                NestingMode::Single => "Attributes",
                NestingMode::List => "Attributes List",
                NestingMode::Set => "Attributes Set",
                NestingMode::Map => "Attributes Map",
            };
            flags.push(kind.into());
            let anchor = format!("nestedatt--{}", full.replace('.', "--"));
            link = format!(" (see [below for nested schema](#{anchor}))");
        }
    }
    if a.sensitive {
        flags.push("Sensitive".into());
    }
    if a.write_only {
        flags.push("Write-only".into());
    }
    if a.deprecation.is_some() {
        flags.push("Deprecated".into());
    }
    let mut desc = a.description.trim().to_string();
    if let Some(msg) = &a.deprecation {
        desc = format!("{desc} **Deprecated:** {msg}").trim().to_string();
    }
    let _ = writeln!(out, "- `{name}` ({}) {desc}{link}", flags.join(", "));
    if let AttributeType::Nested(n) = &a.ty {
        pending.push(Pending {
            anchor: format!("nestedatt--{}", full.replace('.', "--")),
            title: full,
            nested: Nested::Attributes(&n.attributes),
        });
    }
}

fn block_line<'a>(
    out: &mut String,
    path: &str,
    name: &str,
    b: &'a waddle_framework::NestedBlock,
    pending: &mut Vec<Pending<'a>>,
) {
    let full = if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    };
    let kind = match b.nesting {
        BlockNesting::Single | BlockNesting::Group => "Block",
        BlockNesting::List => "Block List",
        BlockNesting::Set => "Block Set",
        BlockNesting::Map => "Block Map",
    };
    let mut flags = vec![kind.to_string()];
    if b.min_items > 0 {
        flags.push(format!("Min: {}", b.min_items));
    }
    if b.max_items > 0 {
        flags.push(format!("Max: {}", b.max_items));
    }
    let anchor = format!("nestedblock--{}", full.replace('.', "--"));
    let _ = writeln!(
        out,
        "- `{name}` ({}) {} (see [below for nested schema](#{anchor}))",
        flags.join(", "),
        b.block.description.trim()
    );
    pending.push(Pending {
        anchor,
        title: full,
        nested: Nested::Block(&b.block),
    });
}

fn attribute_groups<'a>(
    out: &mut String,
    path: &str,
    attrs: &'a BTreeMap<String, Attribute>,
    blocks: Option<&'a BTreeMap<String, waddle_framework::NestedBlock>>,
    pending: &mut Vec<Pending<'a>>,
    heading: &str,
) {
    type Pred<'p> = &'p dyn Fn(&Attribute) -> bool;
    let groups: [(&str, Pred); 3] = [
        ("Required", &|a: &Attribute| a.required),
        ("Optional", &|a: &Attribute| a.optional),
        ("Read-Only", &|a: &Attribute| a.is_read_only()),
    ];
    for (title, pred) in groups {
        let items: Vec<(&String, &Attribute)> = attrs.iter().filter(|(_, a)| pred(a)).collect();
        let block_items: Vec<(&String, &waddle_framework::NestedBlock)> = match (title, blocks) {
            ("Required", Some(b)) => b.iter().filter(|(_, b)| b.min_items > 0).collect(),
            ("Optional", Some(b)) => b.iter().filter(|(_, b)| b.min_items == 0).collect(),
            _ => Vec::new(),
        };
        if items.is_empty() && block_items.is_empty() {
            continue;
        }
        if heading.is_empty() {
            let _ = writeln!(out, "{title}:\n");
        } else {
            let _ = writeln!(out, "{heading} {title}\n");
        }
        for (name, a) in items {
            attribute_line(out, path, name, a, pending);
        }
        for (name, b) in block_items {
            block_line(out, path, name, b, pending);
        }
        out.push('\n');
    }
}

fn schema_section(out: &mut String, block: &Block) {
    out.push_str("## Schema\n\n");
    let mut pending = Vec::new();
    attribute_groups(
        out,
        "",
        &block.attributes,
        Some(&block.blocks),
        &mut pending,
        "###",
    );
    let mut i = 0;
    while i < pending.len() {
        let (anchor, title) = (pending[i].anchor.clone(), pending[i].title.clone());
        let _ = writeln!(
            out,
            "<a id=\"{anchor}\"></a>\n### Nested Schema for `{title}`\n"
        );
        let mut more = Vec::new();
        match pending[i].nested {
            Nested::Attributes(attrs) => attribute_groups(out, &title, attrs, None, &mut more, ""),
            Nested::Block(b) => {
                attribute_groups(out, &title, &b.attributes, Some(&b.blocks), &mut more, "")
            }
        }
        pending.extend(more);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waddle_framework::NestedBlock;

    #[test]
    fn nested_schemas_get_sections_and_anchors() {
        let block = Schema::new("A thing.")
            .attribute("name", Attribute::string().required().description("Name."))
            .attribute(
                "secret",
                Attribute::string()
                    .optional()
                    .sensitive()
                    .description("Secret."),
            )
            .attribute("id", Attribute::string().computed().description("ID."))
            .attribute(
                "routes",
                Attribute::nested(
                    NestingMode::List,
                    [("host", Attribute::string().required().description("Host."))],
                )
                .optional()
                .description("Routes."),
            )
            .block(
                "disk",
                NestedBlock::list(
                    Block::new()
                        .description("A disk.")
                        .attribute("size", Attribute::number().required().description("GiB.")),
                )
                .min_items(1),
            )
            .block;
        let mut out = String::new();
        schema_section(&mut out, &block);
        assert!(out.contains("### Required\n\n- `name` (String) Name.\n- `disk` (Block List, Min: 1) A disk. (see [below for nested schema](#nestedblock--disk))\n"), "{out}");
        assert!(
            out.contains("- `secret` (String, Sensitive) Secret.\n"),
            "{out}"
        );
        assert!(
            out.contains("### Read-Only\n\n- `id` (String) ID.\n"),
            "{out}"
        );
        assert!(out.contains("<a id=\"nestedatt--routes\"></a>\n### Nested Schema for `routes`\n\nRequired:\n\n- `host` (String) Host.\n"), "{out}");
        assert!(out.contains("### Nested Schema for `disk`"), "{out}");
        assert!(out.contains("- `size` (Number) GiB."), "{out}");
    }

    #[test]
    fn hcl_types() {
        assert_eq!(hcl_type(&Type::list(Type::String)), "list(string)");
        assert_eq!(
            hcl_type(&Type::object([("a", Type::Number)])),
            "object({a = number})"
        );
        assert_eq!(doc_type(&Type::map(Type::Bool)), "Map of Boolean");
    }
}
