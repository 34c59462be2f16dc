//! Label and field selectors, as the API server parses them.

use serde_json::Value;

use super::status::KubeError;

#[derive(Debug)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (all requirements must hold).
#[derive(Debug, Default)]
pub struct LabelSelector(Vec<Req>);

fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

fn list(v: &str) -> Option<Vec<String>> {
    let inner = v.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|x| x.trim().to_string()).collect())
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),h,!i`.
    pub fn parse(s: &str) -> Result<LabelSelector, KubeError> {
        let bad = || KubeError::bad_request(format!("unable to parse requirement: invalid label selector \"{s}\""));
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let r = if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Req::NotIn(k.trim().into(), list(v).ok_or_else(bad)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Req::In(k.trim().into(), list(v).ok_or_else(bad)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::Ne(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
                Req::Exists(part.into())
            } else {
                return Err(bad());
            };
            reqs.push(r);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's labels match.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector.
#[derive(Debug, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses `metadata.name=x,type!=y`, allowing only the fields the kind supports.
    pub fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, KubeError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, neg, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, false, v)
            } else {
                return Err(KubeError::bad_request(format!("invalid field selector: {part}")));
            };
            let k = k.trim();
            if !["metadata.name", "metadata.namespace"].contains(&k) && !supported.contains(&k) {
                return Err(KubeError::bad_request(format!("field label not supported: {k}")));
            }
            out.push((k.to_string(), neg, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    /// Whether an object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, neg, v)| {
            let mut cur = obj;
            for p in k.split('.') {
                cur = &cur[p];
            }
            let actual = cur.as_str().unwrap_or("");
            (actual == v) != *neg
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors() {
        let o = json!({"metadata": {"name": "istiod-1", "labels": {"app": "istiod", "istio.io/rev": "asm-173-3"}}});
        assert!(LabelSelector::parse("app=istiod").unwrap().matches(&o));
        assert!(LabelSelector::parse("app in (istiod,x),!missing,istio.io/rev").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app notin (istiod)").unwrap().matches(&o));
        assert!(LabelSelector::parse("team!=x").unwrap().matches(&o));
        assert!(FieldSelector::parse("metadata.name=istiod-1", &[]).unwrap().matches(&o));
        assert!(FieldSelector::parse("spec.foo=bar", &[]).is_err());
    }
}
