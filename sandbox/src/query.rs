//! The query subset both simulated systems answer: Salesforce SOQL (`GET .../query?q=`) and
//! Zuora ZOQL (`POST /v1/action/query`): `SELECT f1, f2 FROM Object [WHERE field op value
//! [AND ...]]`, op in `= != > < >= <=`, pages of 2,000 behind a cursor.
//!
//! A query matches once, when it is made: the matching ids are kept in a cursor and each page
//! reads the next 2,000 of them (records read at page time), so paging a 100,000-record
//! result is linear, never a re-filter or re-sort per page. Cursors are few and short-lived,
//! as on the real systems (Salesforce keeps a handful open per user, Zuora expires a
//! `queryLocator` after 15 minutes): the oldest is dropped beyond `MAX_CURSORS`.
//!
//! Literals: `'text'` (single quotes, `\'` escapes), numbers, `true`/`false`, `null`, and
//! datetimes: SOQL writes them bare (`2024-01-01T00:00:00Z`), ZOQL quoted
//! (`'2024-01-01T00:00:00Z'`); a quoted value compared with a datetime field is read as one.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::VecDeque;

/// Records per page (both systems' default and maximum batch size).
pub const PAGE_SIZE: usize = 2_000;
/// Open cursors kept; an older locator is answered as invalid.
const MAX_CURSORS: usize = 32;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub fields: Vec<String>,
    pub object: String,
    pub conditions: Vec<Condition>,
    /// `ORDER BY Id [ASC]` (SOQL only; the sandbox keeps records in id order, so that is the
    /// one order it offers).
    pub order_by_id: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub field: String,
    pub op: Op,
    pub value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    DateTime(DateTime<Utc>),
    Null,
}

/// Why a query was refused (the message names the offending part).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct QueryError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, QueryError> {
    Err(QueryError(message.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Comma,
    Op(Op),
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err("unterminated string literal"),
                        Some('\\') => {
                            if let Some(next) = chars.get(i + 1) {
                                value.push(*next);
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            value.push(*other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => return err(format!("unexpected '{c}'")),
                };
                tokens.push(Token::Op(op));
                i += width;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], ',' | '\'' | '=' | '!' | '<' | '>')
                {
                    i += 1;
                }
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(tokens)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

fn is_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Parses `SELECT f1, f2 FROM Object [WHERE field op value [AND ...]]` (keywords in any case).
pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
    let tokens = tokenize(text)?;
    let mut at = 0;
    if !keyword(tokens.first(), "select") {
        return err("the query must start with SELECT");
    }
    at += 1;
    let mut fields = Vec::new();
    loop {
        match tokens.get(at) {
            Some(Token::Word(w)) if is_identifier(w) && !w.eq_ignore_ascii_case("from") => {
                fields.push(w.clone());
                at += 1;
            }
            _ => return err("expected a field name after SELECT or ','"),
        }
        if tokens.get(at) == Some(&Token::Comma) {
            at += 1;
        } else {
            break;
        }
    }
    if !keyword(tokens.get(at), "from") {
        return err("expected FROM after the field list");
    }
    at += 1;
    let object = match tokens.get(at) {
        Some(Token::Word(w)) if is_identifier(w) => w.clone(),
        _ => return err("expected an object name after FROM"),
    };
    at += 1;
    let mut conditions = Vec::new();
    if keyword(tokens.get(at), "where") {
        at += 1;
        loop {
            let field = match tokens.get(at) {
                Some(Token::Word(w)) if is_identifier(w) => w.clone(),
                _ => return err("expected a field name in WHERE"),
            };
            let op = match tokens.get(at + 1) {
                Some(Token::Op(op)) => *op,
                _ => return err(format!("expected an operator after {field}")),
            };
            let value = match tokens.get(at + 2) {
                Some(Token::Quoted(s)) => Literal::Text(s.clone()),
                Some(Token::Word(w)) => literal(w)?,
                _ => return err(format!("expected a value after {field}")),
            };
            conditions.push(Condition { field, op, value });
            at += 3;
            if keyword(tokens.get(at), "and") {
                at += 1;
            } else {
                break;
            }
        }
    }
    let mut order_by_id = false;
    if keyword(tokens.get(at), "order") && keyword(tokens.get(at + 1), "by") {
        if !keyword(tokens.get(at + 2), "id") {
            return err("ORDER BY: the sandbox orders by Id only");
        }
        order_by_id = true;
        at += 3;
        if keyword(tokens.get(at), "asc") {
            at += 1;
        }
    }
    if let Some(extra) = tokens.get(at) {
        return err(format!(
            "unexpected token {extra:?} (supported: SELECT ... FROM ... [WHERE a op v [AND ...]])"
        ));
    }
    Ok(Query {
        fields,
        object,
        conditions,
        order_by_id,
    })
}

fn literal(word: &str) -> Result<Literal, QueryError> {
    if word.eq_ignore_ascii_case("null") {
        return Ok(Literal::Null);
    }
    if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") {
        return Ok(Literal::Bool(word.eq_ignore_ascii_case("true")));
    }
    if let Some(at) = parse_datetime(word) {
        return Ok(Literal::DateTime(at));
    }
    word.parse::<f64>()
        .map(Literal::Number)
        .or_else(|_| err(format!("unexpected value {word}")))
}

/// RFC 3339, or Salesforce's `+0000` offset form.
pub(crate) fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

impl Condition {
    /// Whether a record's value satisfies the condition (`null` compares only by `=`/`!=`).
    pub fn matches(&self, value: Option<&Value>) -> bool {
        let value = value.filter(|v| !v.is_null());
        let ordering = match (&self.value, value) {
            (Literal::Null, v) => {
                return match self.op {
                    Op::Eq => v.is_none(),
                    Op::Ne => v.is_some(),
                    _ => false,
                }
            }
            (_, None) => return self.op == Op::Ne,
            (Literal::DateTime(at), Some(v)) => {
                v.as_str().and_then(parse_datetime).map(|have| have.cmp(at))
            }
            (Literal::Text(text), Some(v)) => {
                match (v.as_str().and_then(parse_datetime), parse_datetime(text)) {
                    (Some(have), Some(want)) => Some(have.cmp(&want)),
                    _ => Some(value_text(v).as_str().cmp(text.as_str())),
                }
            }
            (Literal::Number(n), Some(v)) => v.as_f64().and_then(|have| have.partial_cmp(n)),
            (Literal::Bool(b), Some(v)) => v.as_bool().map(|have| have.cmp(b)),
        };
        let Some(ordering) = ordering else {
            return self.op == Op::Ne;
        };
        match self.op {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Gt => ordering == Ordering::Greater,
            Op::Lt => ordering == Ordering::Less,
            Op::Ge => ordering != Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The matching ids of one query, paged.
pub(crate) struct Cursor {
    pub locator: String,
    pub object: String,
    pub fields: Vec<String>,
    pub ids: Vec<String>,
}

/// Open cursors of one system.
#[derive(Default)]
pub(crate) struct Cursors {
    next: u64,
    open: VecDeque<Cursor>,
}

impl Cursors {
    /// Keeps a new cursor and returns its locator (`<prefix><n>`).
    pub fn open(&mut self, prefix: &str, query: &Query, ids: Vec<String>) -> String {
        self.next += 1;
        let locator = format!("{prefix}{:013}", self.next);
        if self.open.len() >= MAX_CURSORS {
            self.open.pop_front();
        }
        self.open.push_back(Cursor {
            locator: locator.clone(),
            object: query.object.clone(),
            fields: query.fields.clone(),
            ids,
        });
        locator
    }

    pub fn get(&self, locator: &str) -> Option<&Cursor> {
        self.open.iter().find(|c| c.locator == locator)
    }

    /// Drops a cursor that has been read to its end.
    pub fn close(&mut self, locator: &str) {
        self.open.retain(|c| c.locator != locator);
    }
}

/// The field of a record named case-insensitively (both languages ignore case in names):
/// `(canonical name, value)`.
pub(crate) fn field<'a>(
    record: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Option<(&'a String, &'a Value)> {
    record
        .get_key_value(name)
        .or_else(|| record.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_subset_in_any_case() {
        let q = parse("select Id, Name FROM Account where SystemModstamp > 2024-01-01T00:00:00Z and Name != 'O\\'Brien'").unwrap();
        assert_eq!(q.fields, ["Id", "Name"]);
        assert_eq!(q.object, "Account");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[1].value, Literal::Text("O'Brien".into()));
        assert!(matches!(q.conditions[0].value, Literal::DateTime(_)));
    }

    #[test]
    fn refuses_what_it_does_not_support_naming_the_part() {
        for (text, says) in [
            ("SELECT FROM Account", "field name"),
            ("SELECT Id Account", "FROM"),
            ("SELECT Id FROM Account WHERE Name", "operator"),
            ("SELECT Id FROM Account ORDER BY Name", "Id only"),
            ("SELECT Id FROM Account LIMIT 5", "unexpected token"),
            ("SELECT Id FROM Account WHERE Name = 'x", "unterminated"),
            ("DELETE Account", "SELECT"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn datetimes_compare_as_instants_quoted_or_not() {
        let after = |lit: &str| {
            parse(&format!("SELECT Id FROM A WHERE D > {lit}"))
                .unwrap()
                .conditions[0]
                .clone()
        };
        let value = json!("2024-01-01T00:00:01.000+0000");
        assert!(after("2024-01-01T00:00:00Z").matches(Some(&value)));
        assert!(after("'2024-01-01T00:00:00+00:00'").matches(Some(&value)));
        assert!(!after("2024-01-01T00:00:01Z").matches(Some(&value)));
        let null = parse("SELECT Id FROM A WHERE D = null").unwrap().conditions[0].clone();
        assert!(null.matches(None) && !null.matches(Some(&value)));
    }
}
