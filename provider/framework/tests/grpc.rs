//! In-process gRPC tests: the ProviderService behind tonic on a unix socket, driven by the
//! generated client with a small fake provider.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use waddle_framework::codec;
use waddle_framework::prelude::*;
use waddle_framework::proto::path_from_proto;
use waddle_framework::ProviderService;
use waddle_tfplugin::tfplugin6 as pb;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;

// ------------------------------------------------------------------------------------
// The fake provider
// ------------------------------------------------------------------------------------

struct FakeData {
    prefix: String,
}

#[derive(Default)]
struct Counters {
    deletes: AtomicUsize,
    creates_seen_password: AtomicUsize,
}

struct Fake {
    counters: Arc<Counters>,
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
struct Route {
    host: String,
    port: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ThingState {
    id: Option<String>,
    name: String,
    size: Option<i64>,
    password: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    routes: Option<Vec<Route>>,
    status: Option<String>,
}

struct Thing {
    counters: Arc<Counters>,
}

fn thing_schema() -> Schema {
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

// ------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------

struct Harness {
    client: ProviderClient<Channel>,
    counters: Arc<Counters>,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn start() -> Harness {
    start_stopping_on(None).await
}

/// The harness; with `shutdown`, as a provider binary wires it (`ProviderService::stop_on`).
async fn start_stopping_on(shutdown: Option<&tokio_util::sync::CancellationToken>) -> Harness {
    let counters = Arc::new(Counters::default());
    let service = ProviderService::new(Fake {
        counters: counters.clone(),
    });
    if let Some(s) = shutdown {
        service.stop_on(s);
    }
    assert!(
        service.definition_diagnostics().is_empty(),
        "{}",
        service.definition_diagnostics()
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(sock).await?)) }
        }))
        .await
        .unwrap();
    Harness {
        client: ProviderClient::new(channel),
        counters,
        _dir: dir,
        server,
    }
}

fn ty() -> Type {
    thing_schema().implied_type()
}

fn dv(v: &Value, t: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: codec::encode_msgpack(v, t).unwrap(),
        json: vec![],
    })
}

fn undv(d: Option<pb::DynamicValue>, t: &Type) -> Value {
    codec::decode_msgpack(&d.expect("dynamic value present").msgpack, t).unwrap()
}

fn thing(pairs: &[(&str, Value)]) -> Value {
    let mut v = thing_schema().null_value();
    for (k, x) in pairs {
        assert!(v.set_path(&AttributePath::attr(*k), x.clone()));
    }
    v
}

fn errors(d: &[pb::Diagnostic]) -> Vec<(String, String)> {
    d.iter()
        .filter(|d| d.severity == pb::diagnostic::Severity::Error as i32)
        .map(|d| {
            (
                d.summary.clone(),
                d.attribute
                    .as_ref()
                    .map(|p| path_from_proto(p).to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn caps(write_only: bool) -> Option<pb::ClientCapabilities> {
    Some(pb::ClientCapabilities {
        deferral_allowed: true,
        write_only_attributes_allowed: write_only,
    })
}

async fn configure(h: &mut Harness, prefix: &str) {
    let pty = Type::object([("prefix", Type::String)]);
    let r = h
        .client
        .configure_provider(pb::configure_provider::Request {
            terraform_version: "1.11.0".into(),
            config: dv(&Value::object([("prefix", Value::from(prefix))]), &pty),
            client_capabilities: caps(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
}

async fn plan(
    h: &mut Harness,
    prior: &Value,
    config: &Value,
    proposed: &Value,
) -> pb::plan_resource_change::Response {
    h.client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior, &ty()),
            proposed_new_state: dv(proposed, &ty()),
            config: dv(config, &ty()),
            client_capabilities: caps(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn apply(
    h: &mut Harness,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> pb::apply_resource_change::Response {
    apply_on(&mut h.client, prior, config, planned).await
}

async fn apply_on(
    client: &mut ProviderClient<tonic::transport::Channel>,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> pb::apply_resource_change::Response {
    client
        .apply_resource_change(pb::apply_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior, &ty()),
            planned_state: dv(planned, &ty()),
            config: dv(config, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

// ------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_and_schema() {
    let mut h = start().await;
    let m = h
        .client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap()
        .into_inner();
    let caps = m.server_capabilities.unwrap();
    assert!(caps.get_provider_schema_optional && caps.move_resource_state && !caps.plan_destroy);
    assert_eq!(m.resources[0].type_name, "fake_thing");
    assert_eq!(m.data_sources[0].type_name, "fake_echo");
    assert_eq!(m.functions[0].name, "repeat");

    let s = h
        .client
        .get_provider_schema(pb::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.diagnostics.is_empty());
    let rs = &s.resource_schemas["fake_thing"];
    assert_eq!(rs.version, 1);
    let block = rs.block.as_ref().unwrap();
    let pw = block
        .attributes
        .iter()
        .find(|a| a.name == "password")
        .unwrap();
    assert!(pw.write_only && pw.sensitive && pw.optional);
    assert_eq!(block.description_kind, pb::StringKind::Markdown as i32);
    let routes = block
        .attributes
        .iter()
        .find(|a| a.name == "routes")
        .unwrap();
    assert_eq!(
        routes.nested_type.as_ref().unwrap().nesting,
        pb::schema::object::NestingMode::List as i32
    );
    assert!(s.data_source_schemas.contains_key("fake_echo"));
    let f = &s.functions["repeat"];
    assert_eq!(f.parameters.len(), 2);
    assert_eq!(f.r#return.as_ref().unwrap().r#type, br#""string""#);
    assert!(s.ephemeral_resource_schemas.is_empty());

    let ids = h
        .client
        .get_resource_identity_schemas(pb::get_resource_identity_schemas::Request {})
        .await
        .unwrap()
        .into_inner();
    let id = &ids.identity_schemas["fake_thing"];
    assert_eq!(id.identity_attributes[0].name, "id");
    assert!(id.identity_attributes[0].required_for_import);
}

#[tokio::test]
async fn validate_errors_carry_paths() {
    let mut h = start().await;
    let config = thing(&[
        ("id", Value::from("set-by-user")),
        ("password", Value::from("pw")),
        (
            "labels",
            Value::Map(
                [
                    ("Bad".to_string(), Value::from("x")),
                    ("ok".to_string(), Value::from("y")),
                ]
                .into(),
            ),
        ),
        (
            "routes",
            Value::List(vec![
                Value::object([("host", Value::from("a.example")), ("port", Value::Null)]),
                Value::object([("host", Value::from("b example")), ("port", Value::from(1))]),
                Value::object([("host", Value::Null), ("port", Value::unknown())]),
            ]),
        ),
    ]);
    let r = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "fake_thing".into(),
            config: dv(&config, &ty()),
            client_capabilities: caps(false),
        })
        .await
        .unwrap()
        .into_inner();
    let e = errors(&r.diagnostics);
    let want: Vec<(String, String)> = [
        ("Invalid Configuration for Read-Only Attribute", "id"),
        ("Missing Configuration for Required Attribute", "name"),
        ("WriteOnly Attribute Not Allowed", "password"),
        (
            "Missing Configuration for Required Attribute",
            "routes[2].host",
        ),
        ("Invalid host", "routes[1].host"),
        ("Invalid label key", "labels[\"Bad\"]"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(e, want);
    // the raw proto steps: element_key_int and element_key_string
    let host = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Invalid host")
        .unwrap();
    use pb::attribute_path::step::Selector;
    let steps: Vec<_> = host
        .attribute
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.selector.clone().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            Selector::AttributeName("routes".into()),
            Selector::ElementKeyInt(1),
            Selector::AttributeName("host".into())
        ]
    );
    let label = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Invalid label key")
        .unwrap();
    assert_eq!(
        label.attribute.as_ref().unwrap().steps[1].selector,
        Some(Selector::ElementKeyString("Bad".into()))
    );

    // unknowns are fine; write-only allowed by a capable client
    let ok = thing(&[("name", Value::unknown()), ("password", Value::from("pw"))]);
    let r = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "fake_thing".into(),
            config: dv(&ok, &ty()),
            client_capabilities: caps(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);

    // provider config validation calls the provider hook
    let pty = Type::object([("prefix", Type::String)]);
    let r = h
        .client
        .validate_provider_config(pb::validate_provider_config::Request {
            config: dv(&Value::object([("prefix", Value::from(""))]), &pty),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics),
        vec![("Invalid prefix".to_string(), "prefix".to_string())]
    );

    // unknown type names are reported, not panics
    let r = h
        .client
        .validate_data_resource_config(pb::validate_data_resource_config::Request {
            type_name: "fake_nope".into(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "Data Source Type Not Found");
}

#[tokio::test]
async fn create_update_replace_read_delete_lifecycle() {
    let mut h = start().await;
    configure(&mut h, "px").await;

    // --- create plan: computed unknown, default applied, write-only nulled
    let config = thing(&[
        ("name", Value::from("alpha")),
        ("password", Value::from("hunter2")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let p = plan(&mut h, &Value::Null, &config, &config).await;
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert!(p.deferred.is_none());
    assert!(p.requires_replace.is_empty());
    let planned = undv(p.planned_state, &ty());
    assert!(planned.get_attr("id").unwrap().is_unknown());
    assert!(planned.get_attr("status").unwrap().is_unknown());
    assert_eq!(planned.get_attr("size").and_then(Value::as_i64), Some(3));
    assert!(
        planned.get_attr("password").unwrap().is_null(),
        "write-only must not be planned"
    );
    assert!(
        p.planned_identity.is_none(),
        "no identity while the id is unknown"
    );

    // --- apply create: the resource sees the password in config, state never holds it
    let a = apply(&mut h, &Value::Null, &config, &planned).await;
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    let state = undv(a.new_state, &ty());
    assert_eq!(h.counters.creates_seen_password.load(Ordering::SeqCst), 1);
    assert!(
        state.get_attr("password").unwrap().is_null(),
        "write-only must not be stored"
    );
    assert_eq!(
        state.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    assert_eq!(
        state.get_attr("status").and_then(Value::as_str),
        Some("ready")
    );
    let ident = undv(
        a.new_identity.unwrap().identity_data,
        &Type::object([("id", Type::String)]),
    );
    assert_eq!(
        ident.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    // the typed state round-trips
    let typed: ThingState = state.to_typed().unwrap();
    assert_eq!(typed.routes.unwrap()[0].host, "a");

    // --- update plan in place: routes change, id kept via UseStateForUnknown
    let config2 = thing(&[
        ("name", Value::from("alpha")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("b")),
                ("port", Value::from(8443)),
            ])]),
        ),
    ]);
    let mut proposed = config2.clone();
    for k in ["id", "status", "size"] {
        proposed.set_path(&AttributePath::attr(k), state.get_attr(k).unwrap().clone());
    }
    let p = plan(&mut h, &state, &config2, &proposed).await;
    assert!(p.requires_replace.is_empty());
    let planned2 = undv(p.planned_state, &ty());
    assert_eq!(
        planned2.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    assert!(planned2.get_attr("status").unwrap().is_unknown());
    let a = apply(&mut h, &state, &config2, &planned2).await;
    let state2 = undv(a.new_state, &ty());
    assert_eq!(
        state2.get_attr("status").and_then(Value::as_str),
        Some("updated")
    );

    // --- a name change requires replacement
    let mut config3 = config2.clone();
    config3.set_path(&AttributePath::attr("name"), Value::from("beta"));
    let mut proposed3 = proposed.clone();
    proposed3.set_path(&AttributePath::attr("name"), Value::from("beta"));
    let p = plan(&mut h, &state2, &config3, &proposed3).await;
    let rr: Vec<String> = p
        .requires_replace
        .iter()
        .map(|x| path_from_proto(x).to_string())
        .collect();
    assert_eq!(rr, vec!["name"]);

    // --- read: present, then gone -> null state
    let r = h
        .client
        .read_resource(pb::read_resource::Request {
            type_name: "fake_thing".into(),
            current_state: dv(&state2, &ty()),
            private: b"p".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(undv(r.new_state, &ty()), state2);
    assert_eq!(r.private, b"p");
    let mut gone = state2.clone();
    gone.set_path(&AttributePath::attr("name"), Value::from("gone"));
    let r = h
        .client
        .read_resource(pb::read_resource::Request {
            type_name: "fake_thing".into(),
            current_state: dv(&gone, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(undv(r.new_state, &ty()).is_null());
    assert!(r.deferred.is_none());

    // --- destroy: plan passes through as null, apply calls delete
    let p = plan(&mut h, &state2, &Value::Null, &Value::Null).await;
    assert!(undv(p.planned_state, &ty()).is_null());
    let a = apply(&mut h, &state2, &Value::Null, &Value::Null).await;
    assert!(a.diagnostics.is_empty());
    assert!(undv(a.new_state, &ty()).is_null());
    assert_eq!(h.counters.deletes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_only_nulled_even_for_old_clients() {
    let mut h = start().await;
    // An old client sends no capabilities and includes the value in the proposed state.
    let config = thing(&[
        ("name", Value::from("x")),
        ("password", Value::from("hunter2")),
    ]);
    let r = h
        .client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(&Value::Null, &ty()),
            proposed_new_state: dv(&config, &ty()),
            config: dv(&config, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let planned = undv(r.planned_state, &ty());
    assert!(planned.get_attr("password").unwrap().is_null());
    // even a planned state that (wrongly) carries the value gives a null new state
    let mut bad_planned = planned.clone();
    bad_planned.set_path(&AttributePath::attr("password"), Value::from("hunter2"));
    let a = apply(&mut h, &Value::Null, &config, &bad_planned).await;
    let st = undv(a.new_state, &ty());
    assert!(st.get_attr("password").unwrap().is_null());
    assert_eq!(
        st.get_attr("id").and_then(Value::as_str),
        Some("unconfigured-x")
    );
}

#[tokio::test]
async fn upgrade_state_v0_to_v1_from_raw_json() {
    let mut h = start().await;
    let raw = br#"{"id":"px-a","title":"a","size":"7","password":null,"labels":{"k":"v"},"routes":null,"status":"ready"}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let v = undv(r.upgraded_state, &ty());
    assert_eq!(v.get_attr("name").and_then(Value::as_str), Some("a"));
    assert_eq!(v.get_attr("size").and_then(Value::as_i64), Some(7));
    assert_eq!(
        v.get_path(&AttributePath::attr("labels").then_key("k"))
            .and_then(Value::as_str),
        Some("v")
    );

    // current version: attributes removed from the schema are tolerated
    let raw = br#"{"id":"i","name":"n","size":1180591620717411303425,"removed_attr":true}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 1,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let v = undv(r.upgraded_state, &ty());
    assert_eq!(
        v.get_attr("size")
            .and_then(Value::as_number)
            .map(ToString::to_string)
            .as_deref(),
        Some("1180591620717411303425"),
        "big number kept exactly"
    );

    // a failing upgrader and a future version are errors
    let raw = br#"{"title":"a","size":"seven"}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "bad size");
    assert!(r.upgraded_state.is_none());
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 5,
            raw_state: Some(pb::RawState {
                json: b"{}".to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics)[0].0,
        "Unable to Upgrade Resource State"
    );
}

#[tokio::test]
async fn functions_call_and_argument_errors() {
    let mut h = start().await;
    let call = |args: Vec<Value>| pb::call_function::Request {
        name: "repeat".into(),
        arguments: args
            .iter()
            .zip([Type::String, Type::Number, Type::String])
            .map(|(v, t)| dv(v, &t).unwrap())
            .collect(),
    };
    let r = h
        .client
        .call_function(call(vec!["ab".into(), Value::from(3)]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none());
    assert_eq!(undv(r.result, &Type::String), Value::from("ababab"));

    let r = h
        .client
        .call_function(call(vec!["ab".into(), Value::from(-1)]))
        .await
        .unwrap()
        .into_inner();
    let e = r.error.unwrap();
    assert_eq!(e.function_argument, Some(1));
    assert!(e.text.contains("non-negative"));

    // null where not allowed: framework rejects with the argument index
    let r = h
        .client
        .call_function(call(vec![Value::Null, Value::from(1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().function_argument, Some(0));
    // wrong arity and unknown function
    let r = h
        .client
        .call_function(call(vec!["a".into()]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.unwrap().text.contains("takes 2 argument"));
    let r = h
        .client
        .call_function(pb::call_function::Request {
            name: "nope".into(),
            arguments: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_some());

    let f = h
        .client
        .get_functions(pb::get_functions::Request {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.functions["repeat"].summary, "Repeat a string");
}

#[tokio::test]
async fn data_source_read() {
    let mut h = start().await;
    let dty = Type::object([("input", Type::String), ("output", Type::String)]);
    let r = h
        .client
        .read_data_source(pb::read_data_source::Request {
            type_name: "fake_echo".into(),
            config: dv(
                &Value::object([("input", Value::from("hi")), ("output", Value::Null)]),
                &dty,
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert!(r.deferred.is_none());
    let v = undv(r.state, &dty);
    assert_eq!(v.get_attr("output").and_then(Value::as_str), Some("HI"));
    // missing required input at validate time
    let r = h
        .client
        .validate_data_resource_config(pb::validate_data_resource_config::Request {
            type_name: "fake_echo".into(),
            config: dv(
                &Value::object([("input", Value::Null), ("output", Value::Null)]),
                &dty,
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics),
        vec![(
            "Missing Configuration for Required Attribute".to_string(),
            "input".to_string()
        )]
    );
}

#[tokio::test]
async fn import_move_and_identity_upgrade() {
    let mut h = start().await;
    let r = h
        .client
        .import_resource_state(pb::import_resource_state::Request {
            type_name: "fake_thing".into(),
            id: "px-gamma".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert_eq!(r.imported_resources.len(), 1);
    let imp = &r.imported_resources[0];
    assert_eq!(imp.type_name, "fake_thing");
    let st = undv(imp.state.clone(), &ty());
    assert_eq!(st.get_attr("id").and_then(Value::as_str), Some("px-gamma"));
    assert_eq!(st.get_attr("name").and_then(Value::as_str), Some("gamma"));
    assert!(imp.identity.is_some());

    let r = h
        .client
        .move_resource_state(pb::move_resource_state::Request {
            source_provider_address: "registry.opentofu.org/x/other".into(),
            source_type_name: "other_thing".into(),
            source_schema_version: 0,
            source_state: Some(pb::RawState {
                json: br#"{"label":"m"}"#.to_vec(),
                flatmap: Default::default(),
            }),
            target_type_name: "fake_thing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let st = undv(r.target_state, &ty());
    assert_eq!(st.get_attr("id").and_then(Value::as_str), Some("moved-m"));
    let r = h
        .client
        .move_resource_state(pb::move_resource_state::Request {
            source_type_name: "unrelated".into(),
            source_state: Some(pb::RawState {
                json: b"{}".to_vec(),
                flatmap: Default::default(),
            }),
            target_type_name: "fake_thing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "Unable to Move Resource State");

    let r = h
        .client
        .upgrade_resource_identity(pb::upgrade_resource_identity::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_identity: br#"{"id":"x"}"#.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    let id = undv(
        r.upgraded_identity.unwrap().identity_data,
        &Type::object([("id", Type::String)]),
    );
    assert_eq!(id.get_attr("id").and_then(Value::as_str), Some("x"));
}

#[tokio::test]
async fn ephemeral_resources_are_cleanly_unsupported() {
    let mut h = start().await;
    let r = h
        .client
        .open_ephemeral_resource(pb::open_ephemeral_resource::Request {
            type_name: "fake_eph".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics)[0].0,
        "Ephemeral Resource Type Not Found"
    );
    let r = h
        .client
        .validate_ephemeral_resource_config(pb::validate_ephemeral_resource_config::Request {
            type_name: "fake_eph".into(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.diagnostics.len(), 1);
}

/// Create a `fake_thing` named "slow": it runs until its operation is cancelled.
async fn create_slow(
    mut c: ProviderClient<tonic::transport::Channel>,
) -> pb::apply_resource_change::Response {
    let config = thing(&[("name", Value::from("slow"))]);
    let mut planned = config.clone();
    planned.set_path(&AttributePath::attr("id"), Value::unknown());
    planned.set_path(&AttributePath::attr("status"), Value::unknown());
    planned.set_path(&AttributePath::attr("size"), Value::from(3));
    apply_on(&mut c, &Value::Null, &config, &planned).await
}

async fn stop_provider(h: &mut Harness) {
    let s = h
        .client
        .stop_provider(pb::stop_provider::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.error.is_empty());
}

#[tokio::test]
async fn stop_provider_cancels_in_flight_operations() {
    let mut h = start().await;
    let in_flight = tokio::spawn(create_slow(h.client.clone()));
    // StopProvider until the in-flight call has observed it (it may not have started yet).
    let resp = loop {
        stop_provider(&mut h).await;
        if in_flight.is_finished() {
            break in_flight.await.unwrap();
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
    assert!(undv(resp.new_state, &ty()).is_null());
    // the provider keeps working after a stop
    let p = plan(
        &mut h,
        &Value::Null,
        &thing(&[("name", "z".into())]),
        &thing(&[("name", "z".into())]),
    )
    .await;
    assert!(p.diagnostics.is_empty());
}

#[tokio::test]
async fn plugin_shutdown_cancels_in_flight_and_later_operations() {
    // The plugin server's shutdown signal (host Shutdown, SIGTERM, the host's death).
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut h = start_stopping_on(Some(&shutdown)).await;
    let in_flight = tokio::spawn(create_slow(h.client.clone()));
    shutdown.cancel();
    let resp = in_flight.await.unwrap();
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
    // A StopProvider after it does not bring back an uncancelled token.
    stop_provider(&mut h).await;
    let resp = create_slow(h.client.clone()).await;
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
}

#[test]
fn thing_state_roundtrips_through_schema() {
    let sample = ThingState {
        id: Some("i".into()),
        name: "n".into(),
        size: Some(3),
        password: Some("p".into()),
        labels: Some([("a".to_string(), "b".to_string())].into()),
        routes: Some(vec![Route {
            host: "h".into(),
            port: Some(1),
        }]),
        status: Some("s".into()),
    };
    assert_roundtrip(&thing_schema(), &sample);
}

// ------------------------------------------------------------------------------------
// The in-process testing harness
// ------------------------------------------------------------------------------------

use waddle_framework::testing::Harness as InProcess;

fn fake() -> Fake {
    Fake {
        counters: Arc::new(Counters::default()),
    }
}

#[tokio::test]
async fn harness_create_then_replan_is_empty() {
    let h = InProcess::new(fake());
    assert!(h
        .configure(Value::object([("prefix", Value::from("h"))]))
        .await
        .is_empty());
    let config = thing(&[
        ("name", Value::from("one")),
        ("password", Value::from("pw")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let state = h
        .plan_and_apply("fake_thing", &Value::Null, &config)
        .await
        .unwrap();
    assert_eq!(state.get_attr("id").and_then(Value::as_str), Some("h-one"));
    // Planning the same configuration again changes nothing (what `plan -detailed-exitcode`
    // checks after apply).
    let p = h.plan("fake_thing", &state, &config).await;
    assert!(p.diagnostics.is_empty(), "{}", p.diagnostics);
    assert!(p.requires_replace.is_empty());
    assert!(
        p.planned_state.equals(&state),
        "{:?}\n{:?}",
        p.planned_state,
        state
    );
    // refresh keeps it
    let r = h.read("fake_thing", &state).await;
    assert!(r.state.equals(&state));
    // destroy
    let gone = h
        .plan_and_apply("fake_thing", &state, &Value::Null)
        .await
        .unwrap();
    assert!(gone.is_null());
}

#[tokio::test]
async fn harness_reports_validation_and_function_errors() {
    let h = InProcess::new(fake());
    let bad = thing(&[
        ("name", Value::from("x")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a b")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let d = h
        .plan_and_apply("fake_thing", &Value::Null, &bad)
        .await
        .unwrap_err();
    assert_eq!(
        d.errors().next().and_then(|e| e.attribute.clone()),
        Some(
            AttributePath::attr("routes")
                .then_index(0)
                .then_attr("host")
        )
    );
    assert_eq!(
        h.call_function("repeat", vec!["x".into(), Value::from(2)])
            .await,
        Ok(Value::from("xx"))
    );
    assert_eq!(
        h.call_function("repeat", vec!["x".into(), Value::from(-2)])
            .await
            .unwrap_err()
            .argument,
        Some(1)
    );
    let ds = h
        .read_data_source(
            "fake_echo",
            Value::object([("input", Value::from("q")), ("output", Value::Null)]),
        )
        .await;
    assert_eq!(
        ds.state.get_attr("output").and_then(Value::as_str),
        Some("Q")
    );
}
