//! JSON Schema patterns (ECMA-262 regular expressions) as patterns of the `regex` crate
//! that garde compiles without Unicode classes: `\d` and `\w` are ASCII in ECMA-262 and
//! become `0-9` and `A-Za-z0-9_`; `\s` becomes ECMA-262's list of white space. What has no
//! faithful translation (lookaround, backreferences, `\p{..}`, a negated class shorthand
//! inside `[...]`) is an error.

const SPACE: &str = r"\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";

/// `pattern` for the regex crate, or why it cannot be.
pub fn translate(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err("the pattern ends in a lone `\\`".to_owned());
                };
                let class = match e {
                    'd' => Some("0-9"),
                    'w' => Some("A-Za-z0-9_"),
                    's' => Some(SPACE),
                    _ => None,
                };
                match (e, class) {
                    (_, Some(class)) if in_class => out.push_str(class),
                    (_, Some(class)) => {
                        out.push('[');
                        out.push_str(class);
                        out.push(']');
                    }
                    ('D' | 'W' | 'S', _) if in_class => {
                        return Err(format!("`\\{e}` inside `[...]` is not supported"));
                    }
                    ('D', _) => out.push_str("[^0-9]"),
                    ('W', _) => out.push_str("[^A-Za-z0-9_]"),
                    ('S', _) => {
                        out.push_str("[^");
                        out.push_str(SPACE);
                        out.push(']');
                    }
                    ('p' | 'P' | 'k', _) => {
                        return Err(format!(
                            "`\\{e}` (Unicode properties, named backreferences) is not supported"
                        ));
                    }
                    ('1'..='9', _) => return Err("backreferences are not supported".to_owned()),
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                // A `]` first in a class is a literal in both dialects.
                if chars.peek() == Some(&']') {
                    out.push_str("\\]");
                    chars.next();
                }
            }
            '[' => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '(' if !in_class && chars.peek() == Some(&'?') => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("?=")
                    || rest.starts_with("?!")
                    || rest.starts_with("?<=")
                    || rest.starts_with("?<!")
                {
                    return Err(
                        "lookaround (`(?=`, `(?!`, `(?<=`, `(?<!`) is not supported".to_owned()
                    );
                }
                out.push('(');
            }
            _ => out.push(c),
        }
    }
    regex::Regex::new(&out)
        .map_err(|e| format!("a pattern the regex crate cannot compile: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn shorthands_become_ascii_classes() {
        assert_eq!(translate(r"^\d+$").as_deref(), Ok("^[0-9]+$"));
        assert_eq!(translate(r"[A-Z\d]").as_deref(), Ok("[A-Z0-9]"));
        let kraken = translate(r"[A-Z\s]+\/[A-Z\s]+").expect("translates");
        let re = regex::Regex::new(&kraken).expect("compiles");
        assert!(re.is_match("XBT/EUR"));
        assert!(!re.is_match("xbt-eur"));
    }

    #[test]
    fn untranslatable_patterns_are_errors() {
        assert!(translate(r"(?=a)b").is_err());
        assert!(translate(r"(a)\1").is_err());
        assert!(translate(r"\p{L}+").is_err());
        assert!(translate(r"[\S]").is_err());
        assert!(translate("(").is_err());
    }
}
