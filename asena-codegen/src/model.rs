//! What a document says, in the terms the generator needs: endpoints (the channels at one
//! address, served as one WebSocket), their path parameters, and the messages each side
//! sends.
//!
//! A document describes the server. An operation `action: receive` lists messages clients
//! send; `action: send` lists messages the server sends; a `reply` goes the other way on the
//! same connection. An operation without `messages` means all of its channel's messages; a
//! message no operation names is sent by neither side, and nothing is generated for it.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Error;
use crate::source::{Loc, Sources};

/// The document, read.
#[derive(Debug)]
pub struct Api {
    pub title: String,
    pub version: String,
    pub description: Option<String>,
    pub endpoints: Vec<Endpoint>,
}

/// The channels at one address: one WebSocket path, one contract.
#[derive(Debug)]
pub struct Endpoint {
    /// The channel's key, or for several channels at one address a name made from it.
    pub name: String,
    /// The path, with a leading `/`, e.g. `/user/events/{userId}`.
    pub path: String,
    /// The channel's `description`, for the contract's docs.
    pub description: Option<String>,
    /// The keys of the document's channels at this address, in document order.
    pub channels: Vec<String>,
    /// The parameters of the address, in the order they appear in it.
    pub params: Vec<Param>,
    /// What clients send (the server's `receive` operations, and replies to its `send`s).
    pub receives: Vec<Msg>,
    /// What the server sends (its `send` operations, and replies to its `receive`s).
    pub sends: Vec<Msg>,
    /// Every operation on these channels, for the contract's docs.
    pub operations: Vec<Operation>,
}

/// A path parameter. AsyncAPI 3 parameters are strings, optionally from an `enum`.
#[derive(Debug)]
pub struct Param {
    /// The name between braces in the address.
    pub name: String,
    /// Its `description`.
    pub description: Option<String>,
    /// Its `enum`: the only values it takes (a Rust enum), or any string when `None`.
    pub values: Option<Vec<String>>,
}

/// A message, resolved.
#[derive(Debug, Clone)]
pub struct Msg {
    /// The message's key in its channel.
    pub key: String,
    /// Where the message object is.
    pub loc: Loc,
    /// Its `name`, which names its variant in the generated enums (else its key does).
    pub name: Option<String>,
    /// Its `description`, else its `summary`, else its `title`.
    pub doc: Option<String>,
    /// Where the payload schema is (`None`: the message has no payload schema).
    pub payload: Option<Loc>,
    /// The payloads of the message's `examples`.
    pub examples: Vec<Value>,
}

/// An operation, for listings and docs.
#[derive(Debug)]
pub struct Operation {
    /// Its key in `operations`.
    pub name: String,
    /// Whether the server sends or receives its messages.
    pub action: Action,
    /// The key of its channel.
    pub channel: String,
    /// The keys of its messages in that channel.
    pub messages: Vec<String>,
    /// The keys of its reply's messages, when it has a reply.
    pub reply: Vec<String>,
}

/// Who sends an operation's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The server sends them.
    Send,
    /// The server receives them.
    Receive,
}

impl Api {
    /// Reads the model from the loaded document.
    pub fn read(sources: &Sources) -> Result<Api, Error> {
        let root = Loc {
            file: 0,
            pointer: String::new(),
        };
        let doc = sources.root();
        let version = doc.get("asyncapi").and_then(Value::as_str).unwrap_or("");
        if !(version.starts_with("3.0.") || version.starts_with("3.1.")) {
            return Err(sources.error(
                &root.join("asyncapi"),
                format!("AsyncAPI 3.0 or 3.1 documents only; this one says `{version}`"),
            ));
        }
        let info = doc.get("info").cloned().unwrap_or_default();
        let mut reader = Reader {
            sources,
            channels: BTreeMap::new(),
        };
        let channels_loc = root.join("channels");
        for key in keys(sources, &channels_loc)? {
            reader.channel(&channels_loc.join(&key), &key)?;
        }
        let mut operations = Vec::new();
        let operations_loc = root.join("operations");
        for key in keys(sources, &operations_loc)? {
            operations.push(reader.operation(&operations_loc.join(&key), &key)?);
        }
        Ok(Api {
            title: text(&info, "title").unwrap_or_else(|| "API".to_owned()),
            version: text(&info, "version").unwrap_or_default(),
            description: text(&info, "description"),
            endpoints: reader.endpoints(operations)?,
        })
    }
}

fn keys(sources: &Sources, loc: &Loc) -> Result<Vec<String>, Error> {
    match sources.get(loc) {
        Ok(Value::Object(map)) => Ok(map.keys().cloned().collect()),
        Ok(Value::Null) | Err(_) => Ok(Vec::new()),
        Ok(_) => Err(sources.error(loc, "expected an object")),
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// A channel as read, before grouping by address.
#[derive(Debug)]
struct Channel {
    key: String,
    loc: Loc,
    path: String,
    description: Option<String>,
    params: Vec<Param>,
    messages: Vec<Msg>,
}

struct Reader<'s> {
    sources: &'s Sources,
    /// By the pointer of their definition (what operations' `$ref`s resolve to).
    channels: BTreeMap<Loc, Channel>,
}

impl Reader<'_> {
    fn channel(&mut self, at: &Loc, key: &str) -> Result<(), Error> {
        let sources = self.sources;
        let (loc, value) = sources.resolve(at)?;
        let address = match value.get("address") {
            Some(Value::String(address)) => address.clone(),
            Some(Value::Null) | None => {
                return Err(sources.error(
                    &loc.join("address"),
                    "a channel without an address cannot be served: give it one",
                ));
            }
            Some(_) => return Err(sources.error(&loc.join("address"), "expected a string")),
        };
        let path = if address.starts_with('/') {
            address.clone()
        } else {
            format!("/{address}")
        };
        check_path(&path).map_err(|m| sources.error(&loc.join("address"), m))?;
        let in_path = path_params(&path);
        let declared = value.get("parameters").and_then(Value::as_object);
        let mut params = Vec::new();
        for name in &in_path {
            if declared.and_then(|d| d.get(name.as_str())).is_none() {
                params.push(Param {
                    name: name.clone(),
                    description: None,
                    values: None,
                });
                continue;
            }
            let (ploc, p) = sources.resolve(&loc.join("parameters").join(name))?;
            let values = match p.get("enum") {
                None => None,
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_owned).ok_or_else(|| {
                                sources.error(&ploc.join("enum"), "parameter values are strings")
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(sources.error(&ploc.join("enum"), "expected a list")),
            };
            params.push(Param {
                name: name.clone(),
                description: text(p, "description"),
                values,
            });
        }
        if let Some(declared) = declared {
            for name in declared.keys() {
                if !in_path.contains(name) {
                    return Err(sources.error(
                        &loc.join("parameters").join(name),
                        format!("parameter `{name}` is not in the address `{address}`"),
                    ));
                }
            }
        }
        let mut messages = Vec::new();
        let messages_loc = loc.join("messages");
        for mkey in keys(sources, &messages_loc)? {
            messages.push(self.message(&messages_loc.join(&mkey), &mkey)?);
        }
        self.channels.insert(
            loc.clone(),
            Channel {
                key: key.to_owned(),
                loc,
                path,
                description: text(value, "description").or_else(|| text(value, "summary")),
                params,
                messages,
            },
        );
        Ok(())
    }

    fn message(&self, at: &Loc, key: &str) -> Result<Msg, Error> {
        let sources = self.sources;
        let (loc, value) = sources.resolve(at)?;
        if value.get("traits").is_some() {
            return Err(sources.error(
                &loc.join("traits"),
                "message traits are not supported; write the fields into the message",
            ));
        }
        if let Some(ct) = value.get("contentType").and_then(Value::as_str)
            && !ct.contains("json")
        {
            return Err(sources.error(
                &loc.join("contentType"),
                format!("only JSON messages are supported, not `{ct}`"),
            ));
        }
        let payload = match value.get("payload") {
            None => None,
            Some(p) => {
                let ploc = loc.join("payload");
                // A multi-format schema object: `schemaFormat` + `schema`.
                if p.get("schemaFormat").is_some() {
                    let format = p["schemaFormat"].as_str().unwrap_or("");
                    if !format.contains("json") && !format.contains("asyncapi") {
                        return Err(sources.error(
                            &ploc.join("schemaFormat"),
                            format!("only JSON Schema and AsyncAPI schemas are supported, not `{format}`"),
                        ));
                    }
                    Some(ploc.join("schema"))
                } else {
                    Some(ploc)
                }
            }
        };
        let examples = match value.get("examples") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|e| e.get("payload").cloned())
                .collect(),
            _ => Vec::new(),
        };
        Ok(Msg {
            key: key.to_owned(),
            loc,
            name: text(value, "name"),
            doc: ["description", "summary", "title"]
                .iter()
                .find_map(|key| text(value, key)),
            payload,
            examples,
        })
    }

    fn channel_at(&self, at: &Loc, reference: &Value) -> Result<&Channel, Error> {
        let sources = self.sources;
        if reference.get("$ref").is_none() {
            return Err(sources.error(at, "expected a `$ref` to a channel"));
        }
        let (loc, _) = sources.resolve(at)?;
        self.channels
            .get(&loc)
            .ok_or_else(|| sources.error(at, "this `$ref` names no channel of `channels`"))
    }

    /// The keys of the messages `list` (references into `channel`'s messages) names; all of
    /// the channel's when `list` is absent.
    fn pick(
        &self,
        at: &Loc,
        list: Option<&Value>,
        channel: &Channel,
    ) -> Result<Vec<String>, Error> {
        let sources = self.sources;
        let Some(list) = list else {
            return Ok(channel.messages.iter().map(|m| m.key.clone()).collect());
        };
        let Value::Array(items) = list else {
            return Err(sources.error(at, "expected a list of `$ref`s"));
        };
        let mut keys = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_loc = at.join(i);
            let Some(Value::String(target)) = item.get("$ref") else {
                return Err(
                    sources.error(&item_loc, "expected a `$ref` to a message of the channel")
                );
            };
            let (loc, _) = sources.resolve(&item_loc)?;
            let found = channel
                .messages
                .iter()
                .find(|m| m.loc == loc || target.ends_with(&format!("/messages/{}", m.key)));
            match found {
                Some(m) => keys.push(m.key.clone()),
                None => {
                    return Err(sources.error(
                        &item_loc,
                        format!(
                            "`{target}` is not a message of the channel `{}`",
                            channel.key
                        ),
                    ));
                }
            }
        }
        Ok(keys)
    }

    fn operation(&self, at: &Loc, key: &str) -> Result<(Operation, Loc), Error> {
        let sources = self.sources;
        let (loc, value) = sources.resolve(at)?;
        if value.get("traits").is_some() {
            return Err(sources.error(
                &loc.join("traits"),
                "operation traits are not supported; write the fields into the operation",
            ));
        }
        let action = match value.get("action").and_then(Value::as_str) {
            Some("send") => Action::Send,
            Some("receive") => Action::Receive,
            _ => return Err(sources.error(&loc.join("action"), "expected `send` or `receive`")),
        };
        let channel_ref = value.get("channel").cloned().unwrap_or_default();
        let channel = self.channel_at(&loc.join("channel"), &channel_ref)?;
        let messages = self.pick(&loc.join("messages"), value.get("messages"), channel)?;
        let mut reply = Vec::new();
        let mut reply_loc = channel.loc.clone();
        if value.get("reply").is_some() {
            let (rloc, r) = sources.resolve(&loc.join("reply"))?;
            if r.get("address").is_some() {
                return Err(sources.error(
                    &rloc.join("address"),
                    "a reply address is not supported: a WebSocket reply travels on the request's connection",
                ));
            }
            let reply_channel = match r.get("channel") {
                Some(c) => self.channel_at(&rloc.join("channel"), c)?,
                None => channel,
            };
            reply = self.pick(&rloc.join("messages"), r.get("messages"), reply_channel)?;
            reply_loc = reply_channel.loc.clone();
        }
        let operation = Operation {
            name: key.to_owned(),
            action,
            channel: channel.key.clone(),
            messages,
            reply,
        };
        Ok((operation, reply_loc))
    }

    fn endpoints(self, operations: Vec<(Operation, Loc)>) -> Result<Vec<Endpoint>, Error> {
        let sources = self.sources;
        let mut by_path: BTreeMap<String, Vec<&Channel>> = BTreeMap::new();
        for channel in self.channels.values() {
            by_path
                .entry(channel.path.clone())
                .or_default()
                .push(channel);
        }
        let mut endpoints = Vec::new();
        for (path, channels) in by_path {
            let first = channels[0];
            for other in &channels[1..] {
                let same = other.params.len() == first.params.len()
                    && other
                        .params
                        .iter()
                        .zip(&first.params)
                        .all(|(a, b)| a.name == b.name && a.values == b.values);
                if !same {
                    return Err(sources.error(
                        &other.loc.join("parameters"),
                        format!(
                            "the channels `{}` and `{}` share the address `{path}` but not its parameters",
                            first.key, other.key
                        ),
                    ));
                }
            }
            let keys: Vec<String> = channels.iter().map(|c| c.key.clone()).collect();
            let name = if channels.len() == 1 {
                first.key.clone()
            } else {
                path_name(&path)
            };
            let description = if channels.len() == 1 {
                first.description.clone()
            } else {
                Some(format!(
                    "The channels {} at `{path}`.",
                    keys.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            };
            let mut receives: Vec<Msg> = Vec::new();
            let mut sends: Vec<Msg> = Vec::new();
            let mut ops = Vec::new();
            for (op, reply_channel) in &operations {
                if !keys.contains(&op.channel) {
                    continue;
                }
                let channel = channels
                    .iter()
                    .find(|c| c.key == op.channel)
                    .copied()
                    .unwrap_or(first);
                let reply_channel = self.channels.get(reply_channel).unwrap_or(channel);
                let (forward, back) = match op.action {
                    Action::Receive => (&mut receives, &mut sends),
                    Action::Send => (&mut sends, &mut receives),
                };
                for key in &op.messages {
                    add(forward, channel, key);
                }
                for key in &op.reply {
                    add(back, reply_channel, key);
                }
                ops.push(Operation {
                    name: op.name.clone(),
                    action: op.action,
                    channel: op.channel.clone(),
                    messages: op.messages.clone(),
                    reply: op.reply.clone(),
                });
            }
            endpoints.push(Endpoint {
                name,
                path,
                description,
                channels: keys,
                params: std::mem::take(
                    &mut channels[0]
                        .params
                        .iter()
                        .map(|p| Param {
                            name: p.name.clone(),
                            description: p.description.clone(),
                            values: p.values.clone(),
                        })
                        .collect(),
                ),
                receives,
                sends,
                operations: ops,
            });
        }
        Ok(endpoints)
    }
}

/// Adds `channel`'s message `key` to `list` unless the same message is there.
fn add(list: &mut Vec<Msg>, channel: &Channel, key: &str) {
    if let Some(m) = channel.messages.iter().find(|m| m.key == key)
        && !list.iter().any(|have| have.loc == m.loc)
    {
        list.push(m.clone());
    }
}

/// The `{name}`s of a path, in order.
pub fn path_params(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// A name for the endpoint at `path`: its literal segments, or `root` for `/`.
fn path_name(path: &str) -> String {
    let words: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty() && !s.starts_with('{'))
        .collect();
    if words.is_empty() {
        "root".to_owned()
    } else {
        words.join("_")
    }
}

/// What an Asena server accepts as a path (the rules of `#[websocket(path = ..)]`): no
/// query, fragment, space or dot, and `{name}`s that each close before the next opens.
fn check_path(path: &str) -> Result<(), String> {
    if let Some(bad) = path.chars().find(|c| matches!(c, '?' | '#' | ' ' | '.')) {
        return Err(format!(
            "the address `{path}` has `{bad}`, which a WebSocket path of an Asena server cannot"
        ));
    }
    let params_close = path.split('{').skip(1).all(|rest| {
        rest.split_once('}')
            .is_some_and(|(name, _)| !name.is_empty() && !name.contains('}'))
    });
    let stray_close = path
        .split('{')
        .next()
        .is_some_and(|head| head.contains('}'))
        || path.split('{').skip(1).any(|rest| {
            rest.split_once('}')
                .is_some_and(|(_, after)| after.contains('}'))
        });
    if !params_close || stray_close {
        return Err(format!(
            "the address `{path}` has an unbalanced or empty `{{param}}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_path, path_name, path_params};

    #[test]
    fn paths_follow_the_servers_rules() {
        for ok in ["/", "/a/{id}", "/user/events/{userId}/{kind}", "/v1/{a}b"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/a.b", "/a?x", "/a/{", "/a/{}", "/a/}", "/a/{b}}", "/{a{b}}", "/a b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameters_and_names_come_from_the_path() {
        assert_eq!(path_params("/user/{id}/x/{kind}"), ["id", "kind"]);
        assert_eq!(path_name("/v1/marketdata/{symbol}"), "v1_marketdata");
        assert_eq!(path_name("/"), "root");
    }
}
