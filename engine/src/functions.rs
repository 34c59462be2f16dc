//! The function library available inside `${ ... }`: [`FUNCTIONS`] is the one list of them
//! (name, arity, signature, body), read by the argument checks, the evaluator and the "did you
//! mean" suggestions; each built-in is a small function of its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;

use crate::value::{Map, Value, sha256_hex};

/// What a function call can see.
pub struct CallCtx<'a> {
    /// Directory relative `file()` paths resolve against.
    pub dir: &'a Path,
    /// Files read, path → SHA-256 (for saved plans).
    pub files: Option<&'a Mutex<BTreeMap<String, String>>>,
}

/// A built-in's body: its arguments (their number already checked) and what the call can see.
type Body = fn(Args, &CallCtx<'_>) -> Result<Value, String>;

/// One built-in function.
pub struct Function {
    /// Its name.
    pub name: &'static str,
    /// The fewest arguments it takes.
    pub min_args: usize,
    /// The most arguments it takes (`None`: any number).
    pub max_args: Option<usize>,
    /// One-line usage, shown when a call has the wrong number of arguments.
    pub signature: &'static str,
    /// Whether it only rearranges structure, so unknown items inside its arguments pass through
    /// (for any other function, an unknown anywhere in an argument makes the result unknown).
    pub structural: bool,
    body: Body,
}

impl Function {
    const fn new(name: &'static str, min: usize, max: Option<usize>, signature: &'static str, body: Body) -> Self {
        Function { name, min_args: min, max_args: max, signature, structural: false, body }
    }

    const fn structural(self) -> Self {
        Function { structural: true, ..self }
    }

    /// Whether `argc` arguments are right for it.
    pub fn accepts(&self, argc: usize) -> bool {
        argc >= self.min_args && self.max_args.is_none_or(|m| argc <= m)
    }

    /// "2", "2 to 3" or "at least 1": the number of arguments it takes.
    fn arity(&self) -> String {
        let min = self.min_args;
        match self.max_args {
            Some(m) if m == min => format!("{min}"),
            Some(m) => format!("{min} to {m}"),
            None => format!("at least {min}"),
        }
    }
}

/// Every function, by name.
pub static FUNCTIONS: &[Function] = &[
    Function::new("base64decode", 1, Some(1), "base64decode(text) → the decoded text", base64decode),
    Function::new("base64encode", 1, Some(1), "base64encode(text) → base64 of the text", base64encode),
    Function::new(
        "cidrmerge",
        1,
        Some(1),
        "cidrmerge(list of IPv4 CIDR blocks) → the fewest blocks covering exactly the same addresses",
        cidrmerge,
    ),
    Function::new("coalesce", 1, None, "coalesce(a, b, ...) → the first argument that is not null or empty", coalesce)
        .structural(),
    Function::new("concat", 0, None, "concat(list, list, ...) → one list", concat).structural(),
    Function::new("contains", 2, Some(2), "contains(list, value) → bool", contains),
    Function::new("distinct", 1, Some(1), "distinct(list) → the list without repeats, first occurrence kept", distinct),
    Function::new("element", 2, Some(2), "element(list, index) → the item at index, wrapping around", element)
        .structural(),
    Function::new("file", 1, Some(1), "file(path) → the file's text (relative to the desired-state file)", file),
    Function::new("flatten", 1, Some(1), "flatten(list of lists) → one list", flatten).structural(),
    Function::new("format", 1, None, "format(spec, values...) → text; %s, %d, %v and %%", format),
    Function::new("join", 2, Some(2), "join(separator, list) → text", join),
    Function::new("jsonencode", 1, Some(1), "jsonencode(value) → JSON text", jsonencode),
    Function::new("index", 2, Some(2), "index(list, value) → position of value in list", index),
    Function::new("keys", 1, Some(1), "keys(map) → sorted list of keys", keys).structural(),
    Function::new("length", 1, Some(1), "length(list | map | text) → number", length).structural(),
    Function::new("lookup", 2, Some(3), "lookup(map, key, default?) → the value at key", lookup).structural(),
    Function::new("lower", 1, Some(1), "lower(text) → text", lower),
    Function::new("merge", 0, None, "merge(map, map, ...) → one map, later keys win", merge).structural(),
    Function::new(
        "pairs",
        1,
        Some(1),
        "pairs(list | map) → every ordered pair [a, b] of distinct items (keys for a map)",
        pairs,
    )
    .structural(),
    Function::new("replace", 3, Some(3), "replace(text, search, replacement) → text", replace),
    Function::new(
        "setsubtract",
        2,
        Some(2),
        "setsubtract(list, list) → the items of the first that are not in the second, without repeats",
        setsubtract,
    ),
    Function::new(
        "setproduct",
        1,
        None,
        "setproduct(list | map, ...) → every combination [a, b, ...] of one item of each (keys for a map)",
        setproduct,
    )
    .structural(),
    Function::new("sha256", 1, Some(1), "sha256(text) → hexadecimal digest", sha256),
    Function::new("sort", 1, Some(1), "sort(list of text) → sorted list", sort),
    Function::new("split", 2, Some(2), "split(separator, text) → list", split),
    Function::new(
        "templatefile",
        1,
        Some(1),
        "templatefile(\"path\") → the file's text with its ${...} references rendered",
        templatefile,
    ),
    Function::new("tostring", 1, Some(1), "tostring(value) → text", tostring),
    Function::new("trimspace", 1, Some(1), "trimspace(text) → text without surrounding whitespace", trimspace),
    Function::new("upper", 1, Some(1), "upper(text) → text", upper),
    Function::new("values", 1, Some(1), "values(map) → list of values in key order", values).structural(),
];

/// The function called `name`, if there is one.
pub fn lookup_function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The function a call names, if it exists and takes `argc` arguments; else a message and a
/// suggestion (a near name, or the usage).
fn resolve(name: &str, argc: usize) -> Result<&'static Function, (String, Option<String>)> {
    let Some(f) = lookup_function(name) else {
        let near = crate::config::suggest(name, FUNCTIONS.iter().map(|f| f.name));
        return Err((format!("unknown function `{name}`"), near));
    };
    if !f.accepts(argc) {
        let want = f.arity();
        let noun = if want == "1" { "argument" } else { "arguments" };
        return Err((format!("{name}() takes {want} {noun}, {argc} given"), Some(format!("usage: {}", f.signature))));
    }
    Ok(f)
}

/// Checks a call's name and argument count; returns a message and a suggestion.
pub fn check_call(name: &str, argc: usize) -> Result<(), (String, Option<String>)> {
    resolve(name, argc).map(|_| ())
}

/// Calls a function. Unknown arguments make an unknown result, except for functions that only
/// rearrange structure.
pub fn call(name: &str, args: Vec<Value>, ctx: &CallCtx<'_>) -> Result<Value, String> {
    let f = resolve(name, args.len()).map_err(|(m, _)| m)?;
    if args.iter().any(|a| matches!(a, Value::Unknown)) || (!f.structural && args.iter().any(Value::has_unknown)) {
        return Ok(Value::Unknown);
    }
    (f.body)(Args(args.into_iter()), ctx)
}

/// A call's arguments, taken in order; a missing optional argument is null.
struct Args(std::vec::IntoIter<Value>);

impl Args {
    /// The next argument (null when there are no more).
    fn next(&mut self) -> Value {
        self.0.next().unwrap_or(Value::Null)
    }

    /// The next argument as text.
    fn text(&mut self) -> Result<String, String> {
        text(&self.next())
    }

    /// The next argument as a list.
    fn list(&mut self) -> Result<Vec<Value>, String> {
        list(self.next())
    }

    /// The next argument as a map.
    fn map(&mut self) -> Result<Map, String> {
        map(self.next())
    }

    /// The arguments not taken yet.
    fn rest(self) -> std::vec::IntoIter<Value> {
        self.0
    }
}

fn base64encode(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(a.text()?)))
}

fn base64decode(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(a.text()?.trim())
        .map_err(|e| format!("not valid base64: {e}"))?;
    Ok(Value::String(String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8 text".to_string())?))
}

fn coalesce(a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(a.rest().find(|v| !(matches!(v, Value::Null) || v.as_str() == Some(""))).unwrap_or(Value::Null))
}

fn concat(a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let mut out = Vec::new();
    for v in a.rest() {
        out.extend(list(v)?);
    }
    Ok(Value::List(out))
}

fn contains(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let l = a.list()?;
    let x = a.next();
    Ok(Value::Bool(l.iter().any(|i| i.same_as(&x))))
}

fn distinct(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::List(unique(a.list()?)))
}

fn cidrmerge(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let items = a.list()?;
    let texts = items.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    let merged = crate::cidr::merge_text(texts.iter().map(String::as_str))?;
    Ok(Value::List(merged.into_iter().map(Value::String).collect()))
}

fn setsubtract(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let from = a.list()?;
    let minus = a.list()?;
    Ok(Value::List(unique(from).into_iter().filter(|i| !minus.iter().any(|m| m.same_as(i))).collect()))
}

fn element(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let l = a.list()?;
    let i = int(&a.next())?;
    if l.is_empty() {
        return Err("element() of an empty list".into());
    }
    Ok(l[i.rem_euclid(l.len() as i64) as usize].clone())
}

fn file(mut a: Args, ctx: &CallCtx<'_>) -> Result<Value, String> {
    let rel = a.text()?;
    let path = ctx.dir.join(&rel);
    let data = crate::files::read_text(&path)
        .map_err(|why| format!("cannot read {rel:?} (relative to this file's directory): {why}"))?;
    if let Some(files) = ctx.files
        && let Ok(mut f) = files.lock()
    {
        f.insert(rel, sha256_hex(data.as_bytes()));
    }
    Ok(Value::String(data))
}

fn flatten(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let mut out = Vec::new();
    for i in a.list()? {
        match i {
            Value::List(inner) => out.extend(inner),
            other => out.push(other),
        }
    }
    Ok(Value::List(out))
}

fn format(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let spec = a.text()?;
    let rest: Vec<Value> = a.rest().collect();
    Ok(Value::String(format_spec(&spec, &rest)?))
}

fn join(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let sep = a.text()?;
    let parts = a.list()?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    Ok(Value::String(parts.join(&sep)))
}

fn index(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let l = a.list()?;
    let x = a.next();
    Ok(Value::Int(l.iter().position(|i| i.same_as(&x)).ok_or_else(|| format!("{x} is not in the list"))? as i64))
}

fn jsonencode(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(a.next().to_plain_json().to_string()))
}

fn keys(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::List(a.map()?.into_keys().map(Value::String).collect()))
}

fn length(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let n = match a.next() {
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        Value::String(s) => s.chars().count(),
        other => return Err(format!("length() takes a list, map or text, not a {}", other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn lookup(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let m = a.map()?;
    let k = a.text()?;
    let default = a.next();
    match m.get(&k) {
        Some(v) => Ok(v.clone()),
        None if !matches!(default, Value::Null) => Ok(default),
        None => Err(format!("no key {k:?}; give lookup() a third argument as the default")),
    }
}

fn lower(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(a.text()?.to_lowercase()))
}

fn upper(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(a.text()?.to_uppercase()))
}

fn merge(a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let mut out = Map::new();
    for v in a.rest() {
        out.extend(map(v)?);
    }
    Ok(Value::Map(out))
}

fn pairs(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let items: Vec<Value> = match a.next() {
        Value::Map(m) => m.into_keys().map(Value::String).collect(),
        other => list(other)?,
    };
    if items.iter().any(Value::has_unknown) {
        return Ok(Value::Unknown);
    }
    // Repeated items count once: every pair is distinct, so it can key a for_each.
    let unique = unique(items);
    let mut out = Vec::new();
    for (i, x) in unique.iter().enumerate() {
        for (j, y) in unique.iter().enumerate() {
            if i != j {
                out.push(Value::List(vec![x.clone(), y.clone()]));
            }
        }
    }
    Ok(Value::List(out))
}

fn setproduct(a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let mut out: Vec<Vec<Value>> = vec![Vec::new()];
    for arg in a.rest() {
        let items: Vec<Value> = match arg {
            Value::Map(m) => m.into_keys().map(Value::String).collect(),
            other => list(other)?,
        };
        if items.iter().any(Value::has_unknown) {
            return Ok(Value::Unknown);
        }
        let items = unique(items);
        out = out
            .into_iter()
            .flat_map(|prefix| items.iter().map(move |x| [prefix.clone(), vec![x.clone()]].concat()))
            .collect();
    }
    Ok(Value::List(out.into_iter().map(Value::List).collect()))
}

fn replace(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let s = a.text()?;
    let from = a.text()?;
    let to = a.text()?;
    if from.is_empty() {
        return Err("replace() needs a non-empty search text".into());
    }
    Ok(Value::String(s.replace(&from, &to)))
}

fn sha256(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(sha256_hex(a.text()?.as_bytes())))
}

fn sort(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let mut l = a.list()?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
    l.sort();
    Ok(Value::List(l.into_iter().map(Value::String).collect()))
}

fn split(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    let sep = a.text()?;
    let s = a.text()?;
    if s.is_empty() {
        return Ok(Value::List(Vec::new()));
    }
    Ok(Value::List(s.split(sep.as_str()).map(Value::str).collect()))
}

/// `templatefile()` calls are replaced by the file's template when the desired state loads
/// ([`crate::templatefile`]); one left in an expression failed to load and was reported there.
fn templatefile(_: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Err("unknown function `templatefile`".into())
}

fn tostring(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(a.text()?))
}

fn trimspace(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::String(a.text()?.trim().to_string()))
}

fn values(mut a: Args, _: &CallCtx<'_>) -> Result<Value, String> {
    Ok(Value::List(a.map()?.into_values().collect()))
}

/// The items without repeats, first occurrence kept.
fn unique(items: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for i in items {
        if !out.iter().any(|o| o.same_as(&i)) {
            out.push(i);
        }
    }
    out
}

/// A value as text (as it would be interpolated).
fn text(v: &Value) -> Result<String, String> {
    v.to_interpolated().ok_or_else(|| format!("expected text, found a {}", v.type_name()))
}

/// A value that must be a list.
fn list(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(format!("expected a list, found a {}", other.type_name())),
    }
}

/// A value that must be a map.
fn map(v: Value) -> Result<Map, String> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(format!("expected a map, found a {}", other.type_name())),
    }
}

/// A value that must be a whole number.
fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(format!("expected a whole number, found a {}", other.type_name())),
    }
}

/// `format()`: `%s` text, `%d` a whole number, `%v` any value, `%%` a percent sign; every value
/// given must be used.
fn format_spec(spec: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = spec.chars();
    let mut n = 0;
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some(verb @ ('s' | 'd' | 'v')) => {
                let arg =
                    args.get(n).ok_or_else(|| format!("the format has more verbs than the {n} value(s) given"))?;
                n += 1;
                match verb {
                    'd' => out.push_str(&int(arg)?.to_string()),
                    's' => out.push_str(&text(arg)?),
                    _ => out.push_str(&arg.to_interpolated().unwrap_or_else(|| arg.to_string())),
                }
            }
            Some(other) => return Err(format!("unsupported verb `%{other}`; use %s, %d, %v or %%")),
            None => return Err("format spec ends with `%`".into()),
        }
    }
    let given = args.len();
    if n < given {
        return Err(format!("format spec uses {n} values but {given} were given"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, args: Vec<Value>) -> Result<Value, String> {
        call(name, args, &CallCtx { dir: Path::new("."), files: None })
    }

    fn l(items: &[&str]) -> Value {
        Value::List(items.iter().map(|s| Value::str(*s)).collect())
    }

    #[test]
    fn library() {
        assert_eq!(c("join", vec![Value::str(","), l(&["a", "b"])]).unwrap(), Value::str("a,b"));
        assert_eq!(c("concat", vec![l(&["a"]), l(&["b"])]).unwrap(), l(&["a", "b"]));
        assert_eq!(c("distinct", vec![l(&["b", "a", "b"])]).unwrap(), l(&["b", "a"]));
        assert_eq!(c("sort", vec![l(&["b", "a"])]).unwrap(), l(&["a", "b"]));
        assert_eq!(
            c("format", vec![Value::str("%s-%d%%"), Value::str("x"), Value::Int(3)]).unwrap(),
            Value::str("x-3%")
        );
        let enc = c("base64encode", vec![Value::str("hi")]).unwrap();
        assert_eq!(enc, Value::str("aGk="));
        assert_eq!(c("base64decode", vec![enc]).unwrap(), Value::str("hi"));
        let p = c("pairs", vec![l(&["a", "b", "c"])]).unwrap();
        assert_eq!(p.as_list().unwrap().len(), 6);
        assert_eq!(p.as_list().unwrap()[0], l(&["a", "b"]));
        let repeated = c("pairs", vec![l(&["a", "b", "a", "c"])]).unwrap();
        assert_eq!(repeated, p, "a repeated item counts once");
        assert_eq!(c("join", vec![Value::str(","), Value::Unknown]).unwrap(), Value::Unknown);
        assert!(c("format", vec![Value::str("%s %s"), Value::str("x")]).is_err());
    }

    #[test]
    fn arity_and_names() {
        assert!(check_call("jion", 2).unwrap_err().1.unwrap().contains("join"));
        assert!(check_call("join", 1).unwrap_err().0.contains("takes 2 arguments"));
    }

    #[test]
    fn the_table_is_unique_and_consistent() {
        for (i, f) in FUNCTIONS.iter().enumerate() {
            assert!(FUNCTIONS[..i].iter().all(|g| g.name != f.name), "{} is listed twice", f.name);
            assert!(f.signature.starts_with(&format!("{}(", f.name)), "{}: {}", f.name, f.signature);
            assert!(f.max_args.is_none_or(|m| m >= f.min_args), "{}", f.name);
            assert!(check_call(f.name, f.min_args).is_ok(), "{}", f.name);
            assert!(std::ptr::eq(lookup_function(f.name).unwrap(), f));
        }
    }

    /// The README's list of functions (each name in backticks) is the table's.
    #[test]
    fn the_readme_lists_exactly_the_table() {
        let readme = include_str!("../../README.md");
        let start = readme.find("- Functions: ").expect("README lists the functions");
        let end = start + 2 + readme[start + 2..].find("\n- ").expect("the list ends");
        let mut listed: Vec<&str> = readme[start..end]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
            .collect();
        listed.sort();
        let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
        names.sort();
        assert_eq!(listed, names, "README's function list and FUNCTIONS differ");
    }

    /// One call (or more) of every built-in, with its result or its error.
    #[test]
    fn every_builtin() {
        let m = |pairs: &[(&str, Value)]| Value::Map(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
        let ok = |name: &str, args: Vec<Value>| c(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = |name: &str, args: Vec<Value>| c(name, args).unwrap_err();
        assert_eq!(
            ok("coalesce", vec![Value::Null, Value::str(""), Value::str("x"), Value::str("y")]),
            Value::str("x")
        );
        assert_eq!(ok("coalesce", vec![Value::Null]), Value::Null);
        assert_eq!(ok("concat", vec![]), Value::List(vec![]));
        assert_eq!(err("concat", vec![Value::str("a")]), "expected a list, found a string");
        assert_eq!(ok("contains", vec![l(&["a", "b"]), Value::str("b")]), Value::Bool(true));
        assert_eq!(ok("element", vec![l(&["a", "b", "c"]), Value::Int(-1)]), Value::str("c"));
        assert_eq!(ok("element", vec![l(&["a", "b", "c"]), Value::Float(4.0)]), Value::str("b"));
        assert_eq!(err("element", vec![l(&[]), Value::Int(0)]), "element() of an empty list");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), "text\n").unwrap();
        let files = Mutex::new(BTreeMap::new());
        let ctx = CallCtx { dir: dir.path(), files: Some(&files) };
        assert_eq!(call("file", vec![Value::str("f.txt")], &ctx).unwrap(), Value::str("text\n"));
        assert_eq!(files.lock().unwrap().get("f.txt").map(String::len), Some(64));
        assert!(call("file", vec![Value::str("nope.txt")], &ctx).unwrap_err().starts_with("cannot read \"nope.txt\""));
        let nested = Value::List(vec![l(&["a"]), Value::str("b"), l(&["c", "d"])]);
        assert_eq!(ok("flatten", vec![nested]), l(&["a", "b", "c", "d"]));
        assert_eq!(ok("format", vec![Value::str("%v/%v"), Value::Int(1), Value::Bool(true)]), Value::str("1/true"));
        assert_eq!(err("format", vec![Value::str("%q"), Value::Int(1)]), "unsupported verb `%q`; use %s, %d, %v or %%");
        assert_eq!(err("format", vec![Value::str("x"), Value::Int(1)]), "format spec uses 0 values but 1 were given");
        assert_eq!(ok("index", vec![l(&["a", "b"]), Value::str("b")]), Value::Int(1));
        assert!(err("index", vec![l(&["a"]), Value::str("z")]).ends_with("is not in the list"));
        let json = ok("jsonencode", vec![m(&[("a", Value::Int(1))])]);
        assert_eq!(json, Value::str("{\"a\":1}"));
        let map = m(&[("b", Value::Int(2)), ("a", Value::Int(1))]);
        assert_eq!(ok("keys", vec![map.clone()]), l(&["a", "b"]));
        assert_eq!(ok("values", vec![map.clone()]), Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(ok("length", vec![Value::str("héllo")]), Value::Int(5));
        assert_eq!(ok("length", vec![map.clone()]), Value::Int(2));
        assert_eq!(err("length", vec![Value::Int(1)]), "length() takes a list, map or text, not a number");
        assert_eq!(ok("lookup", vec![map.clone(), Value::str("a")]), Value::Int(1));
        assert_eq!(ok("lookup", vec![map.clone(), Value::str("z"), Value::Int(9)]), Value::Int(9));
        assert!(err("lookup", vec![map.clone(), Value::str("z")]).starts_with("no key \"z\""));
        assert_eq!(ok("lower", vec![Value::str("AbC")]), Value::str("abc"));
        assert_eq!(ok("upper", vec![Value::str("AbC")]), Value::str("ABC"));
        let merged = ok("merge", vec![map.clone(), m(&[("a", Value::Int(3))])]);
        assert_eq!(merged, m(&[("a", Value::Int(3)), ("b", Value::Int(2))]));
        assert_eq!(ok("pairs", vec![map.clone()]).as_list().unwrap().len(), 2);
        let product = ok("setproduct", vec![map.clone(), l(&["r1", "r2", "r1"])]);
        let keys: Vec<String> =
            crate::eval::for_each_instances(&product).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), 4, "{keys:?}: a repeated item counts once");
        assert!(keys.iter().all(|k| k.split(',').count() == 2), "{keys:?}");
        assert_eq!(ok("setproduct", vec![l(&["a"]), l(&[])]), Value::List(vec![]), "an empty list: no combination");
        assert_eq!(ok("pairs", vec![Value::List(vec![Value::str("a"), Value::Unknown])]), Value::Unknown);
        assert_eq!(ok("replace", vec![Value::str("a-b-c"), Value::str("-"), Value::str("+")]), Value::str("a+b+c"));
        assert_eq!(
            err("replace", vec![Value::str("a"), Value::str(""), Value::str("+")]),
            "replace() needs a non-empty search text"
        );
        assert_eq!(
            ok("sha256", vec![Value::str("")]),
            Value::str("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(ok("split", vec![Value::str(","), Value::str("a,b")]), l(&["a", "b"]));
        assert_eq!(ok("split", vec![Value::str(","), Value::str("")]), l(&[]));
        assert_eq!(ok("tostring", vec![Value::Int(5)]), Value::str("5"));
        assert_eq!(err("tostring", vec![l(&[])]), "expected text, found a list");
        assert_eq!(ok("trimspace", vec![Value::str("  x \n")]), Value::str("x"));
        assert_eq!(err("templatefile", vec![Value::str("t.yaml")]), "unknown function `templatefile`");
        assert_eq!(err("base64decode", vec![Value::str("%%%")]).split(':').next(), Some("not valid base64"));
        assert_eq!(err("nosuch", vec![]), "unknown function `nosuch`");
        assert_eq!(err("lookup", vec![map.clone()]), "lookup() takes 2 to 3 arguments, 1 given");
        assert_eq!(check_call("merge", 7), Ok(()));
        assert!(check_call("format", 0).unwrap_err().0.starts_with("format() takes at least 1 argument"));
        assert_eq!(check_call("upper", 2).unwrap_err().1.unwrap(), "usage: upper(text) → text");
        // Unknown items pass through the structural functions only.
        let half = Value::List(vec![Value::str("a"), Value::Unknown]);
        assert_eq!(ok("length", vec![half.clone()]), Value::Int(2));
        assert_eq!(ok("sort", vec![half.clone()]), Value::Unknown);
        assert_eq!(ok("length", vec![Value::Unknown]), Value::Unknown);
    }
}
