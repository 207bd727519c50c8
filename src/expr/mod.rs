//! SQL-syntax expressions, compiled once against a [`Schema`] into typed evaluators over rows.
//!
//! Text is parsed with `sqlparser` (generic dialect); the AST is then resolved into a small tree
//! with field positions and types fixed, so evaluation is a plain `match` with no name lookups.
//! Errors carry byte spans within the expression text, ready for [`crate::diag`].
//!
//! # Supported syntax
//!
//! - Literals: integers, floats, `'strings'`, `TRUE`/`FALSE`, `NULL`, `TIMESTAMP '2024-01-01'`.
//! - Field references by name, plain or `"quoted"`.
//! - Arithmetic `+ - * / %` and unary `-`/`+`: `int ⊕ int → int` (checked: overflow or division
//!   by zero gives NULL), with a `float` operand `→ float` (division by zero gives NULL),
//!   `timestamp ± int → timestamp` (milliseconds), `timestamp - timestamp → int`.
//! - Comparisons `= <> != < <= > >=` between numbers (ints and floats compare numerically),
//!   strings, bools or timestamps; a timestamp may be compared with a string literal, which is
//!   converted at compile time with [`parse_timestamp`].
//! - `AND`, `OR`, `NOT` with three-valued logic; `IS [NOT] NULL`; `[NOT] IN (…)`;
//!   `[NOT] BETWEEN … AND …`; `[NOT] LIKE` with `%` and `_` (and an optional `ESCAPE 'c'`).
//! - `CASE WHEN … THEN … [ELSE …] END` and `CASE x WHEN v THEN … END`.
//! - `CAST(x AS t)` / `x::t` with `t` one of `INT`, `BIGINT`, `INTEGER`, `DOUBLE`, `FLOAT`,
//!   `REAL`, `TEXT`, `VARCHAR`, `STRING`, `BOOLEAN`, `TIMESTAMP`; a failed cast gives NULL.
//! - Functions (case-insensitive): `lower`, `upper`, `length`, `abs`, `round(x[, digits])`,
//!   `floor`, `ceil`, `coalesce(…)`, `concat(…)` (NULL arguments are skipped).
//! - Aggregates, via [`compile_aggregate`] only: `count(*)`, `count(x)`, `count(DISTINCT x)`,
//!   `sum`, `min`, `max`, `avg`.
//!
//! Any operand that is NULL makes the result NULL, except where SQL says otherwise (`AND`, `OR`,
//! `IS NULL`, `IN`, `CASE`, `coalesce`, `concat`). Evaluation never panics: a row value of an
//! unexpected type also yields NULL.
//!
//! Error codes: `E0301` syntax, `E0302` unknown field, `E0303` type mismatch, `E0304` unknown
//! function, `E0305` wrong arguments.

use crate::diag::did_you_mean;
use crate::record::time::parse_timestamp;
use crate::record::{Schema, Type, Value};
use compact_str::CompactString;
use sqlparser::ast::{
    self, BinaryOperator as B, DataType, DuplicateTreatment, FunctionArg, FunctionArgExpr,
    FunctionArguments, ObjectNamePart, Spanned, UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

/// Deepest expression nesting accepted; deeper text is rejected with `E0301`.
const MAX_DEPTH: usize = 500;

/// Most operators (and keywords) accepted in one expression text.
const MAX_OPERATORS: usize = 4 * MAX_DEPTH;

/// A compile error, positioned within the expression text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprError {
    /// Stable error code: `E0301`..`E0305`.
    pub code: &'static str,
    /// One-line description.
    pub message: String,
    /// Byte offsets within the expression text.
    pub span: Range<usize>,
    /// Short label shown under the span.
    pub label: String,
    /// Optional hint, such as "did you mean `x`?".
    pub help: Option<String>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.code, self.message)
    }
}

impl std::error::Error for ExprError {}

/// A compiled expression: resolved against a schema, typed, ready to evaluate over rows.
#[derive(Clone, Debug)]
pub struct Expr {
    text: String,
    node: Node,
    ty: Option<Type>,
}

impl Expr {
    /// Marks in `used` (indexed by field position) every field the expression reads.
    pub fn mark_fields(&self, used: &mut [bool]) {
        self.node.mark_fields(used);
    }

    /// Parses and type-checks `text` against `schema`, reporting every error found.
    pub fn compile(text: &str, schema: &Schema) -> Result<Expr, Vec<ExprError>> {
        let ast = parse(text)?;
        let mut c = Compiler::new(text, schema);
        match c.expr(&ast) {
            Ok(t) if c.errors.is_empty() => Ok(Expr {
                text: text.to_string(),
                node: t.node,
                ty: t.ty,
            }),
            _ => Err(c.into_errors()),
        }
    }

    /// The result type; `None` only when it cannot be known: a bare `NULL` (or a `CASE` /
    /// `coalesce` whose every branch is a bare `NULL`).
    pub fn ty(&self) -> Option<Type> {
        self.ty
    }

    /// Evaluates the expression over one row (positions as in the compile-time schema).
    pub fn eval(&self, row: &[Value]) -> Value {
        eval(&self.node, row).into_owned()
    }

    /// Evaluates as a filter: true only when the result is `TRUE` (NULL and false are false).
    pub fn eval_predicate(&self, row: &[Value]) -> bool {
        matches!(*eval(&self.node, row), Value::Bool(true))
    }

    /// The field position, if the expression is just a field reference.
    pub fn as_field(&self) -> Option<usize> {
        match self.node {
            Node::Field(i) => Some(i),
            _ => None,
        }
    }

    /// The source text the expression was compiled from.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    /// `count(*)` or `count(x)` (non-NULL values).
    Count,
    /// `sum(x)`.
    Sum,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `avg(x)`.
    Avg,
    /// `count(DISTINCT x)`.
    CountDistinct,
}

/// A compiled aggregate call such as `sum(price * qty)`.
#[derive(Clone, Debug)]
pub struct AggregateCall {
    /// The aggregate function.
    pub func: AggFunc,
    /// The argument; `None` for `count(*)`.
    pub arg: Option<Expr>,
    /// The result type.
    pub ty: Type,
}

const AGGREGATES: [&str; 6] = ["count", "sum", "min", "max", "avg", "count_distinct"];

/// Compiles text that must be exactly one aggregate call, e.g. `count(*)` or `avg(latency)`.
pub fn compile_aggregate(text: &str, schema: &Schema) -> Result<AggregateCall, Vec<ExprError>> {
    let ast = parse(text)?;
    let mut c = Compiler::new(text, schema);
    match c.aggregate(&ast) {
        Ok(call) if c.errors.is_empty() => Ok(call),
        _ => Err(c.into_errors()),
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled tree

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// How an arithmetic node computes: decided from the operand types at compile time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NumKind {
    Int,
    Float,
    /// timestamp ± int (either order for `+`) → timestamp.
    TimeInt,
    /// timestamp - timestamp → int.
    TimeTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Lower,
    Upper,
    Length,
    Abs,
    Round,
    Floor,
    Ceil,
    Coalesce,
    Concat,
    DateTrunc,
}

const FUNCS: [(&str, Func); 10] = [
    ("lower", Func::Lower),
    ("upper", Func::Upper),
    ("length", Func::Length),
    ("abs", Func::Abs),
    ("round", Func::Round),
    ("floor", Func::Floor),
    ("ceil", Func::Ceil),
    ("coalesce", Func::Coalesce),
    ("concat", Func::Concat),
    ("date_trunc", Func::DateTrunc),
];

/// Units `date_trunc` accepts, with their length in milliseconds (UTC, no leap seconds).
const TRUNC_UNITS: [(&str, i64); 5] = [
    ("second", 1000),
    ("minute", 60_000),
    ("hour", 3_600_000),
    ("day", 86_400_000),
    ("week", 7 * 86_400_000),
];

/// One element of a LIKE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Many,
    One,
    Lit(char),
}

#[derive(Clone, Debug)]
enum Pattern {
    Const(Vec<Tok>),
    Dyn(Box<Node>, Option<char>),
}

#[derive(Clone, Debug)]
enum Node {
    Field(usize),
    Const(Value),
    Neg(Box<Node>),
    Arith(ArithOp, NumKind, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    IsNull(Box<Node>, bool),
    InList(Box<Node>, Vec<Node>, bool),
    Between(Box<Node>, Box<Node>, Box<Node>, bool),
    Case(Option<Box<Node>>, Vec<(Node, Node)>, Option<Box<Node>>),
    Cast(Box<Node>, Type),
    Func(Func, Vec<Node>),
    Like(Box<Node>, Pattern, bool),
}

impl Node {
    fn mark_fields(&self, used: &mut [bool]) {
        let mut mark = |n: &Node| n.mark_fields(used);
        match self {
            Node::Field(i) => {
                if let Some(u) = used.get_mut(*i) {
                    *u = true;
                }
            }
            Node::Const(_) => {}
            Node::Neg(a)
            | Node::Not(a)
            | Node::IsNull(a, _)
            | Node::Cast(a, _)
            | Node::Like(a, _, _) => mark(a),
            Node::Arith(_, _, a, b) | Node::Cmp(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                mark(a);
                mark(b);
            }
            Node::InList(a, list, _) => {
                mark(a);
                list.iter().for_each(mark);
            }
            Node::Between(a, b, c, _) => {
                mark(a);
                mark(b);
                mark(c);
            }
            Node::Case(op, arms, otherwise) => {
                if let Some(o) = op {
                    mark(o);
                }
                for (w, t) in arms {
                    mark(w);
                    mark(t);
                }
                if let Some(e) = otherwise {
                    mark(e);
                }
            }
            Node::Func(_, args) => args.iter().for_each(mark),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing and spans

fn parse(text: &str) -> Result<ast::Expr, Vec<ExprError>> {
    let src = Src::new(text);
    let syntax = |msg: String| {
        let msg = msg.strip_prefix("sql parser error: ").unwrap_or(&msg);
        let (msg, span) = match msg.rfind(" at Line: ") {
            Some(at) => (&msg[..at], src.error_span(&msg[at + 10..])),
            None => (msg, src.end_span()),
        };
        vec![error(
            "E0301",
            span,
            format!("syntax error: {msg}"),
            "here",
            None,
        )]
    };
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| syntax(e.to_string()))?;
    // Chains of infix operators nest without bound in the AST (and sqlparser recurses over it
    // when dropping it), so cap their number before parsing.
    if tokens.iter().filter(|t| is_operator(&t.token)).count() > MAX_OPERATORS {
        let msg = format!("expression is too complex (more than {MAX_OPERATORS} operators)");
        return Err(vec![error(
            "E0301",
            0..text.len(),
            msg,
            "too complex",
            None,
        )]);
    }
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let e = parser.parse_expr().map_err(|e| syntax(e.to_string()))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        let span = src.range(next.span);
        let msg = format!("unexpected `{}` after the expression", next.token);
        return Err(vec![error(
            "E0301",
            span,
            msg,
            "expected end of expression",
            None,
        )]);
    }
    Ok(e)
}

/// Whether a token may join two operands (operators and keywords other than literals).
fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => !matches!(
            w.keyword,
            Keyword::NoKeyword | Keyword::NULL | Keyword::TRUE | Keyword::FALSE
        ),
        Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::Comma
        | Token::LParen
        | Token::RParen
        | Token::Whitespace(_)
        | Token::EOF => false,
        _ => true,
    }
}

fn error(
    code: &'static str,
    span: Range<usize>,
    message: impl Into<String>,
    label: impl Into<String>,
    help: Option<String>,
) -> ExprError {
    ExprError {
        code,
        message: message.into(),
        span,
        label: label.into(),
        help,
    }
}

/// Converts sqlparser's 1-based line/column (in chars) locations into byte offsets.
struct Src<'a> {
    text: &'a str,
    lines: Vec<usize>,
}

impl<'a> Src<'a> {
    fn new(text: &'a str) -> Src<'a> {
        let lines = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Src { text, lines }
    }

    fn offset(&self, loc: Location) -> Option<usize> {
        let line = usize::try_from(loc.line).ok()?.checked_sub(1)?;
        let col = usize::try_from(loc.column).ok()?.checked_sub(1)?;
        let start = *self.lines.get(line)?;
        let rest = &self.text[start..];
        Some(start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i))
    }

    fn range(&self, span: Span) -> Range<usize> {
        match (self.offset(span.start), self.offset(span.end)) {
            (Some(a), Some(b)) if a < b => a..b,
            _ => 0..self.text.len(),
        }
    }

    /// The last character, for errors at the end of the text.
    fn end_span(&self) -> Range<usize> {
        let len = self.text.len();
        let start = self.text.char_indices().last().map_or(len, |(i, _)| i);
        start..len
    }

    /// The token at `Line: L, Column: C` in a parser message.
    fn error_span(&self, at: &str) -> Range<usize> {
        let mut nums = at
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u64>().unwrap_or(0));
        let (line, column) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
        match self.offset(Location { line, column }) {
            Some(start) if start < self.text.len() => {
                let rest = &self.text[start..];
                let word = |c: char| c.is_alphanumeric() || c == '_';
                let first = rest.chars().next().unwrap_or(' ');
                let len = if word(first) {
                    rest.find(|c: char| !word(c)).unwrap_or(rest.len())
                } else {
                    first.len_utf8()
                };
                start..start + len
            }
            _ => self.end_span(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiler

struct Typed {
    node: Node,
    ty: Option<Type>,
}

type R<T = Typed> = Result<T, ()>;

fn tname(t: Option<Type>) -> &'static str {
    t.map_or("NULL", Type::name)
}

struct Compiler<'a> {
    src: Src<'a>,
    schema: &'a Schema,
    errors: Vec<ExprError>,
    depth: usize,
}

impl<'a> Compiler<'a> {
    fn new(text: &'a str, schema: &'a Schema) -> Compiler<'a> {
        Compiler {
            src: Src::new(text),
            schema,
            errors: Vec::new(),
            depth: 0,
        }
    }

    fn into_errors(self) -> Vec<ExprError> {
        let mut errors = self.errors;
        if errors.is_empty() {
            let span = 0..self.src.text.len();
            errors.push(error("E0301", span, "invalid expression", "here", None));
        }
        errors
    }

    /// The byte range of `e`, correcting sqlparser spans that stop short of closing parentheses
    /// or leave out leading keywords.
    fn span(&self, e: &ast::Expr) -> Range<usize> {
        use ast::Expr as E;
        let t = self.src.text;
        let r = self.src.range(e.span());
        if self.depth > MAX_DEPTH || r == (0..t.len()) {
            return r;
        }
        let close_after = |from: usize| {
            t[from..]
                .find('(')
                .and_then(|i| matching_close(t, from + i))
        };
        match e {
            E::Nested(inner) => {
                let i = self.span(inner);
                match t[..i.start].trim_end().strip_suffix('(') {
                    Some(before) => before.len()..matching_close(t, before.len()).unwrap_or(i.end),
                    None => i,
                }
            }
            E::Function(_) => r.start..close_after(r.start).unwrap_or(r.end),
            E::InList { expr, .. } => {
                let i = self.span(expr);
                i.start..close_after(i.end).unwrap_or(r.end)
            }
            E::BinaryOp { left, right, .. } => self.span(left).start..self.span(right).end,
            E::Between { expr, high, .. } => self.span(expr).start..self.span(high).end,
            E::Like { expr, pattern, .. } => self.span(expr).start..self.span(pattern).end,
            E::IsNull(x) | E::IsNotNull(x) => {
                let i = self.span(x);
                let words = if matches!(e, E::IsNull(_)) { 2 } else { 3 };
                i.start..skip_words(t, i.end, words)
            }
            E::UnaryOp { op, expr } => {
                let i = self.span(expr);
                let before = t[..i.start].trim_end();
                let op = op.to_string();
                let n = before.len().saturating_sub(op.len());
                match before.get(n..) {
                    Some(w) if w.eq_ignore_ascii_case(&op) => n..i.end,
                    _ => i,
                }
            }
            E::Cast { kind, expr, .. } if *kind == ast::CastKind::DoubleColon => {
                let i = self.span(expr);
                i.start..skip_words(t, i.end, 1)
            }
            E::Cast { expr, .. } | E::Floor { expr, .. } | E::Ceil { expr, .. } => {
                let i = self.span(expr);
                match t[..i.start].trim_end().strip_suffix('(') {
                    Some(before) => {
                        word_start(t, before.trim_end().len())
                            ..matching_close(t, before.len()).unwrap_or(i.end)
                    }
                    None => i,
                }
            }
            E::TypedString(_) => word_start(t, t[..r.start].trim_end().len())..r.end,
            _ => r,
        }
    }

    fn fail<T>(
        &mut self,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) -> R<T> {
        self.errors.push(error(code, span, message, label, help));
        Err(())
    }

    fn mismatch<T>(&mut self, e: &ast::Expr, expected: &str, found: Option<Type>) -> R<T> {
        self.errors.push(type_error(self.span(e), expected, found));
        Err(())
    }

    fn unsupported<T>(&mut self, e: &ast::Expr, what: &str) -> R<T> {
        let msg = format!("unsupported syntax: {what}");
        self.fail("E0301", self.span(e), msg, "not supported here", None)
    }

    fn expr(&mut self, e: &ast::Expr) -> R {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH {
            let span = 0..self.src.text.len();
            self.fail(
                "E0301",
                span,
                "expression is nested too deeply",
                "here",
                None,
            )
        } else {
            self.expr_inner(e)
        };
        self.depth -= 1;
        r
    }

    /// Compiles and checks that the result is `bool` (or NULL).
    fn bool_expr(&mut self, e: &ast::Expr) -> R {
        let t = self.expr(e)?;
        match t.ty {
            None | Some(Type::Bool) => Ok(t),
            found => self.mismatch(e, "`bool`", found),
        }
    }

    fn expr_inner(&mut self, e: &ast::Expr) -> R {
        use ast::Expr as E;
        match e {
            E::Identifier(id) => self.field(&id.value, e),
            E::CompoundIdentifier(ids) => {
                let name: Vec<&str> = ids.iter().map(|i| i.value.as_str()).collect();
                self.field(&name.join("."), e)
            }
            E::Value(v) => self.literal(&v.value, e, false),
            E::Nested(inner) => self.expr(inner),
            E::TypedString(ts) => {
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    _ => return self.unsupported(e, "typed literal"),
                };
                let ty = self.data_type(&ts.data_type, e)?;
                match cast(&Value::str(&s), ty) {
                    Value::Null => {
                        let msg = format!("invalid {} literal '{s}'", ty.name());
                        self.fail("E0303", self.span(e), msg, "cannot be converted", None)
                    }
                    v => Ok(Typed {
                        node: Node::Const(v),
                        ty: Some(ty),
                    }),
                }
            }
            E::UnaryOp { op, expr } => match (op, &**expr) {
                (UnaryOperator::Minus, E::Value(v))
                    if matches!(v.value, ast::Value::Number(..)) =>
                {
                    self.literal(&v.value, e, true)
                }
                (UnaryOperator::Minus | UnaryOperator::Plus, _) => {
                    let t = self.expr(expr)?;
                    let ty = match t.ty {
                        None => Some(Type::Int),
                        Some(ty) if ty.is_numeric() => Some(ty),
                        found => return self.mismatch(expr, "`int` or `float`", found),
                    };
                    let node = match op {
                        UnaryOperator::Minus => Node::Neg(Box::new(t.node)),
                        _ => t.node,
                    };
                    Ok(Typed { node, ty })
                }
                (UnaryOperator::Not, _) => {
                    let t = self.bool_expr(expr)?;
                    Ok(bool_node(Node::Not(Box::new(t.node))))
                }
                _ => self.unsupported(e, &format!("operator `{op}`")),
            },
            E::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            E::IsNull(x) | E::IsNotNull(x) => {
                let t = self.expr(x)?;
                let negated = matches!(e, E::IsNotNull(_));
                Ok(bool_node(Node::IsNull(Box::new(t.node), negated)))
            }
            E::InList {
                expr,
                list,
                negated,
            } => {
                let x = self.expr(expr);
                let items: Vec<R> = list.iter().map(|i| self.expr(i)).collect();
                let mut x = x?;
                let mut nodes = Vec::with_capacity(items.len());
                let mut ok = true;
                for (item, ast_item) in items.into_iter().zip(list) {
                    let Ok(mut item) = item else {
                        ok = false;
                        continue;
                    };
                    ok &= self.comparable(&mut x, expr, &mut item, ast_item).is_ok();
                    nodes.push(item.node);
                }
                if !ok {
                    return Err(());
                }
                Ok(bool_node(Node::InList(Box::new(x.node), nodes, *negated)))
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, lo, hi) = (self.expr(expr), self.expr(low), self.expr(high));
                let (mut x, mut lo, mut hi) = (x?, lo?, hi?);
                let a = self.comparable(&mut x, expr, &mut lo, low);
                let b = self.comparable(&mut x, expr, &mut hi, high);
                a.and(b)?;
                let (x, lo, hi) = (Box::new(x.node), Box::new(lo.node), Box::new(hi.node));
                Ok(bool_node(Node::Between(x, lo, hi, *negated)))
            }
            E::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any {
                    return self.unsupported(e, "LIKE ANY");
                }
                self.like(expr, pattern, escape_char.as_deref(), *negated)
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            E::Cast {
                expr,
                data_type,
                format,
                ..
            } => {
                if format.is_some() {
                    return self.unsupported(e, "CAST ... FORMAT");
                }
                let t = self.expr(expr);
                let ty = self.data_type(data_type, e)?;
                Ok(Typed {
                    node: Node::Cast(Box::new(t?.node), ty),
                    ty: Some(ty),
                })
            }
            E::Function(f) => self.function(f, e),
            E::Floor { expr, field } => self.floor_ceil(Func::Floor, expr, field, e),
            E::Ceil { expr, field } => self.floor_ceil(Func::Ceil, expr, field, e),
            _ => self.unsupported(e, "this kind of expression"),
        }
    }

    fn field(&mut self, name: &str, e: &ast::Expr) -> R {
        match self.schema.index_of(name) {
            Some(i) => Ok(Typed {
                node: Node::Field(i),
                ty: Some(self.schema.fields[i].ty),
            }),
            None => {
                let help =
                    did_you_mean(name, self.schema.names()).map(|s| format!("did you mean `{s}`?"));
                let msg = format!("unknown field `{name}`");
                self.fail("E0302", self.span(e), msg, "not in the input schema", help)
            }
        }
    }

    fn literal(&mut self, v: &ast::Value, e: &ast::Expr, negate: bool) -> R {
        let value = match v {
            ast::Value::Number(s, _) => {
                let text = if negate { format!("-{s}") } else { s.clone() };
                if s.contains(['.', 'e', 'E']) {
                    match text.parse::<f64>() {
                        Ok(f) => Value::float(f),
                        Err(_) => return self.unsupported(e, "number literal"),
                    }
                } else {
                    match text.parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => {
                            let msg = format!("integer literal `{text}` is out of range");
                            return self.fail(
                                "E0301",
                                self.span(e),
                                msg,
                                "too large for `int`",
                                None,
                            );
                        }
                    }
                }
            }
            ast::Value::SingleQuotedString(s) => Value::str(s),
            ast::Value::Boolean(b) => Value::Bool(*b),
            ast::Value::Null => Value::Null,
            _ => return self.unsupported(e, "literal"),
        };
        let ty = value.type_of();
        Ok(Typed {
            node: Node::Const(value),
            ty,
        })
    }

    fn data_type(&mut self, dt: &DataType, e: &ast::Expr) -> R<Type> {
        use DataType as D;
        Ok(match dt {
            D::Int(_) | D::Integer(_) | D::BigInt(_) | D::Int64 | D::Int8(_) => Type::Int,
            D::Double(_) | D::DoublePrecision | D::Float(_) | D::Real | D::Float64 | D::Float8 => {
                Type::Float
            }
            D::Text | D::Varchar(_) | D::String(_) => Type::String,
            D::Boolean | D::Bool => Type::Bool,
            D::Timestamp(..) => Type::Timestamp,
            D::Custom(name, _) if name.to_string().eq_ignore_ascii_case("string") => Type::String,
            _ => {
                let msg = format!("cannot convert to `{dt}`");
                let help = "supported types: INT, BIGINT, INTEGER, DOUBLE, FLOAT, REAL, TEXT, \
                            VARCHAR, STRING, BOOLEAN, TIMESTAMP";
                return self.fail(
                    "E0303",
                    self.span(e),
                    msg,
                    "unsupported type",
                    Some(help.into()),
                );
            }
        })
    }

    /// Checks that `a` and `b` can be compared, converting a string literal compared with a
    /// timestamp into a timestamp. Reports the mismatch at `b`.
    fn comparable(
        &mut self,
        a: &mut Typed,
        ae: &ast::Expr,
        b: &mut Typed,
        be: &ast::Expr,
    ) -> R<()> {
        self.time_literal(a.ty, b, be)?;
        self.time_literal(b.ty, a, ae)?;
        match (a.ty, b.ty) {
            (None, _) | (_, None) => Ok(()),
            (Some(x), Some(y)) if x == y || (x.is_numeric() && y.is_numeric()) => Ok(()),
            (Some(x), Some(y)) => {
                let msg = format!("cannot compare `{x}` with `{y}`");
                let label = format!("expected `{x}`, found `{y}`");
                self.fail("E0303", self.span(be), msg, label, None)
            }
        }
    }

    fn time_literal(&mut self, other: Option<Type>, t: &mut Typed, e: &ast::Expr) -> R<()> {
        if other != Some(Type::Timestamp) {
            return Ok(());
        }
        if let Node::Const(Value::Str(s)) = &t.node {
            let Some(ms) = parse_timestamp(s.trim()) else {
                let help = format!(
                    "'{s}' is not a valid timestamp; use ISO-8601, e.g. '2024-01-31T12:00:00Z'"
                );
                return self.fail(
                    "E0303",
                    self.span(e),
                    "cannot compare `timestamp` with `string`",
                    "not a timestamp",
                    Some(help),
                );
            };
            *t = Typed {
                node: Node::Const(Value::Time(ms)),
                ty: Some(Type::Timestamp),
            };
        }
        Ok(())
    }

    fn binary(&mut self, e: &ast::Expr, le: &ast::Expr, op: &B, re: &ast::Expr) -> R {
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::Ne),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::Le),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::Ge),
            _ => None,
        };
        let arith = match op {
            B::Plus => Some(ArithOp::Add),
            B::Minus => Some(ArithOp::Sub),
            B::Multiply => Some(ArithOp::Mul),
            B::Divide => Some(ArithOp::Div),
            B::Modulo => Some(ArithOp::Rem),
            _ => None,
        };
        if matches!(op, B::And | B::Or) {
            let (l, r) = (self.bool_expr(le), self.bool_expr(re));
            let (l, r) = (Box::new(l?.node), Box::new(r?.node));
            let node = if *op == B::And {
                Node::And(l, r)
            } else {
                Node::Or(l, r)
            };
            return Ok(bool_node(node));
        }
        if cmp.is_none() && arith.is_none() {
            return self.unsupported(e, &format!("operator `{op}`"));
        }
        let (l, r) = (self.expr(le), self.expr(re));
        let (mut l, mut r) = (l?, r?);
        if let Some(c) = cmp {
            self.comparable(&mut l, le, &mut r, re)?;
            return Ok(bool_node(Node::Cmp(c, Box::new(l.node), Box::new(r.node))));
        }
        let op = arith.unwrap_or(ArithOp::Add);
        let (kind, ty) = self.arith_type(op, (le, l.ty), (re, r.ty))?;
        Ok(Typed {
            node: Node::Arith(op, kind, Box::new(l.node), Box::new(r.node)),
            ty: Some(ty),
        })
    }

    fn arith_type(
        &mut self,
        op: ArithOp,
        (le, lt): (&ast::Expr, Option<Type>),
        (re, rt): (&ast::Expr, Option<Type>),
    ) -> R<(NumKind, Type)> {
        use Type::*;
        let num = |t: Option<Type>| t.is_none_or(Type::is_numeric);
        let additive = matches!(op, ArithOp::Add | ArithOp::Sub);
        match (lt, rt) {
            (l, r) if num(l) && num(r) => Ok(if l == Some(Float) || r == Some(Float) {
                (NumKind::Float, Float)
            } else {
                (NumKind::Int, Int)
            }),
            (Some(Timestamp), Some(Int) | None) if additive => Ok((NumKind::TimeInt, Timestamp)),
            (Some(Timestamp), Some(Timestamp)) | (None, Some(Timestamp)) if op == ArithOp::Sub => {
                Ok((NumKind::TimeTime, Int))
            }
            (Some(Int) | None, Some(Timestamp)) if op == ArithOp::Add => {
                Ok((NumKind::TimeInt, Timestamp))
            }
            (Some(Timestamp), found) if additive => {
                let expected = if op == ArithOp::Sub {
                    "`int` or `timestamp`"
                } else {
                    "`int`"
                };
                self.mismatch(re, expected, found)
            }
            (l, r) => {
                let (e, found) = if num(l) || (additive && l == Some(Timestamp)) {
                    (re, r)
                } else {
                    (le, l)
                };
                let expected = if additive && !num(l) {
                    "`int`, `float` or `timestamp`"
                } else {
                    "`int` or `float`"
                };
                self.mismatch(e, expected, found)
            }
        }
    }

    fn like(
        &mut self,
        expr: &ast::Expr,
        pattern: &ast::Expr,
        escape: Option<&ast::Expr>,
        negated: bool,
    ) -> R {
        let (x, p) = (self.expr(expr), self.expr(pattern));
        let esc = match escape {
            None => None,
            Some(ast::Expr::Value(ast::ValueWithSpan {
                value: ast::Value::SingleQuotedString(s),
                ..
            })) if s.chars().count() == 1 => s.chars().next(),
            Some(other) => return self.unsupported(other, "ESCAPE must be one character"),
        };
        let (x, p) = (x?, p?);
        let bad_x = !matches!(x.ty, None | Some(Type::String));
        if bad_x {
            self.errors
                .push(type_error(self.span(expr), "`string`", x.ty));
        }
        if !matches!(p.ty, None | Some(Type::String)) {
            return self.mismatch(pattern, "`string`", p.ty);
        }
        if bad_x {
            return Err(());
        }
        let pat = match p.node {
            Node::Const(Value::Str(s)) => Pattern::Const(like_tokens(&s, esc)),
            node => Pattern::Dyn(Box::new(node), esc),
        };
        Ok(bool_node(Node::Like(Box::new(x.node), pat, negated)))
    }

    fn case(
        &mut self,
        operand: Option<&ast::Expr>,
        whens: &[ast::CaseWhen],
        else_: Option<&ast::Expr>,
    ) -> R {
        let mut op = operand.map(|o| self.expr(o)).transpose();
        let mut ok = op.is_ok();
        let mut conds = Vec::new();
        let mut results: Vec<(Typed, &ast::Expr)> = Vec::new();
        for w in whens {
            let c = match (&mut op, operand) {
                (Ok(Some(o)), Some(oe)) => self.expr(&w.condition).and_then(|mut c| {
                    self.comparable(o, oe, &mut c, &w.condition)?;
                    Ok(c)
                }),
                (Ok(None), _) => self.bool_expr(&w.condition),
                _ => self.expr(&w.condition),
            };
            let r = self.expr(&w.result);
            match (c, r) {
                (Ok(c), Ok(r)) => {
                    conds.push(c.node);
                    results.push((r, &w.result));
                }
                _ => ok = false,
            }
        }
        let else_t = else_.map(|x| self.expr(x).map(|t| (t, x))).transpose();
        let (Ok(op), Ok(else_t), true) = (op, else_t, ok) else {
            return Err(());
        };
        let n = results.len();
        results.extend(else_t);
        let (mut results, ty) = self.unify(results)?;
        let else_node = if results.len() > n {
            results.pop().map(Box::new)
        } else {
            None
        };
        let pairs = conds.into_iter().zip(results).collect();
        Ok(Typed {
            node: Node::Case(op.map(|o| Box::new(o.node)), pairs, else_node),
            ty,
        })
    }

    /// Gives alternatives (CASE branches, coalesce arguments) one type: ints mixed with floats
    /// become floats; anything else must match the first non-NULL type.
    fn unify(&mut self, items: Vec<(Typed, &ast::Expr)>) -> R<(Vec<Node>, Option<Type>)> {
        let mut ty: Option<Type> = None;
        let mut ok = true;
        for (t, e) in &items {
            match (ty, t.ty) {
                (_, None) => {}
                (None, found) => ty = found,
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) if a.is_numeric() && b.is_numeric() => ty = Some(Type::Float),
                (Some(a), found) => {
                    ok &= self.mismatch::<()>(e, &format!("`{a}`"), found).is_ok();
                }
            }
        }
        if !ok {
            return Err(());
        }
        let nodes = items
            .into_iter()
            .map(|(t, _)| match (ty, t.ty) {
                (Some(Type::Float), Some(Type::Int)) => Node::Cast(Box::new(t.node), Type::Float),
                _ => t.node,
            })
            .collect();
        Ok((nodes, ty))
    }

    /// The lower-cased name of a call such as `Lower(x)`.
    fn call_name(&mut self, f: &ast::Function, e: &ast::Expr) -> R<String> {
        match f.name.0.as_slice() {
            [ObjectNamePart::Identifier(id)] => Ok(id.value.to_lowercase()),
            _ => {
                let msg = format!("unknown function `{}`", f.name);
                self.fail("E0304", self.span(e), msg, "not a known function", None)
            }
        }
    }

    /// The arguments of a plain call: `(DISTINCT?, args)`, where `None` stands for `*`.
    fn call_args<'e>(
        &mut self,
        f: &'e ast::Function,
        e: &ast::Expr,
    ) -> R<(bool, Vec<Option<&'e ast::Expr>>)> {
        let plain = !f.uses_odbc_syntax
            && matches!(f.parameters, FunctionArguments::None)
            && f.filter.is_none()
            && f.null_treatment.is_none()
            && f.over.is_none()
            && f.within_group.is_empty();
        let list = match &f.args {
            FunctionArguments::None => return Ok((false, Vec::new())),
            FunctionArguments::List(list) if plain && list.clauses.is_empty() => list,
            _ => {
                let msg = format!("unsupported call syntax in `{}`", f.name);
                return self.fail(
                    "E0305",
                    self.span(e),
                    msg,
                    "only plain arguments are supported",
                    None,
                );
            }
        };
        let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
        let mut args = Vec::new();
        for a in &list.args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(Some(x)),
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => args.push(None),
                _ => {
                    let msg = format!("unsupported argument in `{}`", f.name);
                    return self.fail(
                        "E0305",
                        self.span(e),
                        msg,
                        "only plain arguments are supported",
                        None,
                    );
                }
            }
        }
        Ok((distinct, args))
    }

    fn function(&mut self, f: &ast::Function, e: &ast::Expr) -> R {
        let name = self.call_name(f, e)?;
        let Some(&(_, func)) = FUNCS.iter().find(|(n, _)| *n == name) else {
            let span = self.span(e);
            if AGGREGATES.contains(&name.as_str()) {
                let msg =
                    format!("aggregate function `{name}` cannot be used in a scalar expression");
                let help = Some("aggregates belong in an aggregation's output list".to_string());
                return self.fail("E0304", span, msg, "aggregate not allowed here", help);
            }
            let help = did_you_mean(&name, FUNCS.iter().map(|(n, _)| *n))
                .map(|s| format!("did you mean `{s}`?"));
            return self.fail(
                "E0304",
                span,
                format!("unknown function `{name}`"),
                "unknown function",
                help,
            );
        };
        let (distinct, args) = self.call_args(f, e)?;
        if distinct || args.iter().any(Option::is_none) {
            let msg = format!("`{name}` does not accept DISTINCT or `*`");
            return self.fail("E0305", self.span(e), msg, "wrong arguments", None);
        }
        self.scalar_call(func, &name, args.into_iter().flatten().collect(), e)
    }

    /// `FLOOR(x)` / `CEIL(x)`, which sqlparser parses as dedicated expressions.
    fn floor_ceil(
        &mut self,
        func: Func,
        x: &ast::Expr,
        field: &ast::CeilFloorKind,
        e: &ast::Expr,
    ) -> R {
        let name = if func == Func::Floor { "floor" } else { "ceil" };
        match field {
            ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) => {
                self.scalar_call(func, name, vec![x], e)
            }
            _ => {
                let msg = format!("`{name}` takes exactly 1 argument");
                self.fail("E0305", self.span(e), msg, "wrong arguments", None)
            }
        }
    }

    fn scalar_call(&mut self, func: Func, name: &str, args: Vec<&ast::Expr>, e: &ast::Expr) -> R {
        let (min, max) = match func {
            Func::Round => (1, 2),
            Func::DateTrunc => (2, 2),
            Func::Coalesce | Func::Concat => (1, usize::MAX),
            _ => (1, 1),
        };
        if args.len() < min || args.len() > max {
            let expected = match (min, max) {
                (1, 1) => "exactly 1 argument".to_string(),
                (1, 2) => "1 or 2 arguments".to_string(),
                (2, 2) => "exactly 2 arguments".to_string(),
                _ => "at least 1 argument".to_string(),
            };
            let msg = format!("`{name}` takes {expected}, found {}", args.len());
            return self.fail(
                "E0305",
                self.span(e),
                msg,
                "wrong number of arguments",
                None,
            );
        }
        let compiled: Vec<R> = args.iter().map(|a| self.expr(a)).collect();
        let compiled: Vec<Typed> = compiled.into_iter().collect::<R<_>>()?;
        let first = compiled[0].ty;
        let mut ty = match func {
            Func::Lower | Func::Upper | Func::Length => {
                if !matches!(first, None | Some(Type::String)) {
                    return self.mismatch(args[0], "`string`", first);
                }
                Some(if func == Func::Length {
                    Type::Int
                } else {
                    Type::String
                })
            }
            Func::Abs | Func::Round | Func::Floor | Func::Ceil => {
                let bad_digits = compiled
                    .get(1)
                    .filter(|d| !matches!(d.ty, None | Some(Type::Int)));
                if let Some(d) = bad_digits {
                    self.errors
                        .push(type_error(self.span(args[1]), "`int`", d.ty));
                }
                match first {
                    None => Some(Type::Float),
                    Some(t) if t.is_numeric() && bad_digits.is_none() => Some(t),
                    Some(t) if t.is_numeric() => return Err(()),
                    found => return self.mismatch(args[0], "`int` or `float`", found),
                }
            }
            Func::Concat => Some(Type::String),
            Func::Coalesce => None,
            Func::DateTrunc => {
                let unit_ok = matches!(&compiled[0].node, Node::Const(Value::Str(u))
                    if TRUNC_UNITS.iter().any(|(n, _)| n.eq_ignore_ascii_case(u)));
                if !unit_ok {
                    let units: Vec<&str> = TRUNC_UNITS.iter().map(|u| u.0).collect();
                    let msg = format!(
                        "the first argument of `date_trunc` must be one of '{}'",
                        units.join("', '")
                    );
                    return self.fail("E0305", self.span(args[0]), msg, "not a unit", None);
                }
                if !matches!(compiled[1].ty, None | Some(Type::Timestamp)) {
                    return self.mismatch(args[1], "`timestamp`", compiled[1].ty);
                }
                Some(Type::Timestamp)
            }
        };
        let nodes = if func == Func::Coalesce {
            let (nodes, t) = self.unify(compiled.into_iter().zip(args).collect())?;
            ty = t;
            nodes
        } else {
            compiled.into_iter().map(|t| t.node).collect()
        };
        Ok(Typed {
            node: Node::Func(func, nodes),
            ty,
        })
    }

    fn aggregate(&mut self, e: &ast::Expr) -> R<AggregateCall> {
        let ast::Expr::Function(f) = e else {
            let msg = "expected a single aggregate call such as `sum(x)` or `count(*)`";
            return self.fail("E0301", self.span(e), msg, "not an aggregate call", None);
        };
        let name = self.call_name(f, e)?;
        let func = match name.as_str() {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "min" => AggFunc::Min,
            "max" => AggFunc::Max,
            "avg" => AggFunc::Avg,
            "count_distinct" => AggFunc::CountDistinct,
            _ => {
                let help = did_you_mean(&name, AGGREGATES).map(|s| format!("did you mean `{s}`?"));
                let msg = format!("unknown aggregate function `{name}`");
                return self.fail("E0304", self.span(e), msg, "not an aggregate", help);
            }
        };
        let (distinct, args) = self.call_args(f, e)?;
        let arg = match args.as_slice() {
            [a] => *a,
            _ => {
                let msg = format!("`{name}` takes exactly 1 argument, found {}", args.len());
                return self.fail(
                    "E0305",
                    self.span(e),
                    msg,
                    "wrong number of arguments",
                    None,
                );
            }
        };
        let func = match (func, distinct, arg) {
            (AggFunc::Count, false, None) => {
                return Ok(AggregateCall {
                    func,
                    arg: None,
                    ty: Type::Int,
                })
            }
            (AggFunc::Count, true, Some(_)) => AggFunc::CountDistinct,
            (AggFunc::CountDistinct, _, Some(_)) => AggFunc::CountDistinct,
            (_, false, Some(_)) => func,
            _ => {
                let msg = "DISTINCT and `*` are only allowed in `count(DISTINCT x)` and `count(*)`";
                return self.fail("E0305", self.span(e), msg, "wrong arguments", None);
            }
        };
        let ae = arg.unwrap_or(e);
        let t = self.expr(ae)?;
        let ty = match (func, t.ty) {
            (AggFunc::Count | AggFunc::CountDistinct, _) => Type::Int,
            (AggFunc::Avg, Some(Type::Int | Type::Float)) => Type::Float,
            (AggFunc::Sum, Some(t @ (Type::Int | Type::Float))) => t,
            (AggFunc::Min | AggFunc::Max, Some(t)) => t,
            (AggFunc::Sum | AggFunc::Avg, found) => {
                return self.mismatch(ae, "`int` or `float`", found)
            }
            (_, None) => return self.mismatch(ae, "a typed value", None),
        };
        let span = self.span(ae);
        let text = self.src.text.get(span).unwrap_or(self.src.text).to_string();
        Ok(AggregateCall {
            func,
            arg: Some(Expr {
                text,
                node: t.node,
                ty: t.ty,
            }),
            ty,
        })
    }
}

fn bool_node(node: Node) -> Typed {
    Typed {
        node,
        ty: Some(Type::Bool),
    }
}

fn type_error(span: Range<usize>, expected: &str, found: Option<Type>) -> ExprError {
    let found = tname(found);
    let msg = format!("type mismatch: expected {expected}, found `{found}`");
    error("E0303", span, msg, format!("this is `{found}`"), None)
}

/// The index just past the `)` matching the `(` at `open`, skipping quoted text.
fn matching_close(t: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    for (i, &b) in t.as_bytes().iter().enumerate().skip(open) {
        match (quote, b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(b),
            (None, b'(') => depth += 1,
            (None, b')') => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The start of the identifier-like word ending at `end`.
fn word_start(t: &str, end: usize) -> usize {
    t[..end]
        .trim_end_matches(|c: char| c.is_alphanumeric() || c == '_')
        .len()
}

/// The index after up to `n` words (or `::`-separated type names) following `from`.
fn skip_words(t: &str, from: usize, n: usize) -> usize {
    let mut at = from;
    for _ in 0..n {
        let rest = &t[at..];
        let trimmed = rest.trim_start().trim_start_matches("::").trim_start();
        let word = trimmed.len()
            - trimmed
                .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                .len();
        if word == 0 {
            break;
        }
        at += rest.len() - trimmed.len() + word;
    }
    at
}

fn like_tokens(pattern: &str, escape: Option<char>) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            c if Some(c) == escape => Tok::Lit(chars.next().unwrap_or(c)),
            '%' if toks.last() == Some(&Tok::Many) => continue,
            '%' => Tok::Many,
            '_' => Tok::One,
            c => Tok::Lit(c),
        });
    }
    toks
}

fn like_match(toks: &[Tok], s: &str) -> bool {
    let (mut ti, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        let next = s.get(si..).and_then(|r| r.chars().next());
        match (toks.get(ti), next) {
            (Some(Tok::Many), _) => {
                star = Some((ti, si));
                ti += 1;
                continue;
            }
            (Some(Tok::One), Some(c)) => {
                ti += 1;
                si += c.len_utf8();
                continue;
            }
            (Some(Tok::Lit(p)), Some(c)) if *p == c => {
                ti += 1;
                si += c.len_utf8();
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        let Some((st, ss)) = star else { return false };
        let Some(c) = s.get(ss..).and_then(|r| r.chars().next()) else {
            return false;
        };
        star = Some((st, ss + c.len_utf8()));
        ti = st + 1;
        si = ss + c.len_utf8();
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn truth(v: &Value) -> Option<bool> {
    v.as_bool()
}

fn tri(b: Option<bool>) -> Value {
    b.map_or(Value::Null, Value::Bool)
}

/// 2^63: the first float above every `i64`.
const LIMIT: f64 = (1u64 << 63) as f64;

fn cmp_int_float(i: i64, f: f64) -> Ordering {
    if f.is_nan() || f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let t = f.trunc();
    match i.cmp(&(t as i64)) {
        Ordering::Equal => 0.0.partial_cmp(&(f - t)).unwrap_or(Ordering::Equal),
        o => o,
    }
}

/// Orders two values of comparable types; `None` for NULL or incomparable values.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value as V;
    Some(match (a, b) {
        (V::Int(x), V::Int(y)) | (V::Time(x), V::Time(y)) => x.cmp(y),
        (V::Float(x), V::Float(y)) => x.cmp(y),
        (V::Int(x), V::Float(y)) => cmp_int_float(*x, y.get()),
        (V::Float(x), V::Int(y)) => cmp_int_float(*y, x.get()).reverse(),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        (V::Bool(x), V::Bool(y)) => x.cmp(y),
        _ => return None,
    })
}

fn int_arith(op: ArithOp, a: i64, b: i64) -> Option<i64> {
    match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
        ArithOp::Rem => a.checked_rem(b),
    }
}

fn arith(op: ArithOp, kind: NumKind, a: &Value, b: &Value) -> Value {
    match kind {
        NumKind::Int => match (a, b) {
            (Value::Int(x), Value::Int(y)) => int_arith(op, *x, *y).map_or(Value::Null, Value::Int),
            _ => Value::Null,
        },
        NumKind::Float => match (a.as_f64(), b.as_f64()) {
            (Some(_), Some(y)) if y == 0.0 && matches!(op, ArithOp::Div | ArithOp::Rem) => {
                Value::Null
            }
            (Some(x), Some(y)) => Value::float(match op {
                ArithOp::Add => x + y,
                ArithOp::Sub => x - y,
                ArithOp::Mul => x * y,
                ArithOp::Div => x / y,
                ArithOp::Rem => x % y,
            }),
            _ => Value::Null,
        },
        NumKind::TimeInt | NumKind::TimeTime => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => match int_arith(op, x, y) {
                Some(r) if kind == NumKind::TimeInt => Value::Time(r),
                Some(r) => Value::Int(r),
                None => Value::Null,
            },
            _ => Value::Null,
        },
    }
}

fn f64_to_i64(f: f64) -> Option<i64> {
    let t = f.trunc();
    (t.is_finite() && (-LIMIT..LIMIT).contains(&t)).then_some(t as i64)
}

/// Converts a value to `ty`; NULL when it cannot be converted.
fn cast(v: &Value, ty: Type) -> Value {
    use Value as V;
    let out = match (v, ty) {
        (V::Null, _) => None,
        (v, ty) if v.type_of() == Some(ty) => Some(v.clone()),
        (_, Type::String) => {
            let mut s = String::new();
            v.write_text(&mut s);
            Some(V::Str(CompactString::from(s)))
        }
        (V::Int(i) | V::Time(i), Type::Int) => Some(V::Int(*i)),
        (V::Int(i) | V::Time(i), Type::Float) => Some(V::float(*i as f64)),
        (V::Int(i), Type::Timestamp) => Some(V::Time(*i)),
        (V::Int(i), Type::Bool) => Some(V::Bool(*i != 0)),
        (V::Float(f), Type::Int) => f64_to_i64(f.get()).map(V::Int),
        (V::Float(f), Type::Timestamp) => f64_to_i64(f.get()).map(V::Time),
        (V::Float(f), Type::Bool) => Some(V::Bool(f.get() != 0.0)),
        (V::Bool(b), Type::Int) => Some(V::Int(*b as i64)),
        (V::Bool(b), Type::Float) => Some(V::float(*b as i64 as f64)),
        (V::Str(s), Type::Int) => s.trim().parse().ok().map(V::Int),
        (V::Str(s), Type::Float) => s.trim().parse().ok().map(V::float),
        (V::Str(s), Type::Timestamp) => parse_timestamp(s.trim()).map(V::Time),
        (V::Str(s), Type::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" => Some(V::Bool(true)),
            "false" | "f" | "no" | "n" | "0" => Some(V::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    out.unwrap_or(V::Null)
}

fn round(v: &Value, digits: i64) -> Value {
    match v {
        Value::Int(i) if digits >= 0 => Value::Int(*i),
        Value::Int(i) => {
            let Some(p) = u32::try_from(-digits)
                .ok()
                .and_then(|d| 10i128.checked_pow(d))
            else {
                return Value::Int(0);
            };
            let (x, half) = (*i as i128, p / 2);
            let r = if x >= 0 {
                (x + half) / p * p
            } else {
                (x - half) / p * p
            };
            i64::try_from(r).map_or(Value::Null, Value::Int)
        }
        Value::Float(f) => {
            let x = f.get();
            if digits == 0 {
                return Value::float(x.round());
            }
            let scale = 10f64.powi(digits.clamp(-400, 400) as i32);
            let r = (x * scale).round() / scale;
            Value::float(if r.is_finite() { r } else { x })
        }
        _ => Value::Null,
    }
}

fn call(func: Func, args: &[Node], row: &[Value]) -> Value {
    let arg = |i: usize| {
        args.get(i)
            .map_or(Cow::Owned(Value::Null), |n| eval(n, row))
    };
    match func {
        Func::Coalesce => args
            .iter()
            .map(|n| eval(n, row))
            .find(|v| !v.is_null())
            .map_or(Value::Null, Cow::into_owned),
        Func::Concat => {
            let mut s = String::new();
            for n in args {
                eval(n, row).write_text(&mut s);
            }
            Value::Str(CompactString::from(s))
        }
        Func::Lower | Func::Upper | Func::Length => match &*arg(0) {
            Value::Str(s) => match func {
                Func::Lower => Value::Str(s.to_lowercase()),
                Func::Upper => Value::Str(s.to_uppercase()),
                _ => Value::Int(s.chars().count() as i64),
            },
            _ => Value::Null,
        },
        Func::Abs => match &*arg(0) {
            Value::Int(i) => i.checked_abs().map_or(Value::Null, Value::Int),
            Value::Float(f) => Value::float(f.get().abs()),
            _ => Value::Null,
        },
        Func::Floor | Func::Ceil => match &*arg(0) {
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) if func == Func::Floor => Value::float(f.get().floor()),
            Value::Float(f) => Value::float(f.get().ceil()),
            _ => Value::Null,
        },
        Func::DateTrunc => match (&*arg(0), &*arg(1)) {
            (Value::Str(unit), Value::Time(t)) => {
                let len = TRUNC_UNITS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(unit))
                    .map_or(1, |u| u.1);
                // Weeks start on Monday; the epoch was a Thursday.
                let offset = if len == 7 * 86_400_000 {
                    3 * 86_400_000
                } else {
                    0
                };
                Value::Time(t - (t + offset).rem_euclid(len))
            }
            _ => Value::Null,
        },
        Func::Round => {
            let digits = if args.len() > 1 {
                arg(1).as_i64()
            } else {
                Some(0)
            };
            match digits {
                Some(d) => round(&arg(0), d),
                None => Value::Null,
            }
        }
    }
}

fn eval<'r>(node: &'r Node, row: &'r [Value]) -> Cow<'r, Value> {
    use Cow::{Borrowed, Owned};
    let ev = |n: &'r Node| eval(n, row);
    Owned(match node {
        Node::Field(i) => return row.get(*i).map_or(Owned(Value::Null), Borrowed),
        Node::Const(v) => return Borrowed(v),
        Node::Neg(x) => match &*ev(x) {
            Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
            Value::Float(f) => Value::float(-f.get()),
            _ => Value::Null,
        },
        Node::Arith(op, kind, a, b) => arith(*op, *kind, &ev(a), &ev(b)),
        Node::Cmp(op, a, b) => tri(compare(&ev(a), &ev(b)).map(|o| match op {
            CmpOp::Eq => o.is_eq(),
            CmpOp::Ne => o.is_ne(),
            CmpOp::Lt => o.is_lt(),
            CmpOp::Le => o.is_le(),
            CmpOp::Gt => o.is_gt(),
            CmpOp::Ge => o.is_ge(),
        })),
        Node::And(a, b) => match truth(&ev(a)) {
            Some(false) => Value::Bool(false),
            l => match (l, truth(&ev(b))) {
                (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            },
        },
        Node::Or(a, b) => match truth(&ev(a)) {
            Some(true) => Value::Bool(true),
            l => match (l, truth(&ev(b))) {
                (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            },
        },
        Node::Not(x) => tri(truth(&ev(x)).map(|b| !b)),
        Node::IsNull(x, negated) => Value::Bool(ev(x).is_null() != *negated),
        Node::InList(x, items, negated) => {
            let x = ev(x);
            if x.is_null() {
                return Owned(Value::Null);
            }
            let mut unknown = false;
            for item in items {
                match compare(&x, &ev(item)) {
                    Some(Ordering::Equal) => return Owned(Value::Bool(!negated)),
                    Some(_) => {}
                    None => unknown = true,
                }
            }
            if unknown {
                Value::Null
            } else {
                Value::Bool(*negated)
            }
        }
        Node::Between(x, lo, hi, negated) => {
            let x = ev(x);
            let ge = compare(&x, &ev(lo)).map(Ordering::is_ge);
            let le = compare(&x, &ev(hi)).map(Ordering::is_le);
            let r = match (ge, le) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            };
            tri(r.map(|b| b != *negated))
        }
        Node::Case(operand, whens, else_) => {
            let op = operand.as_ref().map(|o| ev(o));
            for (cond, result) in whens {
                let c = ev(cond);
                let hit = match &op {
                    Some(v) => compare(v, &c) == Some(Ordering::Equal),
                    None => truth(&c) == Some(true),
                };
                if hit {
                    return ev(result);
                }
            }
            return else_.as_ref().map_or(Owned(Value::Null), |e| ev(e));
        }
        Node::Cast(x, ty) => cast(&ev(x), *ty),
        Node::Func(f, args) => call(*f, args, row),
        Node::Like(x, pat, negated) => {
            let x = ev(x);
            let Value::Str(s) = &*x else {
                return Owned(Value::Null);
            };
            let matched = match pat {
                Pattern::Const(toks) => like_match(toks, s),
                Pattern::Dyn(p, esc) => match &*ev(p) {
                    Value::Str(p) => like_match(&like_tokens(p, *esc), s),
                    _ => return Owned(Value::Null),
                },
            };
            Value::Bool(matched != *negated)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new([
            ("id", Type::Int),
            ("price", Type::Float),
            ("name", Type::String),
            ("ok", Type::Bool),
            ("ts", Type::Timestamp),
            ("qty", Type::Int),
        ])
    }

    fn c(text: &str) -> Expr {
        Expr::compile(text, &schema()).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn row() -> Vec<Value> {
        vec![
            Value::Int(7),
            Value::float(2.5),
            Value::str("Widget"),
            Value::Bool(true),
            Value::Time(1_000_000),
            Value::Null,
        ]
    }

    fn ev(text: &str) -> Value {
        c(text).eval(&row())
    }

    fn errs(text: &str) -> Vec<ExprError> {
        match Expr::compile(text, &schema()) {
            Ok(e) => panic!("{text} compiled: {e:?}"),
            Err(e) => e,
        }
    }

    /// The single error's code and the text its span covers.
    fn err1(text: &str) -> (&'static str, String) {
        let e = errs(text);
        assert_eq!(e.len(), 1, "{e:?}");
        (e[0].code, text[e[0].span.clone()].to_string())
    }

    #[test]
    fn literals_and_fields() {
        assert_eq!(ev("42"), Value::Int(42));
        assert_eq!(ev("-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(ev("1.5e1"), Value::float(15.0));
        assert_eq!(ev("'it''s'"), Value::str("it's"));
        assert_eq!(ev("TRUE"), Value::Bool(true));
        assert_eq!(ev("NULL"), Value::Null);
        assert_eq!(c("NULL").ty(), None);
        assert_eq!(ev("TIMESTAMP '1970-01-01T00:00:01Z'"), Value::Time(1000));
        let e = c("name");
        assert_eq!(
            (e.as_field(), e.ty(), e.text()),
            (Some(2), Some(Type::String), "name")
        );
        assert_eq!(c("\"price\"").as_field(), Some(1));
        assert_eq!(c("(id)").as_field(), Some(0));
        assert_eq!(c("id + 0").as_field(), None);
        assert_eq!(ev("qty"), Value::Null);
    }

    #[test]
    fn date_trunc_floors_to_utc_units() {
        // 1_000_000 ms = 1970-01-01T00:16:40Z
        assert_eq!(ev("date_trunc('minute', ts)"), Value::Time(960_000));
        assert_eq!(ev("date_trunc('HOUR', ts)"), Value::Time(0));
        assert_eq!(ev("date_trunc('second', ts)"), Value::Time(1_000_000));
        // The week of 1970-01-01 (a Thursday) began on Monday 1969-12-29.
        assert_eq!(ev("date_trunc('week', ts)"), Value::Time(-3 * 86_400_000));
        assert_eq!(c("date_trunc('day', ts)").ty(), Some(Type::Timestamp));
        assert_eq!(
            err1("date_trunc('fortnight', ts)"),
            ("E0305", "'fortnight'".into())
        );
        assert_eq!(err1("date_trunc('day', name)").0, "E0303");
    }

    #[test]
    fn arithmetic() {
        assert_eq!(ev("id * 2 + 1"), Value::Int(15));
        assert_eq!(c("id * 2").ty(), Some(Type::Int));
        assert_eq!(ev("id / 2"), Value::Int(3));
        assert_eq!(ev("id % 4"), Value::Int(3));
        assert_eq!(ev("-id"), Value::Int(-7));
        assert_eq!(ev("id + price"), Value::float(9.5));
        assert_eq!(c("id + price").ty(), Some(Type::Float));
        assert_eq!(ev("price / 0"), Value::Null);
        assert_eq!(ev("id / 0"), Value::Null);
        assert_eq!(ev("id % 0"), Value::Null);
        assert_eq!(ev("9223372036854775807 + 1"), Value::Null);
        assert_eq!(ev("-9223372036854775808 / -1"), Value::Null);
        assert_eq!(ev("-(-9223372036854775808)"), Value::Null);
        assert_eq!(ev("id + qty"), Value::Null);
        assert_eq!(ev("ts + 500"), Value::Time(1_000_500));
        assert_eq!(ev("500 + ts"), Value::Time(1_000_500));
        assert_eq!(ev("ts - 1000000"), Value::Time(0));
        assert_eq!(c("ts - ts").ty(), Some(Type::Int));
        assert_eq!(ev("ts - TIMESTAMP '1970-01-01'"), Value::Int(1_000_000));
        assert_eq!(c("NULL + NULL").ty(), Some(Type::Int));
    }

    #[test]
    fn comparisons() {
        assert_eq!(ev("id = 7"), Value::Bool(true));
        assert_eq!(ev("id = 7.0"), Value::Bool(true));
        assert_eq!(ev("id < 7.5"), Value::Bool(true));
        assert_eq!(ev("price > id"), Value::Bool(false));
        assert_eq!(
            ev("9007199254740993 > 9007199254740992.0"),
            Value::Bool(true)
        );
        assert_eq!(ev("id <> 7"), Value::Bool(false));
        assert_eq!(ev("id != 8"), Value::Bool(true));
        assert_eq!(ev("name >= 'W'"), Value::Bool(true));
        assert_eq!(ev("ok = TRUE"), Value::Bool(true));
        assert_eq!(ev("ts > '1970-01-01T00:00:00Z'"), Value::Bool(true));
        assert_eq!(ev("'1970-01-01' <= ts"), Value::Bool(true));
        assert_eq!(
            ev("ts = TIMESTAMP '1970-01-01T00:16:40Z'"),
            Value::Bool(true)
        );
        assert_eq!(ev("qty = 1"), Value::Null);
        assert_eq!(ev("id = NULL"), Value::Null);
    }

    #[test]
    fn three_valued_logic() {
        let t = |s: &str| ev(s);
        let (tr, fa, nu) = (Value::Bool(true), Value::Bool(false), Value::Null);
        assert_eq!(t("TRUE AND NULL"), nu);
        assert_eq!(t("FALSE AND NULL"), fa);
        assert_eq!(t("NULL AND FALSE"), fa);
        assert_eq!(t("NULL AND NULL"), nu);
        assert_eq!(t("TRUE AND TRUE"), tr);
        assert_eq!(t("TRUE OR NULL"), tr);
        assert_eq!(t("NULL OR TRUE"), tr);
        assert_eq!(t("FALSE OR NULL"), nu);
        assert_eq!(t("FALSE OR FALSE"), fa);
        assert_eq!(t("NOT NULL"), nu);
        assert_eq!(t("NOT ok"), fa);
        assert!(!c("qty > 1").eval_predicate(&row()));
        assert!(c("(NOT (qty > 1)) IS NULL").eval_predicate(&row()));
        assert!(c("ok AND id > 1").eval_predicate(&row()));
    }

    #[test]
    fn null_in_between() {
        assert_eq!(ev("qty IS NULL"), Value::Bool(true));
        assert_eq!(ev("id IS NOT NULL"), Value::Bool(true));
        assert_eq!(ev("id IN (1, 7)"), Value::Bool(true));
        assert_eq!(ev("id IN (1.0, 7.0)"), Value::Bool(true));
        assert_eq!(ev("id NOT IN (1, 2)"), Value::Bool(true));
        assert_eq!(ev("id IN (1, NULL)"), Value::Null);
        assert_eq!(ev("id IN (7, NULL)"), Value::Bool(true));
        assert_eq!(ev("id NOT IN (1, NULL)"), Value::Null);
        assert_eq!(ev("qty IN (1)"), Value::Null);
        assert_eq!(ev("name IN ('a', 'Widget')"), Value::Bool(true));
        assert_eq!(ev("ts IN ('1970-01-01T00:16:40Z')"), Value::Bool(true));
        assert_eq!(ev("id BETWEEN 1 AND 7"), Value::Bool(true));
        assert_eq!(ev("id NOT BETWEEN 1 AND 7"), Value::Bool(false));
        assert_eq!(ev("id BETWEEN 8 AND NULL"), Value::Bool(false));
        assert_eq!(ev("id BETWEEN 1 AND NULL"), Value::Null);
        assert_eq!(ev("price BETWEEN 2 AND 3"), Value::Bool(true));
    }

    #[test]
    fn case_expressions() {
        assert_eq!(
            ev("CASE WHEN id > 5 THEN 'big' ELSE 'small' END"),
            Value::str("big")
        );
        assert_eq!(ev("CASE WHEN qty > 5 THEN 'big' END"), Value::Null);
        assert_eq!(
            ev("CASE id WHEN 1 THEN 'one' WHEN 7 THEN 'seven' END"),
            Value::str("seven")
        );
        assert_eq!(ev("CASE qty WHEN NULL THEN 1 ELSE 2 END"), Value::Int(2));
        let e = c("CASE WHEN ok THEN 1 ELSE 2.5 END");
        assert_eq!(
            (e.ty(), e.eval(&row())),
            (Some(Type::Float), Value::float(1.0))
        );
        assert_eq!(
            c("CASE WHEN ok THEN NULL ELSE 'x' END").ty(),
            Some(Type::String)
        );
    }

    #[test]
    fn casts() {
        assert_eq!(ev("CAST(price AS INT)"), Value::Int(2));
        assert_eq!(ev("CAST(id AS DOUBLE)"), Value::float(7.0));
        assert_eq!(ev("CAST(id AS TEXT)"), Value::str("7"));
        assert_eq!(ev("CAST(price AS VARCHAR)"), Value::str("2.5"));
        assert_eq!(ev("CAST(' 12 ' AS BIGINT)"), Value::Int(12));
        assert_eq!(ev("CAST('x' AS INTEGER)"), Value::Null);
        assert_eq!(ev("CAST('1e300' AS FLOAT)"), Value::float(1e300));
        assert_eq!(ev("CAST(1e300 AS INT)"), Value::Null);
        assert_eq!(ev("CAST('true' AS BOOLEAN)"), Value::Bool(true));
        assert_eq!(
            ev("CAST('1970-01-01T00:00:02Z' AS TIMESTAMP)"),
            Value::Time(2000)
        );
        assert_eq!(
            ev("CAST(ts AS STRING)"),
            Value::str("1970-01-01T00:16:40.000Z")
        );
        assert_eq!(ev("CAST(5 AS REAL)"), Value::float(5.0));
        assert_eq!(ev("id::text"), Value::str("7"));
        assert_eq!(c("CAST(NULL AS INT)").ty(), Some(Type::Int));
        assert_eq!(
            err1("CAST(id AS BLOB)"),
            ("E0303", "CAST(id AS BLOB)".into())
        );
    }

    #[test]
    fn like() {
        assert_eq!(ev("name LIKE 'W%'"), Value::Bool(true));
        assert_eq!(ev("name LIKE '%dg%'"), Value::Bool(true));
        assert_eq!(ev("name LIKE 'W_dget'"), Value::Bool(true));
        assert_eq!(ev("name LIKE 'w%'"), Value::Bool(false));
        assert_eq!(ev("name NOT LIKE '%x'"), Value::Bool(true));
        assert_eq!(ev("'héllo' LIKE 'h_llo'"), Value::Bool(true));
        assert_eq!(ev("'a%b' LIKE 'a!%b' ESCAPE '!'"), Value::Bool(true));
        assert_eq!(ev("'axb' LIKE 'a!%b' ESCAPE '!'"), Value::Bool(false));
        assert_eq!(err1("name LIKE 'a' ESCAPE 'ab'"), ("E0301", "'ab'".into()));
        assert_eq!(ev("'aXbXc' LIKE '%X%X%'"), Value::Bool(true));
        assert_eq!(ev("'' LIKE '%'"), Value::Bool(true));
        assert_eq!(ev("name LIKE lower('W%')"), Value::Bool(false));
        assert_eq!(ev("name LIKE NULL"), Value::Null);
    }

    #[test]
    fn functions() {
        assert_eq!(ev("LOWER(name)"), Value::str("widget"));
        assert_eq!(ev("upper(name)"), Value::str("WIDGET"));
        assert_eq!(ev("length('héllo')"), Value::Int(5));
        assert_eq!(ev("abs(-3)"), Value::Int(3));
        assert_eq!(ev("abs(-9223372036854775808)"), Value::Null);
        assert_eq!(ev("abs(-2.5)"), Value::float(2.5));
        assert_eq!(ev("round(price)"), Value::float(3.0));
        assert_eq!(ev("round(1.23456, 2)"), Value::float(1.23));
        assert_eq!(ev("round(1250, -2)"), Value::Int(1300));
        assert_eq!(ev("round(id)"), Value::Int(7));
        assert_eq!(ev("floor(price)"), Value::float(2.0));
        assert_eq!(ev("ceil(price)"), Value::float(3.0));
        assert_eq!(ev("coalesce(qty, id)"), Value::Int(7));
        assert_eq!(ev("coalesce(qty, price)"), Value::float(2.5));
        assert_eq!(ev("coalesce(qty, NULL)"), Value::Null);
        assert_eq!(c("coalesce(qty, price)").ty(), Some(Type::Float));
        assert_eq!(
            ev("concat(name, '-', id, qty, ok)"),
            Value::str("Widget-7true")
        );
        assert_eq!(ev("lower(NULL)"), Value::Null);
    }

    #[test]
    fn type_errors_point_at_the_operand() {
        let e = errs("id > 1 AND name = 5");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].code, e[0].span.clone()), ("E0303", 18..19));
        assert_eq!(e[0].message, "cannot compare `string` with `int`");
        assert_eq!(err1("price + 'x'"), ("E0303", "'x'".into()));
        assert!(errs("price + 'x'")[0]
            .message
            .contains("expected `int` or `float`, found `string`"));
        assert_eq!(err1("lower(id) = 'a'"), ("E0303", "id".into()));
        assert_eq!(err1("NOT id"), ("E0303", "id".into()));
        assert_eq!(
            err1("ok AND lower( name )"),
            ("E0303", "lower( name )".into())
        );
        assert_eq!(
            err1("CASE WHEN ok THEN 1 ELSE 'x' END"),
            ("E0303", "'x'".into())
        );
        assert_eq!(err1("CASE WHEN id THEN 1 END"), ("E0303", "id".into()));
        assert_eq!(err1("ts > 'yesterday'"), ("E0303", "'yesterday'".into()));
        assert_eq!(err1("ts = name"), ("E0303", "name".into()));
        assert_eq!(err1("id IN (1, 'x')"), ("E0303", "'x'".into()));
        assert_eq!(err1("name LIKE 5"), ("E0303", "5".into()));
        assert_eq!(err1("ts * 2"), ("E0303", "ts".into()));
        assert_eq!(err1("1 +\n  'é' + 2"), ("E0303", "'é'".into()));
        assert_eq!(err1("(name) - 1"), ("E0303", "(name)".into()));
        assert_eq!(err1("round(price, 1.5)"), ("E0303", "1.5".into()));
        assert_eq!(err1("floor( name) + 1"), ("E0303", "name".into()));
        assert_eq!(err1("ceil(name) + 1"), ("E0303", "name".into()));
        assert_eq!(
            err1("ok OR FLOOR (price)"),
            ("E0303", "FLOOR (price)".into())
        );
    }

    #[test]
    fn unknown_names() {
        let e = errs("nme = 'x'");
        assert_eq!((e[0].code, e[0].span.clone()), ("E0302", 0..3));
        assert_eq!(e[0].help.as_deref(), Some("did you mean `name`?"));
        assert_eq!(errs("zzz > 1")[0].help, None);
        let e = errs("lowr(name)");
        assert_eq!((e[0].code, e[0].span.clone()), ("E0304", 0..10));
        assert_eq!(e[0].help.as_deref(), Some("did you mean `lower`?"));
        assert_eq!(err1("sum(id) > 1").0, "E0304");
        assert_eq!(err1("lower(name, id)"), ("E0305", "lower(name, id)".into()));
        assert_eq!(err1("round()").0, "E0305");
        assert_eq!(err1("upper(*)").0, "E0305");
    }

    #[test]
    fn several_errors_at_once() {
        let e = errs("nme = 1 AND price + 'x' > 2 OR foo(1)");
        let codes: Vec<_> = e.iter().map(|e| e.code).collect();
        assert_eq!(codes, ["E0302", "E0303", "E0304"]);
        assert_eq!(e[1].span, 20..23);
    }

    #[test]
    fn syntax_errors() {
        let e = errs("id +");
        assert_eq!((e[0].code, e[0].span.clone()), ("E0301", 3..4));
        assert_eq!(err1("id id"), ("E0301", "id".into()));
        assert_eq!(err1("id = 1)"), ("E0301", ")".into()));
        assert_eq!(errs("")[0].code, "E0301");
        assert_eq!(errs("'unterminated")[0].code, "E0301");
        assert_eq!(err1("99999999999999999999").0, "E0301");
        assert_eq!(errs("(SELECT 1)")[0].code, "E0301");
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflow() {
        const DEEP: usize = 200_000;
        std::thread::Builder::new()
            .stack_size(1 << 21)
            .spawn(|| {
                let deep = format!("1{}", "+1".repeat(DEEP));
                assert_eq!(errs(&deep)[0].code, "E0301");
                let parens = format!("{}1{}", "(".repeat(500), ")".repeat(500));
                assert_eq!(errs(&parens)[0].code, "E0301");
                let fine = format!("1{}", " + 1".repeat(MAX_DEPTH - 2));
                assert_eq!(ev(&fine), Value::Int(MAX_DEPTH as i64 - 1));
                let ors = format!("id = 0{}", " OR id = 0".repeat(MAX_DEPTH - 4));
                let too_deep = errs(&format!("{ors}{}", " OR ok".repeat(10)));
                assert_eq!(too_deep[0].code, "E0301");
                assert!(too_deep[0].message.contains("nested too deeply"));
                assert_eq!(errs(&format!("{ors} OR id = 'x'"))[0].code, "E0303");
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn unexpected_row_values_give_null() {
        let wrong = vec![
            Value::str("x"),
            Value::Bool(true),
            Value::Int(1),
            Value::Int(2),
        ];
        for text in [
            "id + 1",
            "price * 2",
            "lower(name)",
            "ok AND TRUE",
            "ts + 1",
            "name LIKE 'a'",
            "abs(id)",
        ] {
            let e = c(text);
            assert_eq!(e.eval(&wrong), Value::Null, "{text}");
            assert_eq!(e.eval(&[]), Value::Null, "{text}");
            assert!(!e.eval_predicate(&[]));
        }
    }

    #[test]
    fn aggregates() {
        let s = schema();
        let agg = |t: &str| compile_aggregate(t, &s).unwrap_or_else(|e| panic!("{t}: {e:?}"));
        let a = agg("count(*)");
        assert_eq!(
            (a.func, a.arg.is_none(), a.ty),
            (AggFunc::Count, true, Type::Int)
        );
        let a = agg("COUNT(name)");
        assert_eq!((a.func, a.ty), (AggFunc::Count, Type::Int));
        let a = agg("count(DISTINCT name)");
        assert_eq!((a.func, a.ty), (AggFunc::CountDistinct, Type::Int));
        assert_eq!(a.arg.as_ref().map(Expr::text), Some("name"));
        assert_eq!(agg("sum(id)").ty, Type::Int);
        let a = agg("sum(price * id)");
        assert_eq!(
            (a.ty, a.arg.as_ref().map(Expr::text)),
            (Type::Float, Some("price * id"))
        );
        assert_eq!(agg("min(name)").ty, Type::String);
        assert_eq!(agg("max(ts)").ty, Type::Timestamp);
        assert_eq!(agg("avg(id)").ty, Type::Float);
        let err = |t: &str| compile_aggregate(t, &s).unwrap_err();
        let e = err("sum(name)");
        assert_eq!((e[0].code, e[0].span.clone()), ("E0303", 4..8));
        let e = err("cont(id)");
        assert_eq!(
            (e[0].code, e[0].help.as_deref()),
            ("E0304", Some("did you mean `count`?"))
        );
        assert_eq!(err("sum(*)")[0].code, "E0305");
        assert_eq!(err("sum(DISTINCT id)")[0].code, "E0305");
        assert_eq!(err("sum(id, id)")[0].code, "E0305");
        assert_eq!(err("sum(id) + 1")[0].code, "E0301");
        assert_eq!(err("sum(id) x")[0].code, "E0301");
        assert_eq!(err("avg(nope)")[0].code, "E0302");
    }

    #[test]
    fn expr_is_send_sync() {
        fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
        check::<Expr>();
        check::<AggregateCall>();
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::Int),
                any::<f64>().prop_map(Value::float),
                "[a-zé%_]{0,6}".prop_map(|s| Value::str(&s)),
                any::<i64>().prop_map(Value::Time),
            ]
        }

        const EXPRS: [&str; 14] = [
            "id * qty + id / qty - id % qty",
            "price / price * id - price % 0.5",
            "ts - ts + (ts + id) - ts",
            "round(price, id) + round(id, qty) + abs(id) + floor(price) + ceil(price)",
            "CAST(name AS INT) + CAST(price AS INT) + CAST(ts AS INT)",
            "CAST(id AS TIMESTAMP) < ts OR CAST(name AS BOOLEAN)",
            "name LIKE name AND upper(name) NOT LIKE '%_%'",
            "concat(id, price, name, ok, ts) LIKE lower(name)",
            "CASE id WHEN qty THEN price WHEN 1 THEN id ELSE NULL END",
            "coalesce(qty, id, -id)",
            "id BETWEEN qty AND price AND price IN (id, qty, 1.5)",
            "NOT ok OR ok AND id IS NULL",
            "CAST(price AS TEXT) = CAST(id AS VARCHAR)",
            "-id + -price",
        ];

        proptest! {
            #[test]
            fn compile_never_panics(text in "\\PC{0,40}") {
                let _ = Expr::compile(&text, &schema());
                let _ = compile_aggregate(&text, &schema());
            }

            #[test]
            fn compile_never_panics_on_sqlish(parts in prop::collection::vec(prop_oneof![
                Just("id"), Just("name"), Just("+"), Just("-"), Just("("), Just(")"), Just("'x'"),
                Just("AND"), Just("NOT"), Just("CASE"), Just("WHEN"), Just("THEN"), Just("END"),
                Just("IN"), Just(","), Just("lower("), Just("CAST("), Just("AS INT"), Just("="),
                Just("NULL"), Just("1"), Just("2.5"), Just("LIKE"), Just("IS"), Just("BETWEEN"),
                Just("\n"), Just("é"), Just("::"), Just("*"), Just("count("), Just("DISTINCT"),
            ], 0..16)) {
                let text = parts.join(" ");
                if let Err(errors) = Expr::compile(&text, &schema()) {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        prop_assert!(text.get(e.span.clone()).is_some(), "{:?} in {:?}", e, text);
                    }
                }
                let _ = compile_aggregate(&text, &schema());
            }

            #[test]
            fn eval_never_panics(row in prop::collection::vec(value(), 0..7)) {
                for text in EXPRS {
                    let e = c(text);
                    let _ = e.eval(&row);
                    let _ = e.eval_predicate(&row);
                }
            }
        }
    }
}
