//! A tiny POSIX-shell subset for guest `exec` (`sh -c 'a && b || c; d'`): words with single
//! and double quotes and backslashes, and the `&&`, `||`, `;` connectors.

/// How a command is joined to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Join {
    First,
    And,
    Or,
    Seq,
}

/// Split a script into commands.
pub(crate) fn parse(script: &str) -> Result<Vec<(Join, Vec<String>)>, String> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut join = Join::First;
    let mut chars = script.chars().peekable();
    let flush = |words: &mut Vec<String>, cur: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(cur));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x @ ('"' | '\\' | '$' | '`')) => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated quoted string".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    if x != '\n' {
                        cur.push(x);
                    }
                }
            }
            ' ' | '\t' => flush(&mut words, &mut cur, &mut in_word),
            '\n' | ';' => {
                flush(&mut words, &mut cur, &mut in_word);
                if !words.is_empty() {
                    out.push((join, std::mem::take(&mut words)));
                }
                join = Join::Seq;
            }
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                flush(&mut words, &mut cur, &mut in_word);
                if words.is_empty() {
                    return Err("syntax error near unexpected token `&&'".into());
                }
                out.push((join, std::mem::take(&mut words)));
                join = Join::And;
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                flush(&mut words, &mut cur, &mut in_word);
                if words.is_empty() {
                    return Err("syntax error near unexpected token `||'".into());
                }
                out.push((join, std::mem::take(&mut words)));
                join = Join::Or;
            }
            '|' | '>' | '<' | '`' | '$' | '&' => {
                return Err(format!("unsupported shell syntax '{c}' in emulated guest"));
            }
            '#' if !in_word => {
                // comment to end of line
                for x in chars.by_ref() {
                    if x == '\n' {
                        break;
                    }
                }
                flush(&mut words, &mut cur, &mut in_word);
                if !words.is_empty() {
                    out.push((join, std::mem::take(&mut words)));
                }
                join = Join::Seq;
            }
            other => {
                in_word = true;
                cur.push(other);
            }
        }
    }
    flush(&mut words, &mut cur, &mut in_word);
    if !words.is_empty() {
        out.push((join, words));
    } else if matches!(join, Join::And | Join::Or) {
        return Err("syntax error: unexpected end of file".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connectors_and_quotes() {
        let p = parse("haproxy -c -f '/etc/a b.cfg' && mv \"x\" y || echo fail; true").expect("ok");
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].1, vec!["haproxy", "-c", "-f", "/etc/a b.cfg"]);
        assert_eq!(p[1].0, Join::And);
        assert_eq!(p[2].0, Join::Or);
        assert_eq!(p[3], (Join::Seq, vec!["true".to_string()]));
        assert!(parse("a &&").is_err());
        assert!(parse("cat x | grep y").is_err());
    }
}
