//! SQL text helpers. Identifiers are always quoted by [`quote_ident`]; values always go through
//! bind parameters, never through string formatting.

/// Quotes a Postgres identifier: wraps it in double quotes and doubles embedded ones.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes a Postgres string literal (for the few statements that take no bind parameters, such
/// as `CREATE ROLE ... PASSWORD`): wraps it in single quotes and doubles embedded ones.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
