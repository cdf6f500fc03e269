//! Who a connection is, for ACLs: `User:<name>` after SASL, `User:<the
//! client certificate's subject>` on an SSL listener that received one
//! (mapped by `ssl.principal.mapping.rules`), and `User:ANONYMOUS` otherwise,
//! as Kafka's default principal builder has it.
//!
//! The subject is written as Java's `X500Principal.getName()` writes it
//! (RFC 2253: the last RDN first, `CN=alice,OU=apps,O=Example`), because
//! that is what Kafka's ACLs and mapping rules are written against.

use regex::Regex;

/// `ssl.principal.mapping.rules`: Kafka's `RULE:pattern/replacement/[LU]`
/// list, with `DEFAULT` (the whole subject).
#[derive(Debug, Clone)]
pub(crate) struct MappingRules(Vec<Rule>);

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        /// The pattern against the whole subject: whether the rule applies.
        whole: Regex,
        /// The pattern itself, for Java's `replaceAll`.
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl MappingRules {
    /// Parses the setting; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<MappingRules, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) = until_slash(after)
                    .ok_or_else(|| format!("a RULE has no '/' after its pattern: {rest:?}"))?;
                let (replacement, after) = until_slash(after)
                    .ok_or_else(|| format!("a RULE has no '/' after its replacement: {rest:?}"))?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let bad =
                    |e: regex::Error| format!("a RULE's pattern {pattern:?} is not a regex: {e}");
                let whole = Regex::new(&format!("^(?:{pattern})$")).map_err(bad)?;
                let pattern = Regex::new(&pattern).map_err(bad)?;
                rules.push(Rule::Replace {
                    whole,
                    pattern,
                    replacement: java_replacement(&replacement),
                    case,
                });
                rest = after;
            } else {
                return Err(format!(
                    "expected DEFAULT or RULE:pattern/replacement/[LU] at {rest:?}"
                ));
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err(format!("expected ',' between rules at {rest:?}")),
            }
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(MappingRules(rules))
    }

    /// The name for a subject: the first rule whose pattern matches the
    /// whole subject, applied as Java's `replaceAll`; `None` when no rule
    /// matches (Kafka then refuses the connection).
    pub(crate) fn apply(&self, subject: &str) -> Option<String> {
        self.0.iter().find_map(|rule| match rule {
            Rule::Default => Some(subject.to_string()),
            Rule::Replace {
                whole,
                pattern,
                replacement,
                case,
            } => whole.is_match(subject).then(|| {
                let name = pattern.replace_all(subject, replacement.as_str());
                match case {
                    Some('L') => name.to_lowercase(),
                    Some('U') => name.to_uppercase(),
                    _ => name.into_owned(),
                }
            }),
        })
    }
}

/// The text up to the first unescaped `/` (with `\/` read as `/`), and
/// what follows that slash.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '/' => return Some((out, &text[i + 1..])),
            _ => out.push(c),
        }
    }
    None
}

/// Java's `$1` group references as the regex crate writes them (`${1}`),
/// so `$1x` is group 1 then `x`.
fn java_replacement(replacement: &str) -> String {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                }
                out.push('}');
            }
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(other) => out.push(other),
                None => {}
            },
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate in RFC 2253 form, as Java writes it;
/// `None` when the certificate cannot be read.
pub(crate) fn subject_dn(certificate: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = element(certificate)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version, when present.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serial, signature algorithm, issuer, validity; then the subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (SEQUENCE, mut rdns, _) = element(rest)? else {
        return None;
    };
    let mut names = Vec::new();
    while !rdns.is_empty() {
        let (SET, mut attributes, after) = element(rdns)? else {
            return None;
        };
        rdns = after;
        let mut rdn = Vec::new();
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, after) = element(attributes)? else {
                return None;
            };
            attributes = after;
            let (OID, oid, value) = element(attribute)? else {
                return None;
            };
            rdn.push(attribute_text(oid, value)?);
        }
        names.push(rdn.join("+"));
    }
    names.reverse();
    Some(names.join(","))
}

/// `NAME=value` for one attribute: keywords for the attributes Java names,
/// the dotted OID and `#`-hex of the value for the others.
fn attribute_text(oid: &[u8], value: &[u8]) -> Option<String> {
    let keyword = match oid {
        [0x55, 0x04, 0x03] => Some("CN"),
        [0x55, 0x04, 0x06] => Some("C"),
        [0x55, 0x04, 0x07] => Some("L"),
        [0x55, 0x04, 0x08] => Some("ST"),
        [0x55, 0x04, 0x09] => Some("STREET"),
        [0x55, 0x04, 0x0a] => Some("O"),
        [0x55, 0x04, 0x0b] => Some("OU"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => Some("DC"),
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => Some("UID"),
        _ => None,
    };
    let (tag, content, _) = element(value)?;
    let string = match tag {
        // UTF8String, PrintableString, T61String, IA5String
        0x0c | 0x13 | 0x14 | 0x16 => String::from_utf8(content.to_vec()).ok(),
        // BMPString
        0x1e if content.len() % 2 == 0 => String::from_utf16(
            &content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect::<Vec<u16>>(),
        )
        .ok(),
        _ => None,
    };
    match (keyword, string) {
        (Some(keyword), Some(string)) => Some(format!("{keyword}={}", escape(&string))),
        _ => {
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            Some(format!("{}=#{hex}", dotted(oid)?))
        }
    }
}

/// An OID's dotted form.
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut parts = vec![u64::from(first / 40).min(2), 0];
    parts[1] = u64::from(first) - parts[0] * 40;
    let mut value = 0u64;
    for &b in rest {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(value);
            value = 0;
        }
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// RFC 2253 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
