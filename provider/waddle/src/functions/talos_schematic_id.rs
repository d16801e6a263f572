//! Function `provider::waddle::talos_schematic_id(schematic)`: the Image Factory schematic
//! ID of a schematic given as YAML (or JSON) text.

use waddle_framework::prelude::*;
use waddle_talos::image::schematic_id_from_yaml;

/// Function name.
pub const NAME: &str = "talos_schematic_id";

/// The function.
#[derive(Debug, Default, Clone, Copy)]
pub struct TalosSchematicId;

/// The signature.
pub fn signature() -> FunctionSignature {
    FunctionSignature::new(Type::String)
        .summary("Image Factory schematic ID of a Talos schematic")
        .description(
            "Returns the Talos Linux Image Factory schematic ID of `schematic`: the hex SHA-256 of \
             the schematic's canonical YAML, exactly as the factory computes it, without contacting \
             the factory. The result equals the `id` the factory answers to `POST /schematics` \
             with the same body, and the `schematic_id` of the `waddle_talos_image` data source \
             for the same extensions and kernel arguments.\n\n\
             Supported fields: `customization.extraKernelArgs`, `customization.meta` \
             (`key`, `value`), `customization.systemExtensions.officialExtensions`, \
             `customization.secureboot.includeWellKnownCertificates`, `overlay.image`, \
             `overlay.name` and `owner` (accepted by the Enterprise Image Factory only). Unknown \
             fields (including fields newer than these, such as a bootloader choice) are \
             refused rather than hashed wrongly; non-empty `overlay.options` are not supported. Key order and formatting of \
             the input do not matter; list order does.",
        )
        .param(
            Parameter::new("schematic", Type::String).description(
                "The schematic as YAML or JSON text, the body one would POST to the factory's \
                 `/schematics` endpoint, e.g. built with `yamlencode({ customization = { ... } })` \
                 or `jsonencode(...)`. `\"{}\"` is the empty (default) schematic.",
            ),
        )
}

/// Compute the result for a known argument.
pub fn call(schematic: &str) -> Result<String, FunctionError> {
    schematic_id_from_yaml(schematic).map_err(|e| FunctionError::argument(0, e.to_string()))
}

#[async_trait]
impl Function for TalosSchematicId {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> FunctionSignature {
        signature()
    }

    async fn call(&self, _ctx: &Context, args: Vec<Value>) -> Result<Value, FunctionError> {
        let text = args
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| FunctionError::argument(0, "schematic must be a string"))?;
        call(text).map(Value::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids() {
        assert_eq!(
            call("{}").unwrap(),
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        );
        // What `yamlencode` produces for the example (2-space indent, quoted strings).
        assert_eq!(
            call("\"customization\":\n  \"systemExtensions\":\n    \"officialExtensions\":\n    - \"siderolabs/qemu-guest-agent\"\n")
                .unwrap(),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        assert_eq!(
            call(r#"{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/iscsi-tools","siderolabs/qemu-guest-agent","siderolabs/util-linux-tools"]}}}"#)
                .unwrap(),
            "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b"
        );
    }

    #[test]
    fn errors_blame_the_argument() {
        let e = call("customization:\n  extensions: []\n").unwrap_err();
        assert_eq!(e.argument, Some(0));
        assert!(
            e.message.contains("customization.extensions"),
            "{}",
            e.message
        );
        let e = call("").unwrap_err();
        assert_eq!(e.argument, Some(0));
    }

    #[test]
    fn signature_is_documented() {
        let s = signature();
        assert_eq!(s.parameters.len(), 1);
        assert_eq!(s.parameters[0].name, "schematic");
        assert_eq!(s.return_type, Type::String);
        assert!(!s.summary.is_empty() && !s.parameters[0].description.is_empty());
    }

    #[tokio::test]
    async fn call_through_the_trait() {
        let f = TalosSchematicId;
        let out = f
            .call(&Context::default(), vec![Value::from("customization: {}")])
            .await
            .unwrap();
        assert_eq!(
            out,
            Value::from("376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba")
        );
        assert!(f
            .call(&Context::default(), vec![Value::Null])
            .await
            .is_err());
    }
}
