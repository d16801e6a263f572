//! The fake provider the tests serve: a resource (`thing`) with nested attributes, write-only
//! values, identity, state upgrades and moves, a data source (`echo`) and a function (`repeat`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;

struct FakeData {
    pub(super) prefix: String,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) deletes: AtomicUsize,
    pub(super) creates_seen_password: AtomicUsize,
}

pub(super) struct Fake {
    pub(super) counters: Arc<Counters>,
}

#[async_trait]
impl Provider for Fake {
    fn type_name(&self) -> &str {
        "fake"
    }
    fn schema(&self) -> Schema {
        Schema::new("Fake provider.").attribute("prefix", Attribute::string().optional())
    }
    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        if config.get_attr("prefix").and_then(Value::as_str) == Some("") {
            diags.error_at(
                AttributePath::attr("prefix"),
                "Invalid prefix",
                "must not be empty",
            );
        }
    }
    async fn configure(
        &self,
        _ctx: &Context,
        config: &Value,
        _diags: &mut Diagnostics,
    ) -> Option<ProviderData> {
        let prefix = config
            .get_attr("prefix")
            .and_then(Value::as_str)
            .unwrap_or("id")
            .to_string();
        Some(Arc::new(FakeData { prefix }))
    }
    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(Thing {
            counters: self.counters.clone(),
        })]
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        vec![Arc::new(Echo)]
    }
    fn functions(&self) -> Vec<Arc<dyn Function>> {
        vec![Arc::new(Repeat)]
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct Route {
    pub(super) host: String,
    pub(super) port: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(super) struct ThingState {
    pub(super) id: Option<String>,
    pub(super) name: String,
    pub(super) size: Option<i64>,
    pub(super) password: Option<String>,
    pub(super) labels: Option<BTreeMap<String, String>>,
    pub(super) routes: Option<Vec<Route>>,
    pub(super) status: Option<String>,
}

struct Thing {
    pub(super) counters: Arc<Counters>,
}

pub(super) fn thing_schema() -> Schema {
    Schema::new("A thing.")
        .version(1)
        .attribute("id", Attribute::string().computed().use_state_for_unknown())
        .attribute("name", Attribute::string().required().requires_replace())
        .attribute("size", Attribute::number().default(Value::from(3)))
        .attribute(
            "password",
            Attribute::string().optional().sensitive().write_only(),
        )
        .attribute("labels", Attribute::map_of(Type::String).optional())
        .attribute(
            "routes",
            Attribute::nested(
                NestingMode::List,
                [
                    ("host", Attribute::string().required()),
                    ("port", Attribute::number().optional()),
                ],
            )
            .optional(),
        )
        .attribute("status", Attribute::string().computed())
}

#[async_trait]
impl Resource for Thing {
    fn type_name(&self) -> &str {
        "fake_thing"
    }
    fn schema(&self) -> Schema {
        thing_schema()
    }
    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        if let Some(routes) = config.get_attr("routes").and_then(Value::as_elements) {
            for (i, r) in routes.iter().enumerate() {
                if let Some(h) = r.get_attr("host").and_then(Value::as_str) {
                    if h.contains(' ') {
                        diags.error_at(
                            AttributePath::attr("routes")
                                .then_index(i as i64)
                                .then_attr("host"),
                            "Invalid host",
                            format!("{h:?} contains a space"),
                        );
                    }
                }
            }
        }
        if let Some(labels) = config.get_attr("labels").and_then(Value::as_entries) {
            for k in labels.keys() {
                if k.chars().any(|c| c.is_ascii_uppercase()) {
                    diags.error_at(
                        AttributePath::attr("labels").then_key(k.clone()),
                        "Invalid label key",
                        "label keys must be lowercase",
                    );
                }
            }
        }
    }
    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        if req.config.get_attr("password").and_then(Value::as_str) == Some("hunter2") {
            self.counters
                .creates_seen_password
                .fetch_add(1, Ordering::SeqCst);
        }
        let mut st: ThingState = match req.planned_state.unknown_as_null().to_typed() {
            Ok(s) => s,
            Err(e) => {
                diags.error("bad plan", e.to_string());
                return None;
            }
        };
        if st.name == "slow" {
            // A long operation that honours StopProvider.
            if ctx.run(std::future::pending::<()>()).await.is_err() {
                diags.error("Cancelled", "create was cancelled by StopProvider");
                return None;
            }
        }
        let prefix = ctx
            .provider_data::<FakeData>()
            .map_or("unconfigured", |d| d.prefix.as_str());
        st.id = Some(format!("{prefix}-{}", st.name));
        st.status = Some("ready".into());
        // A careless resource echoes the write-only password into state: the framework
        // must null it anyway.
        st.password = req
            .config
            .get_attr("password")
            .and_then(Value::as_str)
            .map(String::from);
        Value::from_typed(&st, &thing_schema().implied_type()).ok()
    }
    async fn read(&self, _ctx: &Context, state: Value, _diags: &mut Diagnostics) -> Option<Value> {
        if state.get_attr("name").and_then(Value::as_str) == Some("gone") {
            return None;
        }
        Some(state)
    }
    async fn update(
        &self,
        _ctx: &Context,
        req: UpdateRequest,
        _diags: &mut Diagnostics,
    ) -> Option<Value> {
        let mut v = req.planned_state;
        v.set_path(&AttributePath::attr("status"), Value::from("updated"));
        Some(v)
    }
    async fn delete(&self, _ctx: &Context, _prior: Value, _diags: &mut Diagnostics) {
        self.counters.deletes.fetch_add(1, Ordering::SeqCst);
    }
    async fn import_state(
        &self,
        _ctx: &Context,
        req: ImportRequest,
        _diags: &mut Diagnostics,
    ) -> Option<Value> {
        let mut v = thing_schema().import_state_with_id("id", &req.id);
        let name = req.id.rsplit('-').next().unwrap_or_default().to_string();
        v.set_path(&AttributePath::attr("name"), Value::from(name));
        Some(v)
    }
    fn upgrade_state(
        &self,
        from_version: i64,
        mut raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        match from_version {
            // v0 called `name` `title` and stored size as a string.
            0 => {
                let obj = raw.as_object_mut()?;
                if let Some(t) = obj.remove("title") {
                    obj.insert("name".into(), t);
                }
                if let Some(serde_json::Value::String(s)) = obj.get("size").cloned() {
                    match s.parse::<i64>() {
                        Ok(n) => {
                            obj.insert("size".into(), n.into());
                        }
                        Err(_) => {
                            diags.error("bad size", s);
                            return None;
                        }
                    }
                }
                Some(raw)
            }
            v => {
                diags.error("no upgrader", format!("version {v}"));
                None
            }
        }
    }
    async fn move_state(
        &self,
        _ctx: &Context,
        req: MoveStateRequest,
        _diags: &mut Diagnostics,
    ) -> Option<Value> {
        if req.source_type_name != "other_thing" {
            return None;
        }
        let name = req.source_state.get("label")?.as_str()?.to_string();
        let mut v = thing_schema().null_value();
        v.set_path(&AttributePath::attr("name"), Value::from(name.clone()));
        v.set_path(
            &AttributePath::attr("id"),
            Value::from(format!("moved-{name}")),
        );
        v.set_path(&AttributePath::attr("size"), Value::from(3));
        v.set_path(&AttributePath::attr("status"), Value::from("moved"));
        Some(v)
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema {
            version: 0,
            attributes: vec![IdentityAttribute {
                name: "id".into(),
                ty: Type::String,
                required_for_import: true,
                optional_for_import: false,
                description: "The ID.".into(),
            }],
        })
    }
    fn identity(&self, state: &Value) -> Option<Value> {
        Some(Value::object([("id", state.get_attr("id")?.clone())]))
    }
}

struct Echo;

#[async_trait]
impl DataSource for Echo {
    fn type_name(&self) -> &str {
        "fake_echo"
    }
    fn schema(&self) -> Schema {
        Schema::new("Echo.")
            .attribute("input", Attribute::string().required())
            .attribute("output", Attribute::string().computed())
    }
    async fn read(&self, _ctx: &Context, config: Value, _diags: &mut Diagnostics) -> Option<Value> {
        let input = config.get_attr("input")?.as_str()?.to_uppercase();
        Some(Value::object([
            ("input", config.get_attr("input")?.clone()),
            ("output", Value::from(input)),
        ]))
    }
}

struct Repeat;

#[async_trait]
impl Function for Repeat {
    fn name(&self) -> &str {
        "repeat"
    }
    fn signature(&self) -> FunctionSignature {
        FunctionSignature::new(Type::String)
            .summary("Repeat a string")
            .param(Parameter::new("s", Type::String))
            .param(Parameter::new("n", Type::Number))
    }
    async fn call(&self, _ctx: &Context, args: Vec<Value>) -> Result<Value, FunctionError> {
        let s = args[0].as_str().unwrap_or_default();
        let n = args[1]
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| FunctionError::argument(1, "n must be a non-negative integer"))?;
        Ok(Value::from(s.repeat(n as usize)))
    }
}
