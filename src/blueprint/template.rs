//! A revision's template with its CEL expressions evaluated (the `cel` crate, CEL's standard
//! library). Pure.
//!
//! In a string value, `${expr}` is an expression: a string that is exactly one expression
//! becomes the expression's value (any JSON type), one inside a longer string is replaced by
//! its text (strings, numbers and booleans only), and `$${` is a literal `${`. Object keys
//! are never expressions. Expressions see two variables: `params` (the parameters, defaults
//! applied) and `instance` (`name`, `namespace`, `labels` of the SolutionStack).
//!
//! The template is the partner's; everything about it is bounded: its size, the number and
//! length of its expressions (the parser also bounds nesting), and the size of what they
//! produce, so a template can neither exhaust the operator nor its stack.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr};
use cel::{Context, Env, IdedExpr, Program, Value as Cel};
use serde_json::{Map, Value};

/// Largest template, in bytes of its JSON form.
pub const MAX_TEMPLATE: usize = 64 * 1024;
/// Most expressions in a template.
pub const MAX_EXPRESSIONS: usize = 256;
/// Longest expression, in bytes.
pub const MAX_EXPRESSION: usize = 1024;
/// Largest rendered template, in bytes of its JSON form.
pub const MAX_RENDERED: usize = 256 * 1024;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// What the expressions of one instance see.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    /// `params`: the instance's parameters, defaults applied.
    pub params: Map<String, Value>,
    /// `instance.name`.
    pub name: String,
    /// `instance.namespace`.
    pub namespace: String,
    /// `instance.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A template that could not be expanded: `path` names the field inside the template
/// (`components[0].replicas`), `message` says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Where in the template, e.g. `components[0].replicas` (empty: the whole template).
    pub path: String,
    /// Why, e.g. `no such key: replica`.
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Stack of the thread that parses and evaluates expressions, in bytes. The `cel` parser
/// recurses per nesting level and per chained operator, tens of kilobytes a level in a debug
/// build: 50 nested parentheses overflow a 2 MiB stack (a tokio worker's), which aborts the
/// process. Measured on this crate's `cel` (0.15): the worst expressions within
/// `MAX_EXPRESSION` (512 nested parentheses or brackets, 256 chained `+` or selections) need
/// under 64 MiB in a debug build; only the pages touched are ever resident.
pub const EVALUATION_STACK: usize = 64 << 20;

/// Runs `work` (anything that parses or evaluates expressions) on a thread with
/// [`EVALUATION_STACK`], waiting for it.
///
/// Errors: the thread could not be started (the system is out of threads or memory).
pub fn isolated<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("cel".into()).stack_size(EVALUATION_STACK);
        let handle =
            thread.spawn_scoped(scope, work).map_err(|e| format!("cannot start the expression thread: {e}"))?;
        handle.join().map_err(|_| "the expression thread panicked".to_owned())
    })
}

/// The template with every expression replaced by its value for `vars`. Call it through
/// [`isolated`]: expressions are parsed on the caller's stack.
///
/// Errors: the first expression that does not parse or evaluate, or a bound exceeded
/// (`MAX_TEMPLATE`, `MAX_EXPRESSIONS`, `MAX_EXPRESSION`, `MAX_RENDERED`), naming the field.
pub fn expand(template: &Value, vars: &Vars) -> Result<Value, TemplateError> {
    let size = serde_json::to_vec(template).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_TEMPLATE {
        return Err(whole(format!("the template is {size} bytes; at most {MAX_TEMPLATE} are allowed")));
    }
    let mut context = Context::with_env(ENV.clone());
    context.add_variable_from_value("params", to_cel(&Value::Object(vars.params.clone())));
    let labels: HashMap<String, Cel> = vars.labels.iter().map(|(k, v)| (k.clone(), Cel::from(v.clone()))).collect();
    let instance: HashMap<&str, Cel> = HashMap::from([
        ("name", Cel::from(vars.name.clone())),
        ("namespace", Cel::from(vars.namespace.clone())),
        ("labels", Cel::from(labels)),
    ]);
    context.add_variable_from_value("instance", Cel::from(instance));
    let mut walk = Walk { context, expressions: 0, produced: 0 };
    let rendered = walk.value(template, &mut String::new())?;
    let size = serde_json::to_vec(&rendered).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_RENDERED {
        return Err(whole(format!("the rendered template is {size} bytes; at most {MAX_RENDERED} are allowed")));
    }
    Ok(rendered)
}

fn whole(message: String) -> TemplateError {
    TemplateError { path: String::new(), message }
}

struct Walk<'a> {
    context: Context<'a, 'a>,
    expressions: usize,
    /// Bytes the strings and expressions produced so far.
    produced: usize,
}

impl Walk<'_> {
    fn value(&mut self, value: &Value, path: &mut String) -> Result<Value, TemplateError> {
        match value {
            Value::String(text) => self.string(text, path),
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    out.push(self.value(item, path)?);
                    path.truncate(len);
                }
                Ok(Value::Array(out))
            }
            Value::Object(fields) => {
                let mut out = Map::new();
                for (key, field) in fields {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                    out.insert(key.clone(), self.value(field, path)?);
                    path.truncate(len);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn string(&mut self, text: &str, path: &str) -> Result<Value, TemplateError> {
        let error = |message: String| TemplateError { path: path.to_owned(), message };
        let pieces = split(text).map_err(error)?;
        if let [Piece::Expression(source)] = pieces.as_slice() {
            let value = self.evaluate(source).map_err(error)?;
            let json = value.json().map_err(|_| error(format!("`{source}` gives a value JSON cannot hold")))?;
            // Counted as they come, so a template cannot hold many large values at once.
            self.produced += serde_json::to_vec(&json).map(|v| v.len()).unwrap_or(usize::MAX);
            if self.produced > MAX_RENDERED {
                return Err(error(format!("the rendered template grows past {MAX_RENDERED} bytes")));
            }
            return Ok(json);
        }
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(&text),
                Piece::Expression(source) => match self.evaluate(source).map_err(error)? {
                    Cel::String(s) => out.push_str(&s),
                    Cel::Int(i) => out.push_str(&i.to_string()),
                    Cel::UInt(u) => out.push_str(&u.to_string()),
                    Cel::Float(f) => out.push_str(&f.to_string()),
                    Cel::Bool(b) => out.push_str(&b.to_string()),
                    other => {
                        return Err(error(format!(
                            "`{source}` gives a {:?}, which cannot be part of a string (only a string, number or bool can)",
                            other.type_of()
                        )));
                    }
                },
            }
            if out.len() > MAX_RENDERED {
                return Err(error(format!("the string grows past {MAX_RENDERED} bytes")));
            }
        }
        self.produced += out.len();
        if self.produced > MAX_RENDERED {
            return Err(error(format!("the rendered template grows past {MAX_RENDERED} bytes")));
        }
        Ok(Value::String(out))
    }

    fn evaluate(&mut self, source: &str) -> Result<Cel, String> {
        self.expressions += 1;
        if self.expressions > MAX_EXPRESSIONS {
            return Err(format!("more than {MAX_EXPRESSIONS} expressions in the template"));
        }
        let program = compile(source)?;
        program.execute(&self.context).map_err(|e| format!("`{source}`: {}", describe(&e)))
    }
}

/// What went wrong, naming types, keys and functions but never a value: the `cel` crate's
/// own messages print the values involved (a parameter, a label), and these messages reach
/// conditions, Events and the cluster-scoped blueprint's status.
fn describe(error: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    let message = match error {
        E::NoSuchKey(key) => format!("no such key: {key}"),
        E::UndeclaredReference(name) => format!("undeclared reference to {name}"),
        E::NoSuchOverload(overload) => overload.to_string(),
        E::UnexpectedType { got, want } => format!("expected {want}, got {got}"),
        E::UnsupportedBinaryOperator(op, a, b) => {
            format!("operator {op} does not apply to {:?} and {:?}", a.type_of(), b.type_of())
        }
        E::ValuesNotComparable(a, b) => format!("a {:?} and a {:?} cannot be compared", a.type_of(), b.type_of()),
        E::UnsupportedIndex(index, target) => {
            format!("a {:?} cannot index a {:?}", index.type_of(), target.type_of())
        }
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "remainder by zero".into(),
        E::Overflow(op, _, _) => format!("overflow in {op}"),
        E::IndexOutOfBounds(_) => "index out of bounds".into(),
        E::InvalidArgumentCount { expected, actual } => format!("expected {expected} arguments, got {actual}"),
        E::FunctionError { function, .. } => format!("{function} failed"),
        E::MissingArgumentOrTarget => "missing argument or target".into(),
        _ => "cannot be evaluated".into(),
    };
    crate::error::bounded(&message, 256)
}

/// Parses one expression (bounded in length; the parser bounds nesting).
///
/// Errors: the expression is too long or does not parse.
pub fn compile(source: &str) -> Result<Program, String> {
    if source.len() > MAX_EXPRESSION {
        return Err(format!("an expression is {} bytes; at most {MAX_EXPRESSION} are allowed", source.len()));
    }
    let program = ENV
        .compile(source)
        .map_err(|e| format!("`{source}` does not parse: {}", crate::error::bounded(&e.to_string(), 256)))?;
    if nesting(program.expression()) > 1 {
        return Err(format!("`{source}`: a macro (map, filter, all, exists) inside another is not allowed"));
    }
    Ok(program)
}

/// How deep comprehensions (the macros) nest. CEL here has no cost limit, and each level
/// multiplies the work by a list's length: one level is linear in the expression and its
/// inputs, two could allocate without bound.
fn nesting(expr: &IdedExpr) -> usize {
    let deepest = |exprs: &mut dyn Iterator<Item = &IdedExpr>| exprs.map(nesting).max().unwrap_or(0);
    match &expr.expr {
        Expr::Comprehension(c) => {
            1 + deepest(&mut [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result].into_iter())
        }
        Expr::Call(call) => deepest(&mut call.target.iter().map(|t| t.as_ref()).chain(call.args.iter())),
        Expr::List(list) => deepest(&mut list.elements.iter()),
        Expr::Map(map) => deepest(&mut map.entries.iter().flat_map(entry_exprs)),
        Expr::Struct(s) => deepest(&mut s.entries.iter().flat_map(entry_exprs)),
        Expr::Select(select) => nesting(&select.operand),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    }
}

fn entry_exprs(entry: &IdedEntryExpr) -> Vec<&IdedExpr> {
    match &entry.expr {
        EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
        EntryExpr::StructField(f) => vec![&f.value],
    }
}

/// Every expression of a template, with the path of the string holding it: for checks that
/// need no values (they all parse; they name only `params` and `instance`).
pub fn expressions(template: &Value) -> Vec<(String, String)> {
    fn walk(value: &Value, path: String, out: &mut Vec<(String, String)>) {
        match value {
            Value::String(text) => {
                for piece in split(text).unwrap_or_default() {
                    if let Piece::Expression(source) = piece {
                        out.push((path.clone(), source.to_owned()));
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{i}]"), out);
                }
            }
            Value::Object(fields) => {
                for (key, field) in fields {
                    walk(field, if path.is_empty() { key.clone() } else { format!("{path}.{key}") }, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(template, String::new(), &mut out);
    out
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(String),
    Expression(&'a str),
}

/// Splits a string into text and `${...}` expressions. The closing brace is the first `}`
/// outside quotes and outside braces opened inside the expression (a map literal).
fn split(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${`: a literal `${`.
            literal.push_str(&rest[..at - 1]);
            literal.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        literal.push_str(&rest[..at]);
        let body = &rest[at + 2..];
        let end = closing(body).ok_or_else(|| "a `${` without its closing `}`".to_owned())?;
        if !literal.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut literal)));
        }
        let source = body[..end].trim();
        if source.is_empty() {
            return Err("an empty `${}`".into());
        }
        pieces.push(Piece::Expression(source));
        rest = &body[end + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

/// Byte index of the `}` that closes an expression body.
fn closing(body: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '{' => depth += 1,
                '}' if depth == 0 => return Some(i),
                '}' => depth -= 1,
                _ => {}
            },
        }
    }
    None
}

/// A JSON value as CEL sees it: whole numbers that fit are `int` (JSON has one number type;
/// CEL would otherwise refuse `params.replicas + 1` between `uint` and `int`).
fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Cel::Int(i),
            (None, Some(u), _) => Cel::UInt(u),
            (_, _, f) => Cel::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::from(s.clone()),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => {
            Cel::from(fields.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect::<HashMap<String, Cel>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> Vars {
        Vars {
            params: json!({"replicas": 2, "city": "hanoi", "zones": ["a", "b"], "analytics": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            name: "traffic".into(),
            namespace: "hanoi-transport".into(),
            labels: [("tier".to_owned(), "gold".to_owned())].into(),
        }
    }

    #[test]
    fn whole_strings_give_typed_values_and_embedded_ones_text() {
        let template = json!({
            "components": [{
                "name": "api",
                "image": "registry.example/${params.city}-api:1.${params.replicas + 1}",
                "replicas": "${params.replicas * 2}",
                "env": [{"name": "ZONES", "value": "${params.zones[0]},${params.zones[1]}"}],
                "enabled": "${params.analytics}",
                "note": "$${not.an.expression} for ${instance.namespace}/${instance.name} (${instance.labels.tier})",
                "map": "${ {'a': {'b': 1}} }",
                "port": 8080
            }]
        });
        let out = expand(&template, &vars());
        assert_eq!(
            out,
            Ok(json!({
                "components": [{
                    "name": "api",
                    "image": "registry.example/hanoi-api:1.3",
                    "replicas": 4,
                    "env": [{"name": "ZONES", "value": "a,b"}],
                    "enabled": true,
                    "note": "${not.an.expression} for hanoi-transport/traffic (gold)",
                    "map": {"a": {"b": 1}},
                    "port": 8080
                }]
            }))
        );
    }

    #[test]
    fn errors_name_the_field_and_the_expression() {
        let err = |template: Value| expand(&template, &vars()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err(json!({"components": [{"replicas": "${params.replica}"}]}))
                .starts_with("components[0].replicas: `params.replica`")
        );
        assert!(err(json!({"a": "${params.city + 1}"})).starts_with("a: `params.city + 1`"));
        assert!(err(json!({"a": "${params.city"})).contains("without its closing"));
        assert!(err(json!({"a": "${ 1 + }"})).contains("does not parse"));
        assert!(err(json!({"a": "x ${params.zones}"})).contains("cannot be part of a string"));
        assert!(err(json!({"a": "${secrets.x}"})).starts_with("a: `secrets.x`"));
    }

    #[test]
    fn bounds_hold_against_hostile_templates() {
        isolated(hostile).unwrap_or_else(|e| panic!("{e}"));
    }

    fn hostile() {
        let nested = format!("${{{}1{}}}", "(".repeat(5000), ")".repeat(5000));
        assert!(expand(&json!({"a": nested}), &vars()).is_err());
        // The deepest and longest chains that fit in MAX_EXPRESSION parse (or are refused)
        // without exhausting the stack.
        for (open, close) in [("(", ")"), ("[", "]")] {
            let deep = format!("${{{}1{}}}", open.repeat(510), close.repeat(510));
            assert!(expand(&json!({"a": deep}), &vars()).is_err());
        }
        let selections = format!("${{params{}}}", ".a".repeat(500));
        assert!(expand(&json!({"a": selections}), &vars()).is_err());
        let sums = format!("${{{}1}}", "1+".repeat(500));
        assert_eq!(expand(&json!({"a": sums}), &vars()), Ok(json!({"a": 501})));
        let many: Vec<Value> = (0..=MAX_EXPRESSIONS).map(|_| json!("${1}")).collect();
        assert!(expand(&json!({"a": many}), &vars()).is_err_and(|e| e.message.contains("expressions")));
        let big = "x".repeat(MAX_TEMPLATE);
        assert!(expand(&json!({"a": big}), &vars()).is_err_and(|e| e.message.contains("template is")));
        let nested_macros = "${params.zones.map(a, params.zones.map(b, b))}";
        assert!(expand(&json!({"a": nested_macros}), &vars()).is_err_and(|e| e.message.contains("inside another")));
        let chain = format!("${{{}1}}", "1 + ".repeat(250));
        assert_eq!(expand(&json!({"a": chain}), &vars()), Ok(json!({"a": 251})));
        // Growth by expressions is bounded too.
        let wide = format!("${{[{}]}}", vec!["params.zones"; 70].join(","));
        assert!(expand(&json!({"a": [wide.clone(), wide.clone(), wide.clone()]}), &vars()).is_ok());
        let mut long = vars();
        long.params.insert("long".into(), json!("x".repeat(1000)));
        let copies = format!("${{[{}]}}", vec!["params.long"; 80].join(","));
        let lots = vec![json!(copies); 4];
        assert!(expand(&json!({"a": lots}), &long).is_err_and(|e| e.message.contains("rendered template")));
    }

    #[test]
    fn evaluation_errors_name_no_value() {
        let mut secretive = vars();
        secretive.params.insert("token".into(), json!("s3cr3t"));
        for expression in ["${params.token + 1}", "${params.token < 1}", "${params.token[1]}", "${int(params.token)}"] {
            let message =
                expand(&json!({"a": expression}), &secretive).err().map(|e| e.to_string()).unwrap_or_default();
            let shown = message.replace("params.token", "");
            assert!(!shown.contains("s3cr3t") && !message.is_empty(), "{message}");
        }
    }

    #[test]
    fn expressions_are_listed_with_their_paths() {
        let template = json!({"components": [{"name": "x-${instance.name}", "replicas": "${params.replicas}"}]});
        assert_eq!(
            expressions(&template),
            [
                ("components[0].name".to_owned(), "instance.name".to_owned()),
                ("components[0].replicas".to_owned(), "params.replicas".to_owned())
            ]
        );
    }
}
