//! Short syntax to long syntax, on one file's model before it is merged with others, as
//! Docker Compose does it (its `transform` step): ports, volumes, depends_on, environment and
//! label lists, build strings, env_file, service networks, secrets and configs, include and
//! extends. Called by the loader after validation, so every value has a shape the schema
//! allows; a short form that the schema lets through but that does not parse (a port
//! `80:80:80:80`) is an error naming its key.

use serde_json::{json, Map, Value};

/// A short-syntax value that does not parse; the pointer names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ShortSyntaxError {
    /// JSON pointer of the value.
    pub pointer: String,
    /// What is wrong.
    pub message: String,
}

fn err(pointer: String, message: String) -> ShortSyntaxError {
    ShortSyntaxError { pointer, message }
}

/// Rewrites every short form of `doc` (a whole file) into the long form.
pub fn canonical(doc: &mut Value) -> Result<(), ShortSyntaxError> {
    let Some(map) = doc.as_object_mut() else { return Ok(()) };
    if let Some(Value::Array(includes)) = map.get_mut("include") {
        for include in includes.iter_mut() {
            include_entry(include);
        }
    }
    for kind in ["networks", "volumes", "secrets", "configs"] {
        if let Some(Value::Object(resources)) = map.get_mut(kind) {
            for value in resources.values_mut() {
                if value.is_null() {
                    *value = json!({});
                }
                if let Some(labels) = value.get_mut("labels") {
                    *labels = list_to_map(labels, "");
                }
            }
        }
    }
    if let Some(Value::Object(services)) = map.get_mut("services") {
        for (name, service) in services.iter_mut() {
            if service.is_null() {
                *service = json!({});
            }
            if let Some(s) = service.as_object_mut() {
                service_entry(s, &format!("/services/{}", crate::yaml::pointer_token(name)))?;
            }
        }
    }
    Ok(())
}

fn include_entry(include: &mut Value) {
    if let Value::String(path) = include {
        *include = json!({"path": [path.clone()]});
    }
    if let Some(Value::String(path)) = include.get("path").cloned() {
        include["path"] = json!([path]);
    }
    if let Some(Value::String(file)) = include.get("env_file").cloned() {
        include["env_file"] = json!([file]);
    }
}

fn service_entry(s: &mut Map<String, Value>, at: &str) -> Result<(), ShortSyntaxError> {
    if let Some(Value::String(context)) = s.get("build").cloned() {
        s.insert("build".into(), json!({ "context": context }));
    }
    if let Some(build) = s.get_mut("build").and_then(Value::as_object_mut) {
        for key in ["args", "labels"] {
            if let Some(v) = build.get_mut(key) {
                *v = list_to_map(v, if key == "args" { "null" } else { "" });
            }
        }
    }
    if let Some(Value::String(service)) = s.get("extends").cloned() {
        s.insert("extends".into(), json!({ "service": service }));
    }
    for key in ["environment", "labels", "annotations", "sysctls"] {
        if let Some(v) = s.get_mut(key) {
            *v = list_to_map(v, if key == "environment" { "null" } else { "" });
        }
    }
    if let Some(deploy_labels) = s.get_mut("deploy").and_then(|d| d.get_mut("labels")) {
        *deploy_labels = list_to_map(deploy_labels, "");
    }
    for key in ["dns", "dns_search", "tmpfs", "env_file", "label_file"] {
        if let Some(Value::String(one)) = s.get(key).cloned() {
            s.insert(key.into(), json!([one]));
        }
    }
    if let Some(Value::Array(files)) = s.get_mut("env_file") {
        for f in files.iter_mut() {
            if let Value::String(path) = f {
                *f = json!({"path": path.clone(), "required": true});
            } else if let Some(m) = f.as_object_mut() {
                m.entry("required").or_insert(Value::Bool(true));
            }
        }
    }
    if let Some(Value::Array(deps)) = s.get("depends_on").cloned() {
        let map: Map<String, Value> = deps
            .iter()
            .filter_map(Value::as_str)
            .map(|d| (d.to_string(), json!({"condition": "service_started", "required": true})))
            .collect();
        s.insert("depends_on".into(), Value::Object(map));
    } else if let Some(Value::Object(deps)) = s.get_mut("depends_on") {
        for dep in deps.values_mut() {
            if let Some(d) = dep.as_object_mut() {
                d.entry("required").or_insert(Value::Bool(true));
            }
        }
    }
    if let Some(Value::Array(nets)) = s.get("networks").cloned() {
        let map: Map<String, Value> =
            nets.iter().filter_map(Value::as_str).map(|n| (n.to_string(), Value::Null)).collect();
        s.insert("networks".into(), Value::Object(map));
    }
    for key in ["secrets", "configs"] {
        if let Some(Value::Array(items)) = s.get_mut(key) {
            for item in items.iter_mut() {
                if let Value::String(source) = item {
                    *item = json!({ "source": source.clone() });
                }
            }
        }
    }
    if let Some(Value::Array(devices)) = s.get_mut("devices") {
        for d in devices.iter_mut() {
            if let Value::String(spec) = d {
                *d = device_entry(spec);
            }
        }
    }
    if let Some(hosts) = s.get("extra_hosts").cloned() {
        s.insert("extra_hosts".into(), extra_hosts(&hosts));
    }
    if let Some(Value::Array(expose)) = s.get_mut("expose") {
        for e in expose.iter_mut() {
            if let Value::Number(n) = e {
                *e = Value::String(n.to_string());
            }
        }
    }
    if let Some(Value::Array(ports)) = s.get("ports").cloned() {
        let mut long = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            long.extend(port_entry(port).map_err(|m| err(format!("{at}/ports/{i}"), m))?);
        }
        s.insert("ports".into(), Value::Array(long));
    }
    if let Some(Value::Array(volumes)) = s.get_mut("volumes") {
        for (i, volume) in volumes.iter_mut().enumerate() {
            if let Value::String(spec) = volume {
                *volume = volume_entry(spec).map_err(|m| err(format!("{at}/volumes/{i}"), m))?;
            }
        }
    }
    Ok(())
}

/// `HOST[:CONTAINER][:PERMISSIONS]` as `{source, target, permissions}`.
fn device_entry(spec: &str) -> Value {
    let parts: Vec<&str> = spec.split(':').collect();
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (source, target, permissions) = match parts.as_slice() {
        [s] => (*s, *s, "rwm"),
        [s, p] if is_perms(p) => (*s, *s, *p),
        [s, t] => (*s, *t, "rwm"),
        [s, t, p, ..] => (*s, *t, *p),
        [] => (spec, spec, "rwm"),
    };
    json!({"source": source, "target": target, "permissions": permissions})
}

/// `extra_hosts` as a list or a mapping, as sorted `HOST=IP` entries (`HOST:IP` also read).
fn extra_hosts(hosts: &Value) -> Value {
    let mut entries: Vec<String> = match hosts {
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|e| match e.split_once('=') {
                Some(_) => e.to_string(),
                None => e.split_once(':').map(|(h, ip)| format!("{h}={ip}")).unwrap_or_else(|| e.to_string()),
            })
            .collect(),
        Value::Object(map) => map
            .iter()
            .flat_map(|(h, ips)| match ips {
                Value::Array(list) => {
                    list.iter().map(|ip| format!("{h}={}", ip.as_str().unwrap_or_default())).collect::<Vec<_>>()
                }
                Value::String(ip) => vec![format!("{h}={ip}")],
                other => vec![format!("{h}={other}")],
            })
            .collect(),
        _ => return hosts.clone(),
    };
    entries.sort();
    json!(entries)
}

/// `["A=1", "B"]` → `{A: "1", B: null}`; a mapping's numbers and booleans become strings.
/// `bare` is what a key without `=` maps to: `null` for environment and build args (the
/// value comes from the shell), `""` for labels.
fn list_to_map(v: &Value, bare: &str) -> Value {
    let bare_value = || if bare == "null" { Value::Null } else { Value::String(String::new()) };
    match v {
        Value::Array(items) => {
            let mut map = Map::new();
            for item in items {
                let text = match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match text.split_once('=') {
                    Some((k, val)) => map.insert(k.to_string(), Value::String(val.to_string())),
                    None => map.insert(text, bare_value()),
                };
            }
            Value::Object(map)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, val)| {
                    let val = match val {
                        Value::Null if bare != "null" => Value::String(String::new()),
                        Value::Number(n) => Value::String(n.to_string()),
                        Value::Bool(b) => Value::String(b.to_string()),
                        other => other.clone(),
                    };
                    (k.clone(), val)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One entry of `ports`, short or long, as the long entries it stands for (a range of
/// container ports is one entry per port).
fn port_entry(port: &Value) -> Result<Vec<Value>, String> {
    match port {
        Value::Number(n) => Ok(vec![json!({"mode": "ingress", "target": n, "protocol": "tcp"})]),
        Value::String(spec) => parse_port(spec),
        Value::Object(map) => {
            let mut m = map.clone();
            m.entry("mode").or_insert(json!("ingress"));
            m.entry("protocol").or_insert(json!("tcp"));
            if let Some(Value::String(t)) = m.get("target") {
                let t: u64 = t.parse().map_err(|_| format!("invalid container port {t:?}"))?;
                m.insert("target".into(), json!(t));
            }
            if let Some(Value::Number(p)) = m.get("published") {
                let p = p.to_string();
                m.insert("published".into(), json!(p));
            }
            Ok(vec![Value::Object(m)])
        }
        other => Err(format!("invalid port {other}")),
    }
}

fn port_range(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("invalid port or range {text:?}");
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u64 = a.parse().map_err(|_| bad())?;
    let b: u64 = b.parse().map_err(|_| bad())?;
    if b < a || b > 65535 {
        return Err(bad());
    }
    Ok((a, b))
}

/// `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]`, as Docker parses it.
pub fn parse_port(spec: &str) -> Result<Vec<Value>, String> {
    let (rest, protocol) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    if protocol.is_empty() {
        return Err(format!("invalid port {spec:?}: no protocol after /"));
    }
    // An IPv6 host address is written in brackets.
    let (ip, rest) = match rest.strip_prefix('[') {
        Some(after) => {
            let (ip, tail) = after.split_once(']').ok_or_else(|| format!("invalid port {spec:?}: unclosed ["))?;
            (ip.to_string(), tail.strip_prefix(':').ok_or_else(|| format!("invalid port {spec:?}"))?)
        }
        None => (String::new(), rest),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match (ip.is_empty(), parts.as_slice()) {
        (true, [c]) => (String::new(), "", *c),
        (true, [h, c]) => (String::new(), *h, *c),
        (true, [i, h, c]) => (i.to_string(), *h, *c),
        (false, [h, c]) => (ip, *h, *c),
        _ => return Err(format!("invalid port {spec:?}: use [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")),
    };
    let (start, end) = port_range(container)?;
    let host_range = if host.is_empty() { None } else { Some(port_range(host)?) };
    if let Some((hs, he)) = host_range {
        if he - hs != end - start && end != start {
            return Err(format!("invalid port {spec:?}: the host and container ranges differ in size"));
        }
    }
    let mut out = Vec::new();
    for (i, target) in (start..=end).enumerate() {
        let mut m = Map::new();
        m.insert("mode".into(), json!("ingress"));
        if !ip.is_empty() {
            m.insert("host_ip".into(), json!(ip));
        }
        m.insert("target".into(), json!(target));
        match host_range {
            Some((hs, he)) if end == start && he != hs => {
                m.insert("published".into(), json!(format!("{hs}-{he}")));
            }
            Some((hs, _)) => {
                m.insert("published".into(), json!((hs + i as u64).to_string()));
            }
            None => {}
        }
        m.insert("protocol".into(), json!(protocol));
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// `[SOURCE:]TARGET[:MODE]`: a bind mount when the source is a path (`.`, `/` or `~`
/// first), else a named volume; without a source, an anonymous volume.
pub fn volume_entry(spec: &str) -> Result<Value, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(format!("invalid volume {spec:?}: use [SOURCE:]TARGET[:MODE]")),
    };
    if target.is_empty() {
        return Err(format!("invalid volume {spec:?}: no target"));
    }
    let is_path = source.starts_with(['.', '/', '~']);
    let kind = if source.is_empty() || !is_path { "volume" } else { "bind" };
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    if !source.is_empty() {
        m.insert("source".into(), json!(source));
    }
    m.insert("target".into(), json!(target));
    let mut bind = Map::new();
    let mut volume = Map::new();
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => {
                m.insert("read_only".into(), json!(true));
            }
            "rw" => {}
            "z" | "Z" => {
                bind.insert("selinux".into(), json!(option));
            }
            "nocopy" => {
                volume.insert("nocopy".into(), json!(true));
            }
            "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {
                bind.insert("propagation".into(), json!(option));
            }
            "cached" | "delegated" | "consistent" => {
                m.insert("consistency".into(), json!(option));
            }
            other => return Err(format!("invalid volume {spec:?}: unknown mode {other:?}")),
        }
    }
    if kind == "bind" {
        m.insert("bind".into(), Value::Object(bind));
    } else {
        m.insert("volume".into(), Value::Object(volume));
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand_as_docker_parses_them() {
        assert_eq!(parse_port("80").unwrap(), vec![json!({"mode": "ingress", "target": 80, "protocol": "tcp"})]);
        assert_eq!(
            parse_port("127.0.0.1:8000-8001:80-81/udp").unwrap(),
            vec![
                json!({"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "8000", "protocol": "udp"}),
                json!({"mode": "ingress", "host_ip": "127.0.0.1", "target": 81, "published": "8001", "protocol": "udp"}),
            ]
        );
        assert_eq!(parse_port("9000-9010:80").unwrap()[0]["published"], json!("9000-9010"));
        assert_eq!(parse_port("[::1]:80:81").unwrap()[0]["host_ip"], json!("::1"));
        for bad in ["a", "1:2:3:4", "90-80", "80-81:90-99", "70000", "80/"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_tell_binds_from_named_volumes() {
        assert_eq!(
            volume_entry("data:/d:ro").unwrap(),
            json!({"type": "volume", "source": "data", "target": "/d", "read_only": true, "volume": {}})
        );
        assert_eq!(volume_entry("./x:/x:z").unwrap()["bind"], json!({"selinux": "z"}));
        assert_eq!(volume_entry("/anon").unwrap(), json!({"type": "volume", "target": "/anon", "volume": {}}));
        assert!(volume_entry("a:b:c:d").is_err());
        assert!(volume_entry("a:/b:bogus").is_err());
    }

    #[test]
    fn lists_become_maps() {
        let mut doc = json!({"services": {"a": {"environment": ["A=1", "B", "C=x=y"], "labels": ["l"], "depends_on": ["b"],
            "networks": ["n"], "build": "./ctx", "env_file": ".env", "secrets": ["s"], "expose": [80]}}});
        canonical(&mut doc).unwrap();
        let a = &doc["services"]["a"];
        assert_eq!(a["environment"], json!({"A": "1", "B": null, "C": "x=y"}));
        assert_eq!(a["labels"], json!({"l": ""}));
        assert_eq!(a["depends_on"], json!({"b": {"condition": "service_started", "required": true}}));
        assert_eq!(a["networks"], json!({"n": null}));
        assert_eq!(a["build"], json!({"context": "./ctx"}));
        assert_eq!(a["env_file"], json!([{"path": ".env", "required": true}]));
        assert_eq!(a["secrets"], json!([{"source": "s"}]));
        assert_eq!(a["expose"], json!(["80"]));
    }
}
