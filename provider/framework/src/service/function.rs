//! The RPCs of provider functions: the signatures and a call, its arguments checked against
//! the signature.

use waddle_tfplugin::tfplugin6 as pb;

use super::{FunctionEntry, ProviderService};
use crate::proto::{self, decode_dynamic, encode_dynamic};
use crate::provider::{Context, FunctionError};

pub(super) fn list(
    svc: &ProviderService,
    _req: pb::get_functions::Request,
) -> pb::get_functions::Response {
    pb::get_functions::Response {
        functions: svc
            .inner
            .functions
            .iter()
            .map(|(k, f)| (k.clone(), proto::function_to_proto(&f.signature)))
            .collect(),
        diagnostics: Vec::new(),
    }
}

pub(super) async fn call(
    svc: &ProviderService,
    req: pb::call_function::Request,
) -> pb::call_function::Response {
    let result = match svc.inner.functions.get(&req.name) {
        None => Err(FunctionError::new(format!(
            "The provider has no function named {:?}.",
            req.name
        ))),
        Some(f) => invoke(&svc.ctx(), f, &req.arguments).await,
    };
    match result {
        Ok(v) => pb::call_function::Response {
            result: Some(v),
            error: None,
        },
        Err(e) => pb::call_function::Response {
            result: None,
            error: Some(pb::FunctionError {
                text: e.message,
                function_argument: e.argument,
            }),
        },
    }
}

async fn invoke(
    ctx: &Context,
    f: &FunctionEntry,
    args: &[pb::DynamicValue],
) -> Result<pb::DynamicValue, FunctionError> {
    let sig = &f.signature;
    let fixed = sig.parameters.len();
    if args.len() < fixed || (sig.variadic.is_none() && args.len() > fixed) {
        return Err(FunctionError::new(format!(
            "Function {:?} takes {fixed} argument(s){}, got {}.",
            f.function.name(),
            if sig.variadic.is_some() {
                " and more"
            } else {
                ""
            },
            args.len()
        )));
    }
    let mut values = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        let Some(p) = sig.parameters.get(i).or(sig.variadic.as_ref()) else {
            return Err(FunctionError::argument(i, "unexpected argument"));
        };
        let v = decode_dynamic(Some(a), &p.ty).map_err(|e| {
            FunctionError::argument(i, format!("Invalid value for {:?} parameter: {e}", p.name))
        })?;
        if v.is_null() && !p.allow_null {
            return Err(FunctionError::argument(
                i,
                format!(
                    "Invalid value for {:?} parameter: argument must not be null.",
                    p.name
                ),
            ));
        }
        if !v.is_wholly_known() && !p.allow_unknown {
            return Err(FunctionError::argument(
                i,
                format!(
                    "Invalid value for {:?} parameter: argument must be known.",
                    p.name
                ),
            ));
        }
        values.push(v);
    }
    let out = f.function.call(ctx, values).await?;
    encode_dynamic(&out, &sig.return_type).map_err(|e| {
        FunctionError::new(format!(
            "The function returned an invalid value (a provider bug): {e}"
        ))
    })
}
