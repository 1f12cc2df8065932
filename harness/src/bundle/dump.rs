//! A plain-format `pg_dump -n <schema>` read as data, never as a script: split into statements
//! (quotes, dollar quotes, comments and `COPY … FROM stdin` data respected), each statement
//! checked against what pg_dump emits for one schema, and the schema renamed in qualified names.
//!
//! Nothing of a dump is handed to psql: psql meta-commands (`\!`, `\connect`, `\copy`, …) are
//! refused here, and the statements that pass run over a plain connection as the new tenant's
//! own unprivileged role ([`super::restore`]). So the checks here are the first of two walls:
//! a statement that slipped through still runs without any right outside the tenant's schema.
//!
//! Refused: other schemas or `public` in any qualified name, roles (`CREATE/ALTER ROLE`,
//! `SET ROLE`, `SET SESSION AUTHORIZATION`), `SET search_path` to anything but `''`, `COPY … TO`
//! / `FROM PROGRAM` / `FROM '<file>'`, `DROP`, `DO`, transaction control, extensions, databases,
//! any `SELECT` other than pg_dump's `set_config`/`setval`. Skipped (and counted): ownership
//! and privileges (`OWNER TO`, `GRANT`, `REVOKE`, `ALTER DEFAULT PRIVILEGES`), the schema's own
//! `CREATE SCHEMA`/`COMMENT ON SCHEMA` (the tenant contract creates it), `\restrict` lines.

use anyhow::{bail, Result};

use crate::sql::quote_ident;

/// One executable piece of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A SQL statement (schema renamed), ending in `;`.
    Sql {
        /// Line of the dump it starts on.
        line: usize,
        /// The statement to run.
        text: String,
    },
    /// `COPY <table> (…) FROM stdin;` and its rows (text format, without the `\.` line).
    Copy {
        /// Line of the dump it starts on.
        line: usize,
        /// The COPY statement (schema renamed).
        text: String,
        /// The table, as `schema.table` of the dump (for row counts).
        table: String,
        /// The data rows, each ending in `\n`.
        data: String,
    },
}

/// A dump checked and rewritten for a new schema.
#[derive(Debug, Clone, Default)]
pub struct CheckedDump {
    /// The schema the dump was made of.
    pub source_schema: String,
    /// What to run, in order.
    pub items: Vec<Item>,
    /// Statements left out (ownership, privileges, the schema's own creation), by kind.
    pub skipped: std::collections::BTreeMap<String, usize>,
    /// `alembic_version` of the dump, when it has that table.
    pub alembic_revision: Option<String>,
    /// Rows per table (the dump's `schema.table` names).
    pub rows: std::collections::BTreeMap<String, u64>,
}

/// Raw pieces of the text before any judgement.
#[derive(Debug)]
enum Raw<'a> {
    Meta { line: usize, text: &'a str },
    Stmt { line: usize, text: &'a str },
    CopyData { data: &'a str },
}

/// A lexical token of a statement (outside strings, comments and dollar bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Unquoted identifier or keyword, lower-cased, with its byte span.
    Word(String, usize, usize),
    /// Quoted identifier (unescaped), with its byte span.
    Quoted(String, usize, usize),
    /// String literal (unescaped), with its byte span.
    Str(String, usize, usize),
    /// A dollar-quoted body (function source): never inspected.
    Dollar,
    /// Any other character.
    Punct(char, usize),
}

fn err_at(line: usize, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("line {line}: {message}")
}

/// Splits the dump into meta-command lines, statements and COPY data.
fn split(text: &str) -> Result<Vec<Raw<'_>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let line_of = |from: usize, to: usize| text[from..to].matches('\n').count();
    while i < bytes.len() {
        // Skip whitespace and comments between statements.
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            if c == b'\n' {
                line += 1;
            }
            i += 1;
            continue;
        }
        if text[i..].starts_with("--") {
            let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            i = end;
            continue;
        }
        if text[i..].starts_with("/*") {
            let end = skip_block_comment(text, i)
                .ok_or_else(|| err_at(line, "unterminated /* comment"))?;
            line += line_of(i, end);
            i = end;
            continue;
        }
        if c == b'\\' {
            let end = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            out.push(Raw::Meta {
                line,
                text: text[i..end].trim_end(),
            });
            i = end;
            continue;
        }
        // A statement: up to the first `;` outside quotes, comments and dollar quotes.
        let start = i;
        let start_line = line;
        let end = statement_end(text, i).ok_or_else(|| {
            err_at(
                start_line,
                "statement has no terminating ';' (the dump is truncated or not a pg_dump plain dump)",
            )
        })?;
        line += line_of(start, end);
        let stmt = &text[start..end];
        i = end;
        out.push(Raw::Stmt {
            line: start_line,
            text: stmt,
        });
        if is_copy_from_stdin(stmt) {
            // Rows start on the next line and end at a line holding only `\.`.
            let data_start = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            line += 1;
            let mut pos = data_start;
            loop {
                if pos >= bytes.len() {
                    bail!(
                        "line {start_line}: COPY data has no terminating \\. line (the dump is truncated)"
                    );
                }
                let eol = text[pos..].find('\n').map_or(bytes.len(), |n| pos + n);
                if &text[pos..eol] == "\\." {
                    out.push(Raw::CopyData {
                        data: &text[data_start..pos],
                    });
                    line += 1;
                    i = eol;
                    break;
                }
                line += 1;
                pos = eol + 1;
            }
        }
    }
    Ok(out)
}

fn skip_block_comment(text: &str, start: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = start;
    while i < text.len() {
        if text[i..].starts_with("/*") {
            depth += 1;
            i += 2;
        } else if text[i..].starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return Some(i);
            }
        } else {
            i += text[i..].chars().next()?.len_utf8();
        }
    }
    None
}

/// The dollar-quote tag starting at `i` (`$tag$` or `$$`), if any.
fn dollar_tag(text: &str, i: usize) -> Option<&str> {
    let rest = &text[i + 1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let ok = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    ok.then(|| &text[i..i + end + 2])
}

/// Byte offset just past the `;` ending the statement starting at `start`.
fn statement_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b';' => return Some(i + 1),
            b'\'' => i = skip_string(text, i, string_is_escaped(text, i))?,
            b'"' => i = skip_quoted(text, i, b'"')?,
            b'-' if text[i..].starts_with("--") => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n)
            }
            b'/' if text[i..].starts_with("/*") => i = skip_block_comment(text, i)?,
            b'$' => match dollar_tag(text, i) {
                Some(tag) if !prev_is_word_char(text, i) => {
                    let body = i + tag.len();
                    let close = text[body..].find(tag)?;
                    i = body + close + tag.len();
                }
                _ => i += 1,
            },
            _ => i += 1,
        }
    }
    None
}

fn prev_is_word_char(text: &str, i: usize) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Whether the quote at `i` opens an `E'…'` string (backslash escapes).
fn string_is_escaped(text: &str, i: usize) -> bool {
    let before = &text[..i];
    before.ends_with(['E', 'e'])
        && !before[..before.len() - 1]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn skip_string(text: &str, start: usize, escapes: bool) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if escapes => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_quoted(text: &str, start: usize, quote: u8) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn tokens(stmt: &str) -> Option<Vec<Tok>> {
    let bytes = stmt.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if stmt[i..].starts_with("--") {
            i = stmt[i..].find('\n').map_or(bytes.len(), |n| i + n);
        } else if stmt[i..].starts_with("/*") {
            i = skip_block_comment(stmt, i)?;
        } else if c == b'\'' {
            let escaped = string_is_escaped(stmt, i);
            let end = skip_string(stmt, i, escaped)?;
            let inner = &stmt[i + 1..end - 1];
            let value = if escaped {
                inner.to_string()
            } else {
                inner.replace("''", "'")
            };
            // An E'' prefix was tokenised as a word: fold it into the string.
            if escaped {
                if let Some(Tok::Word(w, _, _)) = out.last() {
                    if w == "e" {
                        out.pop();
                    }
                }
            }
            out.push(Tok::Str(value, i, end));
            i = end;
        } else if c == b'"' {
            let end = skip_quoted(stmt, i, b'"')?;
            out.push(Tok::Quoted(
                stmt[i + 1..end - 1].replace("\"\"", "\""),
                i,
                end,
            ));
            i = end;
        } else if c == b'$' && !prev_is_word_char(stmt, i) && dollar_tag(stmt, i).is_some() {
            let tag = dollar_tag(stmt, i)?;
            let body = i + tag.len();
            let close = stmt[body..].find(tag)?;
            out.push(Tok::Dollar);
            i = body + close + tag.len();
        } else if stmt[i..]
            .chars()
            .next()
            .is_some_and(|ch| ch == '_' || ch.is_alphanumeric())
        {
            let start = i;
            while i < bytes.len() {
                let ch = stmt[i..].chars().next()?;
                if ch.is_alphanumeric() || ch == '_' || ch == '$' {
                    i += ch.len_utf8();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(stmt[start..i].to_lowercase(), start, i));
        } else {
            let ch = stmt[i..].chars().next()?;
            out.push(Tok::Punct(ch, i));
            i += ch.len_utf8();
        }
    }
    Some(out)
}

fn is_copy_from_stdin(stmt: &str) -> bool {
    let Some(toks) = tokens(stmt) else {
        return false;
    };
    let words: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Word(w, ..) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    words.first() == Some(&"copy") && words.windows(2).any(|w| w[0] == "from" && w[1] == "stdin")
}

/// Name a token stands for as an identifier (words lower-cased, quoted ones verbatim).
fn ident(tok: &Tok) -> Option<&str> {
    match tok {
        Tok::Word(w, ..) | Tok::Quoted(w, ..) => Some(w),
        _ => None,
    }
}

/// Settings a pg_dump plain dump sets, with the values that are harmless here (`None`: any).
const ALLOWED_SETTINGS: &[(&str, Option<&[&str]>)] = &[
    ("statement_timeout", None),
    ("lock_timeout", None),
    ("idle_in_transaction_session_timeout", None),
    ("transaction_timeout", None),
    ("client_encoding", Some(&["utf8"])),
    ("standard_conforming_strings", Some(&["on"])),
    ("check_function_bodies", None),
    ("xmloption", None),
    ("client_min_messages", None),
    ("row_security", Some(&["off"])),
    ("default_tablespace", Some(&[""])),
    ("default_table_access_method", Some(&["heap"])),
    ("default_with_oids", Some(&["false"])),
];

/// Checks a plain dump of one schema and rewrites it for `new_schema`. `foreign_schemas` are
/// schemas of the target database that must never be named (other tenants; `public` and the
/// system schemas are always refused).
pub fn check(text: &str, new_schema: &str, foreign_schemas: &[String]) -> Result<CheckedDump> {
    let raw = split(text)?;
    let source = source_schema(&raw)?;
    let mut dump = CheckedDump {
        source_schema: source.clone(),
        ..CheckedDump::default()
    };
    let mut pending_copy: Option<(usize, String, String)> = None;
    for piece in raw {
        match piece {
            Raw::Meta { line, text } => {
                let command = text.split_whitespace().next().unwrap_or("\\");
                if command == "\\restrict" || command == "\\unrestrict" {
                    *dump.skipped.entry(command.to_string()).or_default() += 1;
                    continue;
                }
                bail!(
                    "line {line}: psql meta-command {command} is not allowed in a tenant dump \
                     (only pg_dump's \\restrict/\\unrestrict); make the dump with `pg_dump -n <schema>`"
                );
            }
            Raw::CopyData { data } => {
                let (line, text, table) = pending_copy
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("COPY data without a COPY statement"))?;
                let rows = data.lines().count() as u64;
                if table.ends_with(".alembic_version") {
                    dump.alembic_revision = data
                        .lines()
                        .next()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty());
                }
                *dump.rows.entry(table.clone()).or_default() += rows;
                dump.items.push(Item::Copy {
                    line,
                    text,
                    table,
                    data: data.to_string(),
                });
            }
            Raw::Stmt { line, text } => {
                match judge(text, &source, new_schema, foreign_schemas)
                    .map_err(|e| err_at(line, e))?
                {
                    Verdict::Run(sql) => dump.items.push(Item::Sql { line, text: sql }),
                    Verdict::Skip(kind) => *dump.skipped.entry(kind).or_default() += 1,
                    Verdict::Copy(sql, table) => {
                        pending_copy = Some((line, sql, table));
                    }
                }
            }
        }
    }
    if pending_copy.is_some() {
        bail!("the dump ends inside a COPY (truncated)");
    }
    Ok(dump)
}

/// The schema the dump creates: exactly one `CREATE SCHEMA`.
fn source_schema(raw: &[Raw<'_>]) -> Result<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for piece in raw {
        if let Raw::Stmt { line, text } = piece {
            let toks = tokens(text).ok_or_else(|| err_at(*line, "cannot read this statement"))?;
            let words: Vec<Option<&str>> = toks.iter().map(ident).collect();
            if matches!(
                (&toks.first(), &toks.get(1)),
                (Some(Tok::Word(a, ..)), Some(Tok::Word(b, ..))) if a == "create" && b == "schema"
            ) {
                let name = match words.get(2) {
                    Some(Some("if")) => words.get(5).copied().flatten(),
                    other => other.copied().flatten(),
                };
                let name = name.ok_or_else(|| err_at(*line, "CREATE SCHEMA without a name"))?;
                found.push((*line, name.to_string()));
            }
        }
    }
    match found.as_slice() {
        [(_, name)] => Ok(name.clone()),
        [] => bail!(
            "the dump creates no schema: make it with `pg_dump -n '<schema>'` of one tenant schema \
             (plain format)"
        ),
        [(l1, a), (l2, b), ..] => bail!(
            "the dump creates more than one schema ({a} on line {l1}, {b} on line {l2}); dump one \
             tenant schema with `pg_dump -n '<schema>'`"
        ),
    }
}

enum Verdict {
    Run(String),
    Skip(String),
    Copy(String, String),
}

/// Schemas that are never a tenant's.
fn is_system_schema(name: &str) -> bool {
    name == "public" || name == "information_schema" || name.starts_with("pg_")
}

fn judge(stmt: &str, source: &str, new_schema: &str, foreign: &[String]) -> Result<Verdict> {
    let toks = tokens(stmt).ok_or_else(|| anyhow::anyhow!("cannot read this statement"))?;
    let word = |n: usize| match toks.get(n) {
        Some(Tok::Word(w, ..)) => w.as_str(),
        _ => "",
    };
    let words_all: Vec<&str> = toks
        .iter()
        .filter_map(|t| match t {
            Tok::Word(w, ..) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    let has_words = |seq: &[&str]| words_all.windows(seq.len()).any(|w| w == seq);
    let first = word(0);
    let short: String = stmt
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    match first {
        "set" => return judge_set(&toks, stmt, &short),
        "select" => return judge_select(&toks, stmt, source, new_schema),
        "grant" | "revoke" => return Ok(Verdict::Skip(first.to_uppercase())),
        "comment" if word(2) == "schema" => return Ok(Verdict::Skip("COMMENT ON SCHEMA".into())),
        "create" if word(1) == "schema" => return Ok(Verdict::Skip("CREATE SCHEMA".into())),
        "alter" if word(1) == "schema" && has_words(&["owner", "to"]) => {
            return Ok(Verdict::Skip("OWNER TO".into()))
        }
        "alter" if word(1) == "default" && word(2) == "privileges" => {
            return Ok(Verdict::Skip("ALTER DEFAULT PRIVILEGES".into()))
        }
        "alter" if has_words(&["owner", "to"]) => return Ok(Verdict::Skip("OWNER TO".into())),
        _ => {}
    }
    let allowed = match first {
        "create" => {
            let mut n = 1;
            if word(n) == "or" && word(n + 1) == "replace" {
                n += 2;
            }
            while matches!(
                word(n),
                "unique" | "unlogged" | "materialized" | "constraint" | "recursive"
            ) {
                n += 1;
            }
            matches!(
                word(n),
                "table"
                    | "type"
                    | "sequence"
                    | "function"
                    | "procedure"
                    | "index"
                    | "trigger"
                    | "view"
                    | "domain"
                    | "aggregate"
                    | "policy"
                    | "collation"
                    | "operator"
                    | "statistics"
                    | "rule"
            )
        }
        "alter" => matches!(
            word(1),
            "table"
                | "sequence"
                | "type"
                | "function"
                | "procedure"
                | "index"
                | "view"
                | "materialized"
                | "domain"
                | "aggregate"
        ),
        "comment" => word(1) == "on",
        "copy" => {
            if !has_words(&["from", "stdin"]) || has_words(&["program"]) {
                bail!("only `COPY … FROM stdin` is allowed (not COPY TO, FROM a file or PROGRAM): {short}");
            }
            true
        }
        "insert" => word(1) == "into",
        _ => false,
    };
    if !allowed {
        bail!(
            "statement not allowed in a tenant dump: {short} … (a pg_dump -n of one schema has \
             only SET, CREATE/ALTER/COMMENT of the schema's objects, COPY FROM stdin and setval)"
        );
    }
    // What INSERT and COPY write to must be a table of the dumped schema itself (pg_catalog is
    // only allowed as a qualifier of types and functions read).
    let target = match first {
        "insert" => Some(2),
        "copy" => Some(1),
        _ => None,
    };
    if let Some(at) = target {
        let qualifier = match (toks.get(at), toks.get(at + 1)) {
            (Some(t), Some(Tok::Punct('.', _))) => ident(t).unwrap_or(""),
            _ => bail!(
                "{} into an unqualified table: {short}",
                first.to_uppercase()
            ),
        };
        if qualifier != source {
            bail!(
                "the dump writes to schema {qualifier:?}, outside the tenant's schema {source:?}: {short}"
            );
        }
    }
    if first == "create" && has_words(&["security", "definer"]) {
        bail!("SECURITY DEFINER functions are not imported: {short}");
    }
    let sql = rewrite_qualifiers(stmt, &toks, source, new_schema, foreign)?;
    if first == "copy" {
        let table = match (toks.get(1), toks.get(2), toks.get(3)) {
            (Some(s), Some(Tok::Punct('.', _)), Some(t)) => {
                format!("{}.{}", ident(s).unwrap_or(""), ident(t).unwrap_or(""))
            }
            _ => bail!("COPY of an unqualified table: {short}"),
        };
        return Ok(Verdict::Copy(sql, table));
    }
    Ok(Verdict::Run(sql))
}

fn judge_set(toks: &[Tok], stmt: &str, short: &str) -> Result<Verdict> {
    let name = match toks.get(1) {
        Some(Tok::Word(w, ..)) if w == "session" || w == "local" => toks.get(2).and_then(ident),
        other => other.and_then(ident),
    }
    .unwrap_or("");
    let value: Vec<String> = toks
        .iter()
        .skip_while(|t| {
            !matches!(t, Tok::Punct('=', _)) && !matches!(t, Tok::Word(w, ..) if w == "to")
        })
        .skip(1)
        .filter_map(|t| match t {
            Tok::Word(w, ..) | Tok::Quoted(w, ..) | Tok::Str(w, ..) => Some(w.to_lowercase()),
            Tok::Punct(';', _) => None,
            Tok::Punct(c, _) => Some(c.to_string()),
            Tok::Dollar => Some("$".into()),
        })
        .collect();
    let Some((_, values)) = ALLOWED_SETTINGS.iter().find(|(n, _)| *n == name) else {
        bail!("setting {name:?} may not be changed by a tenant dump (search_path, role and session authorization are the importer's): {short}");
    };
    if let Some(values) = values {
        if value.len() != 1 || !values.contains(&value[0].as_str()) {
            bail!("SET {name} to {value:?} is not allowed (expected one of {values:?}): {short}");
        }
    }
    // Harmless settings run: they shape how the following statements are read.
    Ok(Verdict::Run(stmt.to_string()))
}

/// pg_dump's `SELECT pg_catalog.set_config('search_path', '', false);` and
/// `SELECT pg_catalog.setval('<schema>.<seq>', N, bool);` — nothing else.
fn judge_select(toks: &[Tok], stmt: &str, source: &str, new_schema: &str) -> Result<Verdict> {
    let short: String = stmt
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    let func = match (toks.get(1), toks.get(2), toks.get(3), toks.get(4)) {
        (
            Some(Tok::Word(s, ..)),
            Some(Tok::Punct('.', _)),
            Some(Tok::Word(f, ..)),
            Some(Tok::Punct('(', _)),
        ) if s == "pg_catalog" => f.as_str(),
        _ => bail!("SELECT is allowed only for pg_dump's set_config/setval: {short}"),
    };
    let args: Vec<&Tok> = toks[5..]
        .iter()
        .filter(|t| !matches!(t, Tok::Punct(',', _)))
        .collect();
    let tail_ok = |n: usize| {
        matches!(args.get(n), Some(Tok::Punct(')', _)))
            && matches!(args.get(n + 1), Some(Tok::Punct(';', _)) | None)
            && args.len() <= n + 2
    };
    match func {
        "set_config" => {
            let ok = matches!(args.first(), Some(Tok::Str(a, ..)) if a == "search_path")
                && matches!(args.get(1), Some(Tok::Str(b, ..)) if b.is_empty())
                && matches!(args.get(2), Some(Tok::Word(c, ..)) if c == "false")
                && tail_ok(3);
            if !ok {
                bail!("only set_config('search_path', '', false) is allowed: {short}");
            }
            Ok(Verdict::Run(stmt.to_string()))
        }
        "setval" => {
            let (Some(Tok::Str(name, start, end)), Some(Tok::Punct(..) | Tok::Word(..))) =
                (args.first(), args.get(1))
            else {
                bail!("setval must name a sequence of the dump's schema: {short}");
            };
            let number_ok = args[1..]
                .iter()
                .take_while(|t| !matches!(t, Tok::Punct(')', _)))
                .all(|t| match t {
                    Tok::Word(w, ..) => {
                        w == "true" || w == "false" || w.chars().all(|c| c.is_ascii_digit())
                    }
                    Tok::Punct('-', _) => true,
                    _ => false,
                });
            if !number_ok {
                bail!("setval takes a number and true/false here: {short}");
            }
            // The sequence name is a qualified name inside a string: `"schema".seq`.
            let seq_toks = tokens(name).ok_or_else(|| anyhow::anyhow!("bad setval name"))?;
            match seq_toks.as_slice() {
                [s, Tok::Punct('.', _), t] if ident(s) == Some(source) && ident(t).is_some() => {
                    let renamed = format!(
                        "{}.{}",
                        quote_ident(new_schema),
                        quote_ident(ident(t).unwrap_or_default())
                    );
                    Ok(Verdict::Run(format!(
                        "{}{}{}",
                        &stmt[..*start],
                        crate::sql::quote_literal(&renamed),
                        &stmt[*end..]
                    )))
                }
                _ => bail!("setval of a sequence outside schema {source}: {short}"),
            }
        }
        _ => bail!("SELECT is allowed only for pg_dump's set_config/setval: {short}"),
    }
}

/// Renames `source.` qualifiers to the new schema and refuses any qualifier naming `public`, a
/// system schema (pg_catalog excepted) or another schema of the target database.
fn rewrite_qualifiers(
    stmt: &str,
    toks: &[Tok],
    source: &str,
    new_schema: &str,
    foreign: &[String],
) -> Result<String> {
    let mut out = String::with_capacity(stmt.len());
    let mut copied = 0;
    for (n, tok) in toks.iter().enumerate() {
        // `'"schema".seq'::regclass` (column defaults: nextval of a serial's sequence) names an
        // object inside a string literal.
        if let Tok::Str(literal, start, end) = tok {
            let is_regclass = matches!(
                (toks.get(n + 1), toks.get(n + 2), toks.get(n + 3)),
                (Some(Tok::Punct(':', _)), Some(Tok::Punct(':', _)), Some(Tok::Word(w, ..))) if w == "regclass"
            );
            if !is_regclass {
                continue;
            }
            let inner = tokens(literal).unwrap_or_default();
            if let [s, Tok::Punct('.', _), t] = inner.as_slice() {
                let (Some(schema), Some(object)) = (ident(s), ident(t)) else {
                    continue;
                };
                if schema == source {
                    out.push_str(&stmt[copied..*start]);
                    out.push_str(&crate::sql::quote_literal(&format!(
                        "{}.{}",
                        quote_ident(new_schema),
                        quote_ident(object)
                    )));
                    copied = *end;
                } else if schema != "pg_catalog" {
                    bail!(
                        "the dump refers to schema {schema:?}, outside the tenant's schema {source:?}: \
                         tenant dumps may only touch their own schema"
                    );
                }
            }
            continue;
        }
        let (name, start, end) = match tok {
            Tok::Word(w, s, e) | Tok::Quoted(w, s, e) => (w.as_str(), *s, *e),
            _ => continue,
        };
        let qualifies = matches!(toks.get(n + 1), Some(Tok::Punct('.', _)));
        let after_dot = n > 0 && matches!(toks.get(n - 1), Some(Tok::Punct('.', _)));
        if !qualifies || after_dot {
            continue;
        }
        if name == source {
            out.push_str(&stmt[copied..start]);
            out.push_str(&quote_ident(new_schema));
            copied = end;
        } else if name == "pg_catalog" {
            continue;
        } else if is_system_schema(name) || foreign.iter().any(|f| f == name) {
            bail!(
                "the dump refers to schema {name:?}, outside the tenant's schema {source:?}: \
                 tenant dumps may only touch their own schema"
            );
        }
    }
    out.push_str(&stmt[copied..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "--\n-- PostgreSQL database dump\n--\n\\restrict abc123\n\nSET statement_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\n\nCREATE SCHEMA \"acme-1a2b3c\";\n\nALTER SCHEMA \"acme-1a2b3c\" OWNER TO \"acme-1a2b3c\";\n";

    fn dump(body: &str) -> String {
        format!("{HEADER}{body}\n\\unrestrict abc123\n")
    }

    fn ok(body: &str) -> CheckedDump {
        check(&dump(body), "repro-0a0b0c", &["other-ffffff".into()]).unwrap()
    }

    fn refused(body: &str) -> String {
        format!(
            "{:#}",
            check(&dump(body), "repro-0a0b0c", &["other-ffffff".into()]).unwrap_err()
        )
    }

    #[test]
    fn a_pg_dump_is_renamed_and_counted() {
        let d = ok("CREATE TABLE \"acme-1a2b3c\".alembic_version (version_num character varying(32) NOT NULL);\n\
             ALTER TABLE \"acme-1a2b3c\".alembic_version OWNER TO \"acme-1a2b3c\";\n\
             CREATE TYPE \"acme-1a2b3c\".kind AS ENUM ('a', 'b;c');\n\
             CREATE FUNCTION \"acme-1a2b3c\".f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.x := 'public.y;'; RETURN NEW; END $$;\n\
             COPY \"acme-1a2b3c\".alembic_version (version_num) FROM stdin;\ne5a7c9b1d3f2\n\\.\n\
             COPY \"acme-1a2b3c\".\"user\" (id, username) FROM stdin;\n1\ta;b\n2\t\\N\n\\.\n\
             SELECT pg_catalog.setval('\"acme-1a2b3c\".flow_seq', 12, true);\n\
             ALTER TABLE ONLY \"acme-1a2b3c\".flow ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES \"acme-1a2b3c\".\"user\"(id);\n\
             ALTER TABLE ONLY \"acme-1a2b3c\".casbin_rule ALTER COLUMN id SET DEFAULT nextval('\"acme-1a2b3c\".casbin_rule_id_seq'::regclass);\n\
             GRANT ALL ON TABLE \"acme-1a2b3c\".flow TO \"acme-1a2b3c\";\n");
        assert_eq!(d.source_schema, "acme-1a2b3c");
        assert_eq!(d.alembic_revision.as_deref(), Some("e5a7c9b1d3f2"));
        assert_eq!(d.rows["acme-1a2b3c.user"], 2);
        let all: String = d
            .items
            .iter()
            .map(|i| match i {
                Item::Sql { text, .. } | Item::Copy { text, .. } => text.clone(),
            })
            .collect();
        assert!(!all.contains("acme-1a2b3c"), "{all}");
        assert!(all.contains("\"repro-0a0b0c\".\"user\"(id)"), "{all}");
        assert!(
            all.contains("setval('\"repro-0a0b0c\".\"flow_seq\"', 12, true)"),
            "{all}"
        );
        assert!(
            all.contains("nextval('\"repro-0a0b0c\".\"casbin_rule_id_seq\"'::regclass)"),
            "{all}"
        );
        // Function bodies are left as written.
        assert!(all.contains("NEW.x := 'public.y;'"), "{all}");
        assert_eq!(d.skipped["OWNER TO"], 2);
        assert_eq!(d.skipped["GRANT"], 1);
        assert_eq!(d.skipped["CREATE SCHEMA"], 1);
        let copy = d.items.iter().find_map(|i| match i {
            Item::Copy { data, table, .. } if table.ends_with(".user") => Some(data.clone()),
            _ => None,
        });
        assert_eq!(copy.as_deref(), Some("1\ta;b\n2\t\\N\n"));
    }

    #[test]
    fn hostile_dumps_are_refused_with_the_line() {
        for (body, needle) in [
            ("CREATE TABLE public.x (a int);", "schema \"public\""),
            ("CREATE TABLE \"other-ffffff\".x (a int);", "other-ffffff"),
            ("INSERT INTO pg_catalog.pg_authid VALUES (1);", "pg_catalog"),
            (
                "ALTER TABLE ONLY \"acme-1a2b3c\".t ALTER COLUMN id SET DEFAULT nextval('\"other-ffffff\".s'::regclass);",
                "other-ffffff",
            ),
            ("SET search_path = public;", "search_path"),
            ("SET ROLE postgres;", "\"role\""),
            ("SET SESSION AUTHORIZATION postgres;", "authorization"),
            ("ALTER ROLE \"acme-1a2b3c\" SET search_path = public;", "not allowed"),
            ("CREATE ROLE evil SUPERUSER;", "not allowed"),
            ("COPY \"acme-1a2b3c\".t TO PROGRAM 'id';", "COPY"),
            ("COPY \"acme-1a2b3c\".t FROM '/etc/passwd';", "COPY"),
            ("\\! id", "meta-command \\!"),
            ("\\connect other", "meta-command \\connect"),
            ("DROP TABLE \"acme-1a2b3c\".t;", "not allowed"),
            ("DO $$ BEGIN PERFORM 1; END $$;", "not allowed"),
            ("SELECT pg_catalog.pg_read_file('/etc/passwd');", "set_config/setval"),
            ("SELECT pg_catalog.set_config('search_path', 'public', false);", "set_config"),
            ("SELECT pg_catalog.setval('public.s', 1, true);", "outside schema"),
            ("CREATE EXTENSION plpython3u;", "not allowed"),
            ("BEGIN;", "not allowed"),
            ("CREATE FUNCTION \"acme-1a2b3c\".f() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;", "SECURITY DEFINER"),
            ("CREATE TABLE \"acme-1a2b3c\".t (a int", "terminating ';'"),
            ("COPY \"acme-1a2b3c\".t (a) FROM stdin;\n1\n2\n", "truncated"),
            ("CREATE TABLE \"acme-1a2b3c\".t (a public.vector(3));", "schema \"public\""),
        ] {
            let e = refused(body);
            assert!(e.starts_with("line "), "{body}: {e}");
            assert!(e.contains(needle), "{body}: {e}");
        }
        let e = format!(
            "{:#}",
            check("CREATE TABLE x (a int);", "r-000000", &[]).unwrap_err()
        );
        assert!(e.contains("creates no schema"), "{e}");
        let e = format!(
            "{:#}",
            check("CREATE SCHEMA a; CREATE SCHEMA b;", "r-000000", &[]).unwrap_err()
        );
        assert!(e.contains("more than one schema"), "{e}");
    }

    #[test]
    fn quotes_comments_and_dollars_do_not_split_statements() {
        let d = ok("COMMENT ON TABLE \"acme-1a2b3c\".t IS 'a; b -- c /* d';\n\
             /* block; comment */ CREATE VIEW \"acme-1a2b3c\".v AS SELECT t.a FROM \"acme-1a2b3c\".t t;\n\
             CREATE FUNCTION \"acme-1a2b3c\".g() RETURNS text LANGUAGE sql AS $body$ SELECT ';' $body$;\n\
             COMMENT ON COLUMN \"acme-1a2b3c\".t.a IS E'it\\'s; fine';\n");
        assert_eq!(
            d.items
                .iter()
                .filter(|i| matches!(i, Item::Sql { text, .. } if text.contains("repro-0a0b0c")))
                .count(),
            4
        );
    }
}
