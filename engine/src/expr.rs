//! The expression language inside `${ ... }`: syntax tree, template splitting and a small
//! precedence-climbing parser. Evaluation lives in [`crate::eval`].

use crate::diag::{Diagnostic, Span};
use crate::value::Value;

/// An expression with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The forms an expression takes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A literal value (also every TOML scalar that is not a template).
    Lit(Value),
    /// A string with `${}` parts; its value is text.
    Template(Vec<TemplatePart>),
    /// A bare name: `var`, `each`, `clusters`, `data` or a resource type.
    Ident(String),
    /// Steps taken from a base: `.attr`, `[index]`, `.*`.
    Traverse(Box<Expr>, Vec<Step>),
    /// `name(args)`.
    Call(String, Vec<Expr>),
    /// `[a, b]` or a TOML array.
    List(Vec<Expr>),
    /// `{ k = v }` or a TOML table; keys keep their spans.
    Map(Vec<(String, Span, Expr)>),
    /// `!x`, `-x`.
    Unary(UnOp, Box<Expr>),
    /// `a op b`.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// One part of a template string.
#[derive(Clone, Debug, PartialEq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// An interpolated expression.
    Interp(Expr),
}

/// One traversal step.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `.name`
    Attr(String, Span),
    /// `[expr]`
    Index(Expr, Span),
    /// `.*` or `[*]`
    Splat(Span),
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `!`
    Not,
    /// `-`
    Neg,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl Expr {
    /// A literal at a span.
    pub fn lit(v: Value, span: Span) -> Expr {
        Expr { kind: ExprKind::Lit(v), span }
    }

    /// Visits this expression and every sub-expression, outermost first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Lit(_) | ExprKind::Ident(_) => {}
            ExprKind::Template(parts) => {
                for p in parts {
                    if let TemplatePart::Interp(e) = p {
                        e.walk(f);
                    }
                }
            }
            ExprKind::Traverse(base, steps) => {
                base.walk(f);
                for s in steps {
                    if let Step::Index(e, _) = s {
                        e.walk(f);
                    }
                }
            }
            ExprKind::Call(_, args) | ExprKind::List(args) => args.iter().for_each(|a| a.walk(f)),
            ExprKind::Map(entries) => entries.iter().for_each(|(_, _, e)| e.walk(f)),
            ExprKind::Unary(_, e) => e.walk(f),
            ExprKind::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            ExprKind::Cond(c, a, b) => {
                c.walk(f);
                a.walk(f);
                b.walk(f);
            }
        }
    }

    /// Visits this expression and, where `f` returns true, its sub-expressions, mutably.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut Expr) -> bool) {
        if !f(self) {
            return;
        }
        match &mut self.kind {
            ExprKind::Lit(_) | ExprKind::Ident(_) => {}
            ExprKind::Template(parts) => {
                for p in parts {
                    if let TemplatePart::Interp(e) = p {
                        e.walk_mut(f);
                    }
                }
            }
            ExprKind::Traverse(base, steps) => {
                base.walk_mut(f);
                for s in steps {
                    if let Step::Index(e, _) = s {
                        e.walk_mut(f);
                    }
                }
            }
            ExprKind::Call(_, args) | ExprKind::List(args) => args.iter_mut().for_each(|a| a.walk_mut(f)),
            ExprKind::Map(entries) => entries.iter_mut().for_each(|(_, _, e)| e.walk_mut(f)),
            ExprKind::Unary(_, e) => e.walk_mut(f),
            ExprKind::Binary(_, a, b) => {
                a.walk_mut(f);
                b.walk_mut(f);
            }
            ExprKind::Cond(c, a, b) => {
                c.walk_mut(f);
                a.walk_mut(f);
                b.walk_mut(f);
            }
        }
    }

    /// The root name and steps when this is a reference like `a.b["c"]`.
    pub fn as_reference(&self) -> Option<(&str, Span, &[Step])> {
        match &self.kind {
            ExprKind::Ident(n) => Some((n, self.span, &[])),
            ExprKind::Traverse(base, steps) => match &base.kind {
                ExprKind::Ident(n) => Some((n, base.span, steps)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Maps byte offsets inside a decoded TOML string back to the file.
#[derive(Clone, Copy, Debug)]
pub struct StrSpans {
    /// The whole string literal, quotes included.
    pub whole: Span,
    /// Where the content starts in the file, when the decoded text equals the raw text.
    pub content: Option<u32>,
}

impl StrSpans {
    /// The file span of `start..end` in the decoded text.
    pub fn at(&self, start: usize, end: usize) -> Span {
        match self.content {
            Some(c) => Span { file: self.whole.file, start: c + start as u32, end: c + end as u32 },
            None => self.whole,
        }
    }
}

/// Parses a string that may hold `${...}` interpolations. A string that is exactly one
/// interpolation becomes that expression (keeping its type); `$${` is a literal `${`.
pub fn parse_template(text: &str, spans: StrSpans) -> Result<Expr, Diagnostic> {
    if !text.contains("${") {
        return Ok(Expr::lit(Value::str(text), spans.whole));
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if text[i..].starts_with("$${") {
            lit.push_str("${");
            i += 3;
        } else if text[i..].starts_with("${") {
            if !lit.is_empty() {
                parts.push(TemplatePart::Text(std::mem::take(&mut lit)));
            }
            let mut p = Parser::new(text, i + 2, spans);
            let e = p.expr()?;
            p.skip_ws();
            match p.peek_char() {
                Some('}') => i = p.pos + 1,
                Some(_) => {
                    return Err(p.err_here("expected `}` to close the interpolation"));
                }
                None => {
                    return Err(Diagnostic::error("unterminated interpolation", spans.at(i, text.len()))
                        .label("this `${` has no closing `}`")
                        .help("close it with `}`, or write `$${` for a literal `${`"));
                }
            }
            parts.push(TemplatePart::Interp(e));
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            lit.push(c);
            i += c.len_utf8();
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Text(lit));
    }
    if parts.len() == 1
        && let TemplatePart::Interp(e) = &parts[0]
    {
        return Ok(e.clone());
    }
    if parts.iter().all(|p| matches!(p, TemplatePart::Text(_))) {
        let text: String = parts.iter().map(|p| if let TemplatePart::Text(t) = p { t.as_str() } else { "" }).collect();
        return Ok(Expr::lit(Value::String(text), spans.whole));
    }
    Ok(Expr { kind: ExprKind::Template(parts), span: spans.whole })
}

/// Parses a whole string as one expression (used for `--target`-like inputs and tests).
pub fn parse_expression(text: &str, spans: StrSpans) -> Result<Expr, Diagnostic> {
    let mut p = Parser::new(text, 0, spans);
    let e = p.expr()?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.err_here("unexpected text after the expression"));
    }
    Ok(e)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
    End,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    spans: StrSpans,
    /// How deeply the expression being parsed nests (bounded by [`MAX_DEPTH`]).
    depth: usize,
}

/// How deeply expressions may nest (parentheses, unary operators, brackets, calls, and the links
/// of an operator chain): deeper input is an error at its position rather than a stack overflow.
pub const MAX_DEPTH: usize = 32;

const PUNCTS: [&str; 25] = [
    "==", "!=", "<=", ">=", "&&", "||", ".", ",", "[", "]", "(", ")", "{", "}", "?", ":", "<", ">", "!", "+", "-", "*",
    "/", "%", "=",
];

impl<'a> Parser<'a> {
    fn new(src: &'a str, pos: usize, spans: StrSpans) -> Self {
        Parser { src, pos, spans, depth: 0 }
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek_char() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn span(&self, start: usize) -> Span {
        self.spans.at(start, self.pos)
    }

    fn err_here(&self, msg: &str) -> Diagnostic {
        let end = (self.pos + self.peek_char().map_or(0, char::len_utf8)).min(self.src.len());
        Diagnostic::error(format!("invalid expression: {msg}"), self.spans.at(self.pos, end)).label(
            match self.peek_char() {
                Some(c) => format!("found `{c}`"),
                None => "found the end of the string".into(),
            },
        )
    }

    /// Reads the next token without consuming it; returns it with its start and end offsets.
    fn peek(&mut self) -> Result<(Tok, usize, usize), Diagnostic> {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.src[start..];
        let Some(c) = rest.chars().next() else { return Ok((Tok::End, start, start)) };
        if c.is_ascii_alphabetic() || c == '_' {
            let len =
                rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')).unwrap_or(rest.len());
            return Ok((Tok::Ident(rest[..len].to_string()), start, start + len));
        }
        if c.is_ascii_digit() {
            let len = rest.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).unwrap_or(rest.len());
            let text = &rest[..len];
            let tok = if let Ok(i) = text.parse::<i64>() {
                Tok::Int(i)
            } else if let Ok(f) = text.parse::<f64>() {
                Tok::Float(f)
            } else {
                return Err(Diagnostic::error(
                    format!("invalid expression: `{text}` is not a number"),
                    self.spans.at(start, start + len),
                ));
            };
            return Ok((tok, start, start + len));
        }
        if c == '"' {
            let mut out = String::new();
            let mut chars = rest.char_indices().skip(1);
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '"' => return Ok((Tok::Str(out), start, start + i + 1)),
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, other)) => out.push(other),
                        None => break,
                    },
                    ch => out.push(ch),
                }
            }
            return Err(Diagnostic::error(
                "invalid expression: unterminated string",
                self.spans.at(start, self.src.len()),
            )
            .label("this string has no closing `\"`"));
        }
        for p in PUNCTS {
            if rest.starts_with(p) {
                return Ok((Tok::Punct(p), start, start + p.len()));
            }
        }
        Err(self.err_here("unexpected character"))
    }

    fn next(&mut self) -> Result<(Tok, usize, usize), Diagnostic> {
        let t = self.peek()?;
        self.pos = t.2;
        Ok(t)
    }

    fn eat(&mut self, p: &'static str) -> Result<bool, Diagnostic> {
        if self.peek()?.0 == Tok::Punct(p) {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, p: &'static str, what: &str) -> Result<(), Diagnostic> {
        if self.eat(p)? {
            Ok(())
        } else {
            self.skip_ws();
            Err(self.err_here(&format!("expected `{p}` {what}")))
        }
    }

    fn expr(&mut self) -> Result<Expr, Diagnostic> {
        self.nest()?;
        let r = self.expr_inner();
        self.depth -= 1;
        r
    }

    /// One level deeper, refused past [`MAX_DEPTH`].
    fn nest(&mut self) -> Result<(), Diagnostic> {
        if self.depth >= MAX_DEPTH {
            self.skip_ws();
            return Err(self
                .err_here(&format!("expression nested too deeply (more than {MAX_DEPTH} levels)"))
                .help("split it into variables or locals"));
        }
        self.depth += 1;
        Ok(())
    }

    fn expr_inner(&mut self) -> Result<Expr, Diagnostic> {
        let start = {
            self.skip_ws();
            self.pos
        };
        let cond = self.binary(0)?;
        if self.eat("?")? {
            let a = self.expr()?;
            self.expect(":", "between the two branches of `?`")?;
            let b = self.expr()?;
            return Ok(Expr { kind: ExprKind::Cond(Box::new(cond), Box::new(a), Box::new(b)), span: self.span(start) });
        }
        Ok(cond)
    }

    fn binary(&mut self, min_prec: u8) -> Result<Expr, Diagnostic> {
        self.skip_ws();
        let start = self.pos;
        let mut lhs = self.unary()?;
        // Each operator of a chain (`1 + 1 + …`) makes the tree one level deeper on the left:
        // it counts against the same limit as nesting (evaluation recurses through it).
        let mut links = 0;
        loop {
            let (tok, _, _) = self.peek()?;
            let Tok::Punct(p) = tok else { break };
            let Some((op, prec)) = binop(p) else { break };
            if prec < min_prec {
                break;
            }
            self.next()?;
            self.nest()?;
            links += 1;
            let rhs = self.binary(prec + 1)?;
            lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span: self.span(start) };
        }
        self.depth -= links;
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        let (tok, start, _) = self.peek()?;
        let op = match tok {
            Tok::Punct("!") => UnOp::Not,
            Tok::Punct("-") => UnOp::Neg,
            _ => return self.postfix(),
        };
        self.next()?;
        self.nest()?;
        let e = self.unary();
        self.depth -= 1;
        Ok(Expr { kind: ExprKind::Unary(op, Box::new(e?)), span: self.span(start) })
    }

    fn postfix(&mut self) -> Result<Expr, Diagnostic> {
        let (_, start, _) = self.peek()?;
        let base = self.primary()?;
        let mut steps = Vec::new();
        loop {
            let (tok, s, _) = self.peek()?;
            match tok {
                Tok::Punct(".") => {
                    self.next()?;
                    match self.next()? {
                        (Tok::Ident(name), _, e) => steps.push(Step::Attr(name, self.spans.at(s, e))),
                        (Tok::Int(i), _, e) => steps
                            .push(Step::Index(Expr::lit(Value::Int(i), self.spans.at(s + 1, e)), self.spans.at(s, e))),
                        (Tok::Punct("*"), _, e) => steps.push(Step::Splat(self.spans.at(s, e))),
                        (_, ts, _) => {
                            self.pos = ts;
                            return Err(self.err_here("expected an attribute name after `.`"));
                        }
                    }
                }
                Tok::Punct("[") => {
                    self.next()?;
                    if self.eat("*")? {
                        self.expect("]", "to close `[*`")?;
                        steps.push(Step::Splat(self.span(s)));
                    } else {
                        let idx = self.expr()?;
                        self.expect("]", "to close the index")?;
                        steps.push(Step::Index(idx, self.span(s)));
                    }
                }
                _ => break,
            }
        }
        if steps.is_empty() {
            Ok(base)
        } else {
            Ok(Expr { kind: ExprKind::Traverse(Box::new(base), steps), span: self.span(start) })
        }
    }

    /// A literal, a name (or a call), a parenthesised expression, a list or a map.
    fn primary(&mut self) -> Result<Expr, Diagnostic> {
        let (tok, start, end) = self.peek()?;
        let lspan = self.spans.at(start, end);
        let lit = |v| Ok(Expr::lit(v, lspan));
        match tok {
            Tok::Int(i) => {
                self.next()?;
                lit(Value::Int(i))
            }
            Tok::Float(f) => {
                self.next()?;
                lit(Value::Float(f))
            }
            Tok::Str(s) => {
                self.next()?;
                lit(Value::String(s))
            }
            Tok::Ident(name) => {
                self.next()?;
                match name.as_str() {
                    "true" => return lit(Value::Bool(true)),
                    "false" => return lit(Value::Bool(false)),
                    "null" => return lit(Value::Null),
                    _ => {}
                }
                if self.eat("(")? {
                    let args = self.call_args()?;
                    return Ok(Expr { kind: ExprKind::Call(name, args), span: self.span(start) });
                }
                Ok(Expr { kind: ExprKind::Ident(name), span: self.spans.at(start, end) })
            }
            Tok::Punct("(") => {
                self.next()?;
                let e = self.expr()?;
                self.expect(")", "to close `(`")?;
                Ok(e)
            }
            Tok::Punct("[") => {
                self.next()?;
                let items = self.list_items()?;
                Ok(Expr { kind: ExprKind::List(items), span: self.span(start) })
            }
            Tok::Punct("{") => {
                self.next()?;
                let entries = self.map_entries()?;
                Ok(Expr { kind: ExprKind::Map(entries), span: self.span(start) })
            }
            _ => Err(self.err_here("expected a value, a reference or a function call")),
        }
    }

    /// A call's arguments after its `(`, up to and including the `)`.
    fn call_args(&mut self) -> Result<Vec<Expr>, Diagnostic> {
        let mut args = Vec::new();
        if !self.eat(")")? {
            loop {
                args.push(self.expr()?);
                if self.eat(")")? {
                    break;
                }
                self.expect(",", "between function arguments")?;
            }
        }
        Ok(args)
    }

    /// A list's items after its `[`, up to and including the `]` (a trailing comma allowed).
    fn list_items(&mut self) -> Result<Vec<Expr>, Diagnostic> {
        let mut items = Vec::new();
        if !self.eat("]")? {
            loop {
                items.push(self.expr()?);
                if self.eat("]")? {
                    break;
                }
                self.expect(",", "between list items")?;
                if self.eat("]")? {
                    break;
                }
            }
        }
        Ok(items)
    }

    /// A map's `key = value` entries after its `{`, up to and including the `}` (commas
    /// optional); keys are names or strings and keep their spans.
    fn map_entries(&mut self) -> Result<Vec<(String, Span, Expr)>, Diagnostic> {
        let mut entries = Vec::new();
        while !self.eat("}")? {
            let (k, ks, ke) = self.next()?;
            let key = match k {
                Tok::Ident(s) | Tok::Str(s) => s,
                _ => {
                    self.pos = ks;
                    return Err(self.err_here("expected a key in `{ key = value }`"));
                }
            };
            self.expect("=", "after the key")?;
            let v = self.expr()?;
            entries.push((key, self.spans.at(ks, ke), v));
            self.eat(",")?;
        }
        Ok(entries)
    }
}

fn binop(p: &str) -> Option<(BinOp, u8)> {
    Some(match p {
        "||" => (BinOp::Or, 1),
        "&&" => (BinOp::And, 2),
        "==" => (BinOp::Eq, 3),
        "!=" => (BinOp::Ne, 3),
        "<" => (BinOp::Lt, 4),
        "<=" => (BinOp::Le, 4),
        ">" => (BinOp::Gt, 4),
        ">=" => (BinOp::Ge, 4),
        "+" => (BinOp::Add, 5),
        "-" => (BinOp::Sub, 5),
        "*" => (BinOp::Mul, 6),
        "/" => (BinOp::Div, 6),
        "%" => (BinOp::Rem, 6),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(text: &str) -> StrSpans {
        StrSpans { whole: Span::new(0, 0..text.len() + 2), content: Some(1) }
    }

    fn parse(text: &str) -> Expr {
        parse_template(text, sp(text)).unwrap()
    }

    #[test]
    fn single_interpolation_keeps_its_expression() {
        let e = parse("${var.x}");
        let (root, _, steps) = e.as_reference().unwrap();
        assert_eq!(root, "var");
        assert!(matches!(&steps[0], Step::Attr(n, _) if n == "x"));
    }

    #[test]
    fn template_mixes_text_and_expressions() {
        let e = parse("a-${join(\",\", clusters.*.pod_cidr)}-b");
        let ExprKind::Template(parts) = e.kind else { panic!("not a template") };
        assert_eq!(parts.len(), 3);
        assert!(
            matches!(&parts[1], TemplatePart::Interp(Expr { kind: ExprKind::Call(n, a), .. }) if n == "join" && a.len() == 2)
        );
    }

    #[test]
    fn escapes_and_precedence() {
        assert_eq!(parse("$${x}").kind, ExprKind::Lit(Value::str("${x}")));
        let e = parse("${1 + 2 * 3 == 7 && !false ? \"y\" : \"n\"}");
        assert!(matches!(e.kind, ExprKind::Cond(..)));
    }

    #[test]
    fn errors_point_into_the_string() {
        let text = "x ${var.} y";
        let err = parse_template(text, sp(text)).unwrap_err();
        assert!(err.summary.contains("expected an attribute name"), "{}", err.summary);
        assert_eq!(err.span.unwrap().start, 1 + 8);
        let text = "${var.x";
        let err = parse_template(text, sp(text)).unwrap_err();
        assert_eq!(err.summary, "unterminated interpolation");
    }
}
