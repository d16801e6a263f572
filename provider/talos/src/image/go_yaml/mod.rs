//! go-yaml's rendering of a Go string, reproduced byte for byte (or refused).

mod resolve;

use resolve::{is_base60_float, is_old_bool, resolves_to_non_string};

use super::SchematicError;

// ---------------------------------------------------------------------------
// go-yaml scalar rendering
// ---------------------------------------------------------------------------
//
// go-yaml (v3, and v4 which keeps its emitter) renders a Go string as:
//   * a literal block (`|`, `|-`, `|+`) when it contains "\n" and block style
//     is allowed;
//   * double-quoted when it would otherwise resolve to another type (null,
//     bool, int, float, timestamp), looks like a YAML 1.1 bool or base-60
//     float, or holds non-printable characters;
//   * single-quoted when plain style is not allowed in block context
//     (indicator characters, leading/trailing spaces, ": ", " #", ...);
//   * plain otherwise.
// The rules below were checked against go-yaml v3's output (Debian's
// golang-gopkg-yaml.v3-dev, marshalling the factory's struct): every expected
// string in the tests was produced by go-yaml itself, and 6,000 random short
// strings over an alphabet of indicators, quotes, digits, tabs, line breaks
// and non-ASCII characters rendered identically (or were refused).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Characters go-yaml treats as line breaks or renders in ways this module
/// does not reproduce.
fn unsupported_char(c: char) -> Option<&'static str> {
    match c {
        '\u{85}' | '\u{2028}' | '\u{2029}' => {
            Some("Unicode line breaks (NEL, U+2028, U+2029) are not supported")
        }
        '\u{feff}' => Some("byte-order marks (U+FEFF) are not supported"),
        _ => None,
    }
}

/// go-yaml's `is_printable`.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

fn is_blank(c: Option<char>) -> bool {
    // go-yaml's is_blankz: space, tab, line break or end of input.
    matches!(c, None | Some(' ') | Some('\t') | Some('\n') | Some('\r'))
}

/// Whether go-yaml's emitter allows the plain style for `s` in block context
/// (`yaml_emitter_analyze_scalar`'s `block_plain_allowed`), for a single-line
/// string of printable characters.
fn block_plain_allowed(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars[0] == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    let mut preceded_by_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_ws = is_blank(chars.get(i + 1).copied());
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if followed_by_ws => return false,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => return false,
                '#' if preceded_by_ws => return false,
                _ => {}
            }
        }
        preceded_by_ws = is_blank(Some(c));
    }
    true
}

fn choose_style(s: &str, path: &str) -> Result<Style, SchematicError> {
    if let Some(reason) = s.chars().find_map(unsupported_char) {
        return Err(SchematicError::UnsupportedString {
            path: path.into(),
            reason,
        });
    }
    let special = s.chars().any(|c| !is_printable(c));
    if s.contains('\n') {
        // Literal block unless the emitter's analysis forbids block style.
        // go-yaml keeps tabs in literal blocks (observed: "a\t\nb" is
        // emitted as a literal block) while a single-line string with a tab
        // is double-quoted.
        let special = s.chars().any(|c| c != '\t' && !is_printable(c));
        let space_break = s.contains(" \n");
        let trailing_space = s.ends_with(' ');
        if special || space_break || trailing_space {
            return Ok(Style::Double);
        }
        if s.starts_with(' ') || s.starts_with('\n') {
            return Err(SchematicError::UnsupportedString {
                path: path.into(),
                reason:
                    "multi-line strings starting with a space or a line break are not supported",
            });
        }
        return Ok(Style::Literal);
    }
    if special || resolves_to_non_string(s) || is_base60_float(s) || is_old_bool(s) {
        return Ok(Style::Double);
    }
    if block_plain_allowed(s) {
        Ok(Style::Plain)
    } else {
        Ok(Style::Single)
    }
}

/// Write `s` as a mapping value (followed by a newline). `indent` is the
/// column of a literal block's content.
pub(super) fn write_scalar(
    out: &mut String,
    s: &str,
    indent: usize,
    path: &str,
) -> Result<(), SchematicError> {
    match choose_style(s, path)? {
        Style::Plain => out.push_str(s),
        Style::Single => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Style::Double => write_double_quoted(out, s),
        Style::Literal => {
            out.push('|');
            if !s.ends_with('\n') {
                out.push('-');
            } else if s.ends_with("\n\n") || s == "\n" {
                out.push('+');
            }
            out.push('\n');
            let body = s.strip_suffix('\n').unwrap_or(s);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent));
                    out.push_str(line);
                }
                out.push('\n');
            }
            return Ok(());
        }
    }
    out.push('\n');
    Ok(())
}

/// Write `s` as a sequence item (multi-line items are refused).
pub(super) fn write_seq_scalar(
    out: &mut String,
    s: &str,
    path: impl Fn() -> String,
) -> Result<(), SchematicError> {
    if s.contains('\n') {
        let p = path();
        if choose_style(s, &p)? == Style::Literal {
            return Err(SchematicError::UnsupportedString {
                path: p,
                reason: "multi-line list items are not supported",
            });
        }
    }
    write_scalar(out, s, 0, &path())
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                if u <= 0xFF {
                    out.push_str(&format!("\\x{u:02X}"));
                } else if u <= 0xFFFF {
                    out.push_str(&format!("\\u{u:04X}"));
                } else {
                    out.push_str(&format!("\\U{u:08X}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::schematic::sha256_hex;
    use crate::image::{Customization, MetaValue, Overlay, Schematic};

    fn yaml_of_args(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Schematic::with_extensions_and_args(&[], &args)
            .canonical_yaml()
            .unwrap()
    }
    #[test]
    fn scalar_styles_match_go_yaml() {
        let cases: &[(&str, &str)] = &[
            ("quiet", "quiet"),
            ("console=ttyS0,115200", "console=ttyS0,115200"),
            ("net.ifnames=0", "net.ifnames=0"),
            ("vga=791", "vga=791"),
            ("1", "\"1\""),
            ("0x1F", "\"0x1F\""),
            ("1e5", "\"1e5\""),
            ("1.5", "\"1.5\""),
            (".5", "\".5\""),
            (".inf", "\".inf\""),
            ("+.inf", "\"+.inf\""),
            ("-.Inf", "\"-.Inf\""),
            (".nan", "\".nan\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("TRUE", "\"TRUE\""),
            ("tRue", "tRue"),
            ("false", "\"false\""),
            ("null", "\"null\""),
            ("Null", "\"Null\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("y", "\"y\""),
            ("Y", "\"Y\""),
            ("yes", "\"yes\""),
            ("no", "\"no\""),
            ("on", "\"on\""),
            ("off", "\"off\""),
            ("On", "\"On\""),
            ("OFF", "\"OFF\""),
            ("n", "\"n\""),
            ("<<", "<<"),
            ("2001-12-14", "\"2001-12-14\""),
            (
                "2001-12-14T21:59:43.10-05:00",
                "\"2001-12-14T21:59:43.10-05:00\"",
            ),
            ("1:20", "\"1:20\""),
            ("190:20:30.15", "\"190:20:30.15\""),
            ("-foo", "-foo"),
            ("-", "'-'"),
            ("--", "--"),
            ("foo:", "'foo:'"),
            ("foo:bar", "foo:bar"),
            (":foo", ":foo"),
            ("?foo", "?foo"),
            ("?", "'?'"),
            ("#foo", "'#foo'"),
            ("foo#bar", "foo#bar"),
            ("&a", "'&a'"),
            ("*a", "'*a'"),
            ("!a", "'!a'"),
            ("|a", "'|a'"),
            (">a", "'>a'"),
            ("%a", "'%a'"),
            ("@a", "'@a'"),
            ("`a", "'`a'"),
            ("'a", "'''a'"),
            ("\"a", "'\"a'"),
            ("a'b", "a'b"),
            ("a\"b", "a\"b"),
            ("[a", "'[a'"),
            ("a[b", "a[b"),
            ("{a", "'{a'"),
            ("a}", "a}"),
            (",a", "',a'"),
            ("a,b", "a,b"),
            ("---", "'---'"),
            ("...a", "'...a'"),
            ("---a", "'---a'"),
            ("a b", "a b"),
            (" a", "' a'"),
            ("a ", "'a '"),
            ("a\tb", "\"a\\tb\""),
            ("a\\b", "a\\b"),
            ("é", "é"),
            ("a\u{a0}b", "a\u{a0}b"),
            ("\u{1}", "\"\\x01\""),
            ("\u{7f}", "\"\\x7F\""),
            ("0o17", "\"0o17\""),
            ("017", "\"017\""),
            ("0b101", "\"0b101\""),
            ("-0b101", "\"-0b101\""),
            ("+1", "\"+1\""),
            ("-1", "\"-1\""),
            ("1_000", "\"1_000\""),
            ("99999999999999999999", "\"99999999999999999999\""),
            ("1e", "1e"),
            ("0x", "0x"),
            ("12a", "12a"),
            ("infinity", "infinity"),
            (".Infinity", ".Infinity"),
            ("NaN", "NaN"),
            ("-.5e3", "\"-.5e3\""),
            ("+", "+"),
            (".", "."),
            ("=a", "=a"),
            ("a=b=c", "a=b=c"),
            ("init=/bin/sh", "init=/bin/sh"),
            ("talos.platform=metal", "talos.platform=metal"),
            ("a: b", "'a: b'"),
            ("\u{fffe}a", "\"\\uFFFEa\""),
            ("\u{1F600}a", "\"\\U0001F600a\""),
            ("\u{80}a", "\"\\x80a\""),
            ("\u{c0}", "\u{c0}"),
            ("\u{d7ff}", "\u{d7ff}"),
            ("\u{e000}", "\u{e000}"),
            ("\u{ffef}", "\u{ffef}"),
        ];
        for (input, expected) in cases {
            let got = yaml_of_args(&[input]);
            let want = format!("customization:\n    extraKernelArgs:\n        - {expected}\n");
            assert_eq!(got, want, "input {input:?}");
        }
    }

    fn meta_yaml(value: &str) -> Result<String, SchematicError> {
        Schematic {
            customization: Customization {
                meta: vec![MetaValue {
                    key: 10,
                    value: value.into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        }
        .canonical_yaml()
    }

    #[test]
    fn meta_values_match_go_yaml() {
        let prefix = "customization:\n    meta:\n        - key: 10\n          value: ";
        let cases: &[(&str, &str, &str)] = &[
            (
                "\u{0}",
                "\"\\0\"\n",
                "564f2a98cd991ea501afe8df5dc354470b3fa9fb75f5278259af8443c6b03f77",
            ),
            (
                "a\rb",
                "\"a\\rb\"\n",
                "f8ac016328bcf4948c0fb00d7aadd1ff92b0c1877af0b06769daba3035eb30de",
            ),
            (
                "\u{1b}",
                "\"\\e\"\n",
                "c6a33c20f34ed1f1a402c34a32d6465f434bed4094ca58fe724a0b5d5aa7687b",
            ),
            (
                "\u{7}",
                "\"\\a\"\n",
                "032477c9754851f6b2920e348b1922bab4d01a6bb3822512a7627b8e47a8789d",
            ),
            (
                "\u{8}",
                "\"\\b\"\n",
                "b2dbddc80cc3ccc1ca8b495dd441666222888cb5180075265261a2ea18ab85b4",
            ),
            (
                "\u{b}",
                "\"\\v\"\n",
                "7a25731db9d4c3d264b845e4d826d47c530442ee659b8ccbe12f77bf8e067790",
            ),
            (
                "\u{c}",
                "\"\\f\"\n",
                "e12cf7ed8e852ece36e52f98f98d639a168206e6fbf1b4a994560d381cfb001e",
            ),
            (
                "a\u{9f}b",
                "\"a\\x9Fb\"\n",
                "7cd617241ea79fe138884938b99e5f5eff86dc20238b6be9e648687609165501",
            ),
            (
                "\u{fffe}",
                "\"\\uFFFE\"\n",
                "15a9b4fc1fc8e21ec2efe120b77cc9ef8e6aec26ae8b7db02872a084bac67f71",
            ),
            (
                "a\nb",
                "|-\n            a\n            b\n",
                "5c20630662468132867ad2841f3f42c0340aaa27b0e96d6e62e8917c69ecbee3",
            ),
            (
                "a\nb\n",
                "|\n            a\n            b\n",
                "ef7672d96001eb6b55ad4cf59c2ddba7a89ca156950f60d570bdf545003fbffe",
            ),
            (
                "a\nb\n\n",
                "|+\n            a\n            b\n\n",
                "5d30b67b7b347209fdbf3196833b9332e8115951b7afd618192721ec8b6bba8c",
            ),
            (
                "a \nb",
                "\"a \\nb\"\n",
                "7335796d8ae650f5918ad1392153e7ba882077978a8a911e2e7872c0b6e63394",
            ),
            (
                "a\n",
                "|\n            a\n",
                "aa083d9164d47132e75b3a0afad0818b45f7f3ca936e10609739348a962b1cbb",
            ),
            (
                "a\n b",
                "|-\n            a\n             b\n",
                "8ed874fefd970cca3a73c3cd4fe194ecfed49ec545cd822a18f720a84e14c896",
            ),
            (
                "{}",
                "'{}'\n",
                "de3de71abf5a50551986885ddf49ce25e86459a502da360255704ecffdec2e35",
            ),
            (
                "a\u{e9} b",
                "a\u{e9} b\n",
                "4ccf8c3be366d59570d019c3f3aeafe72b8180cc2d9230540e3aad87ec14a8fe",
            ),
            (
                "a\n\nb",
                "|-\n            a\n\n            b\n",
                "2bf1c7437e2b9845e244b158e1b5e0805692f4cf02d44c48115889a8516410cf",
            ),
            (
                "a\n\nb\n",
                "|\n            a\n\n            b\n",
                "6165ac1b3db773547cf7c85ad65397618e559e707c8338b425d4a492b0cdff68",
            ),
            (
                "a\nb\n\n\n",
                "|+\n            a\n            b\n\n\n",
                "08b5f64c80fc6f2adee27345d11aa238938a99662b4276b5f08752dcccbd150e",
            ),
            (
                "addresses:\n  - 10.0.0.2/24\nroutes: []\n",
                "|\n            addresses:\n              - 10.0.0.2/24\n            routes: []\n",
                "52b2e91035b4d0c9d33679adf61160c3f62a914274bc7b403404e2f3d7f92c94",
            ),
            (
                "a\n\n",
                "|+\n            a\n\n",
                "5701550e81ee34c11be4af0f03d30228a9a07bdddc0fe41f478561be50e8080a",
            ),
        ];
        for (value, rendered, id) in cases {
            let y = meta_yaml(value).unwrap();
            assert_eq!(y, format!("{prefix}{rendered}"), "value {value:?}");
            assert_eq!(&sha256_hex(y.as_bytes()), id, "value {value:?}");
        }
        let long = format!("{} {}", "x".repeat(100), "y".repeat(100));
        let y = meta_yaml(&long).unwrap();
        assert_eq!(
            sha256_hex(y.as_bytes()),
            "8ce892773192fad5cd94087108bcfd6ec277fe52bf1b604f85d927757ce0654f",
            "long strings are not folded"
        );
    }

    #[test]
    fn multiline_in_top_level_fields() {
        let s = Schematic {
            owner: "a\nb\n".into(),
            overlay: Overlay {
                image: "x\ny".into(),
                name: "n".into(),
            },
            ..Default::default()
        };
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "owner: |\n    a\n    b\noverlay:\n    image: |-\n        x\n        y\n    name: \"n\"\ncustomization: {}\n"
        );
        assert_eq!(
            s.id().unwrap(),
            "27147c25210723925d8b2029634b699f73e20ba8f6e0a71c76795349f69fc4f7"
        );
    }

    #[test]
    fn unsupported_strings_are_refused_not_guessed() {
        for v in ["a\u{85}b", "a\u{2028}b", "\u{feff}a", " a\nb", "\na"] {
            assert!(
                matches!(meta_yaml(v), Err(SchematicError::UnsupportedString { .. })),
                "{v:?}"
            );
        }
        let s = Schematic::with_extensions_and_args(&[], &["a\nb".into()]);
        match s.canonical_yaml() {
            Err(SchematicError::UnsupportedString { path, .. }) => {
                assert_eq!(path, "customization.extraKernelArgs[0]")
            }
            other => panic!("{other:?}"),
        }
    }
}
