//! The function library available inside `${ ... }`.

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

/// Every function: name, minimum and maximum argument count (None = any), one-line signature.
pub const FUNCTIONS: &[(&str, usize, Option<usize>, &str)] = &[
    ("base64decode", 1, Some(1), "base64decode(text) → the decoded text"),
    ("base64encode", 1, Some(1), "base64encode(text) → base64 of the text"),
    ("coalesce", 1, None, "coalesce(a, b, ...) → the first argument that is not null or empty"),
    ("concat", 0, None, "concat(list, list, ...) → one list"),
    ("contains", 2, Some(2), "contains(list, value) → bool"),
    ("distinct", 1, Some(1), "distinct(list) → the list without repeats, first occurrence kept"),
    ("element", 2, Some(2), "element(list, index) → the item at index, wrapping around"),
    ("file", 1, Some(1), "file(path) → the file's text (relative to the desired-state file)"),
    ("flatten", 1, Some(1), "flatten(list of lists) → one list"),
    ("format", 1, None, "format(spec, values...) → text; %s, %d, %v and %%"),
    ("join", 2, Some(2), "join(separator, list) → text"),
    ("jsonencode", 1, Some(1), "jsonencode(value) → JSON text"),
    ("index", 2, Some(2), "index(list, value) → position of value in list"),
    ("keys", 1, Some(1), "keys(map) → sorted list of keys"),
    ("length", 1, Some(1), "length(list | map | text) → number"),
    ("lookup", 2, Some(3), "lookup(map, key, default?) → the value at key"),
    ("lower", 1, Some(1), "lower(text) → text"),
    ("merge", 0, None, "merge(map, map, ...) → one map, later keys win"),
    ("pairs", 1, Some(1), "pairs(list | map) → every ordered pair [a, b] of distinct items (keys for a map)"),
    ("replace", 3, Some(3), "replace(text, search, replacement) → text"),
    ("sha256", 1, Some(1), "sha256(text) → hexadecimal digest"),
    ("sort", 1, Some(1), "sort(list of text) → sorted list"),
    ("split", 2, Some(2), "split(separator, text) → list"),
    ("templatefile", 1, Some(1), "templatefile(\"path\") → the file's text with its ${...} references rendered"),
    ("tostring", 1, Some(1), "tostring(value) → text"),
    ("trimspace", 1, Some(1), "trimspace(text) → text without surrounding whitespace"),
    ("upper", 1, Some(1), "upper(text) → text"),
    ("values", 1, Some(1), "values(map) → list of values in key order"),
];

/// Functions that work on structure and so can pass unknown items through.
const STRUCTURAL: &[&str] =
    &["pairs", "concat", "length", "flatten", "merge", "keys", "lookup", "element", "coalesce", "values"];

/// Checks a call's name and argument count; returns a message and a suggestion.
pub fn check_call(name: &str, argc: usize) -> Result<(), (String, Option<String>)> {
    match FUNCTIONS.iter().find(|f| f.0 == name) {
        None => {
            Err((format!("unknown function `{name}`"), crate::config::suggest(name, FUNCTIONS.iter().map(|f| f.0))))
        }
        Some((_, min, max, sig)) => {
            if argc < *min || max.is_some_and(|m| argc > m) {
                let want = match max {
                    Some(m) if m == min => format!("{min}"),
                    Some(m) => format!("{min} to {m}"),
                    None => format!("at least {min}"),
                };
                let noun = if want == "1" { "argument" } else { "arguments" };
                Err((format!("{name}() takes {want} {noun}, {argc} given"), Some(format!("usage: {sig}"))))
            } else {
                Ok(())
            }
        }
    }
}

/// Calls a function. Unknown arguments make an unknown result, except for functions that only
/// rearrange structure.
pub fn call(name: &str, args: Vec<Value>, ctx: &CallCtx<'_>) -> Result<Value, String> {
    check_call(name, args.len()).map_err(|(m, _)| m)?;
    if args.iter().any(|a| matches!(a, Value::Unknown))
        || (!STRUCTURAL.contains(&name) && args.iter().any(Value::has_unknown))
    {
        return Ok(Value::Unknown);
    }
    let argc = args.len();
    let mut a = args.into_iter();
    let mut next = || a.next().unwrap_or(Value::Null);
    Ok(match name {
        "base64encode" => Value::String(base64::engine::general_purpose::STANDARD.encode(text(&next())?)),
        "base64decode" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text(&next())?.trim())
                .map_err(|e| format!("not valid base64: {e}"))?;
            Value::String(String::from_utf8(bytes).map_err(|_| "the decoded bytes are not UTF-8 text".to_string())?)
        }
        "coalesce" => {
            let mut found = Value::Null;
            for v in std::iter::from_fn(|| Some(next())).take(argc) {
                let empty = matches!(&v, Value::Null) || v.as_str() == Some("");
                if !empty {
                    found = v;
                    break;
                }
            }
            found
        }
        "concat" => {
            let mut out = Vec::new();
            for v in std::iter::from_fn(|| Some(next())).take(argc) {
                out.extend(list(v)?);
            }
            Value::List(out)
        }
        "contains" => {
            let l = list(next())?;
            let x = next();
            Value::Bool(l.iter().any(|i| i.same_as(&x)))
        }
        "distinct" => {
            let mut out: Vec<Value> = Vec::new();
            for i in list(next())? {
                if !out.iter().any(|o| o.same_as(&i)) {
                    out.push(i);
                }
            }
            Value::List(out)
        }
        "element" => {
            let l = list(next())?;
            let i = int(&next())?;
            if l.is_empty() {
                return Err("element() of an empty list".into());
            }
            l[i.rem_euclid(l.len() as i64) as usize].clone()
        }
        "file" => {
            let rel = text(&next())?;
            let path = ctx.dir.join(&rel);
            let data = crate::files::read_text(&path)
                .map_err(|why| format!("cannot read {rel:?} (relative to this file's directory): {why}"))?;
            if let Some(files) = ctx.files
                && let Ok(mut f) = files.lock()
            {
                f.insert(rel, sha256_hex(data.as_bytes()));
            }
            Value::String(data)
        }
        "flatten" => {
            let mut out = Vec::new();
            for i in list(next())? {
                match i {
                    Value::List(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            Value::List(out)
        }
        "format" => {
            let spec = text(&next())?;
            let rest: Vec<Value> = std::iter::from_fn(|| Some(next())).take(argc - 1).collect();
            Value::String(format_spec(&spec, &rest)?)
        }
        "join" => {
            let sep = text(&next())?;
            let parts = list(next())?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
            Value::String(parts.join(&sep))
        }
        "index" => {
            let l = list(next())?;
            let x = next();
            Value::Int(l.iter().position(|i| i.same_as(&x)).ok_or_else(|| format!("{x} is not in the list"))? as i64)
        }
        "jsonencode" => Value::String(next().to_plain_json().to_string()),
        "keys" => Value::List(map(next())?.into_keys().map(Value::String).collect()),
        "length" => Value::Int(match next() {
            Value::List(l) => l.len(),
            Value::Map(m) => m.len(),
            Value::String(s) => s.chars().count(),
            other => return Err(format!("length() takes a list, map or text, not a {}", other.type_name())),
        } as i64),
        "lookup" => {
            let m = map(next())?;
            let k = text(&next())?;
            let default = next();
            match m.get(&k) {
                Some(v) => v.clone(),
                None if !matches!(default, Value::Null) => default,
                None => return Err(format!("no key {k:?}; give lookup() a third argument as the default")),
            }
        }
        "lower" => Value::String(text(&next())?.to_lowercase()),
        "upper" => Value::String(text(&next())?.to_uppercase()),
        "merge" => {
            let mut out = Map::new();
            for v in std::iter::from_fn(|| Some(next())).take(argc) {
                out.extend(map(v)?);
            }
            Value::Map(out)
        }
        "pairs" => {
            let items: Vec<Value> = match next() {
                Value::Map(m) => m.into_keys().map(Value::String).collect(),
                other => list(other)?,
            };
            if items.iter().any(Value::has_unknown) {
                return Ok(Value::Unknown);
            }
            // Repeated items count once: every pair is distinct, so it can key a for_each.
            let mut unique: Vec<Value> = Vec::with_capacity(items.len());
            for v in items {
                if !unique.iter().any(|u| u.same_as(&v)) {
                    unique.push(v);
                }
            }
            let mut out = Vec::new();
            for (i, a) in unique.iter().enumerate() {
                for (j, b) in unique.iter().enumerate() {
                    if i != j {
                        out.push(Value::List(vec![a.clone(), b.clone()]));
                    }
                }
            }
            Value::List(out)
        }
        "replace" => {
            let s = text(&next())?;
            let from = text(&next())?;
            let to = text(&next())?;
            if from.is_empty() {
                return Err("replace() needs a non-empty search text".into());
            }
            Value::String(s.replace(&from, &to))
        }
        "sha256" => Value::String(sha256_hex(text(&next())?.as_bytes())),
        "sort" => {
            let mut l = list(next())?.iter().map(text).collect::<Result<Vec<_>, _>>()?;
            l.sort();
            Value::List(l.into_iter().map(Value::String).collect())
        }
        "split" => {
            let sep = text(&next())?;
            let s = text(&next())?;
            if s.is_empty() {
                Value::List(Vec::new())
            } else {
                Value::List(s.split(sep.as_str()).map(Value::str).collect())
            }
        }
        "tostring" => Value::String(text(&next())?),
        "trimspace" => Value::String(text(&next())?.trim().to_string()),
        "values" => Value::List(map(next())?.into_values().collect()),
        other => return Err(format!("unknown function `{other}`")),
    })
}

fn text(v: &Value) -> Result<String, String> {
    v.to_interpolated().ok_or_else(|| format!("expected text, found a {}", v.type_name()))
}

fn list(v: Value) -> Result<Vec<Value>, String> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(format!("expected a list, found a {}", other.type_name())),
    }
}

fn map(v: Value) -> Result<Map, String> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(format!("expected a map, found a {}", other.type_name())),
    }
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
        other => Err(format!("expected a whole number, found a {}", other.type_name())),
    }
}

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
}
