//! Reading a document: YAML or JSON files, the files its `$ref`s name, and where every value
//! came from (file and JSON pointer), within fixed bounds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Error;

/// The most bytes of one file.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// The most files one document may span.
pub const MAX_FILES: usize = 64;
/// The most `$ref`s followed in a row to reach a value.
pub const MAX_REF_CHAIN: usize = 32;
/// The most nested arrays and objects in a file.
pub const MAX_NESTING: usize = 64;
/// The most values (scalars, arrays and objects) in all files together.
pub const MAX_VALUES: usize = 1_000_000;

/// A value's place: a file (an index into [`Sources`]) and a JSON pointer in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub file: usize,
    pub pointer: String,
}

impl Loc {
    /// The place of `key` under this one.
    pub fn join(&self, key: impl std::fmt::Display) -> Loc {
        let key = key.to_string().replace('~', "~0").replace('/', "~1");
        Loc {
            file: self.file,
            pointer: format!("{}/{key}", self.pointer),
        }
    }

    /// The last segment of the pointer, unescaped.
    pub fn last(&self) -> String {
        self.pointer
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .replace("~1", "/")
            .replace("~0", "~")
    }
}

/// Every file of a document, the first being the document itself.
#[derive(Debug)]
pub struct Sources {
    files: Vec<(PathBuf, Value)>,
    index: HashMap<PathBuf, usize>,
    values: usize,
}

impl Sources {
    /// Reads the document at `path` and every file its `$ref`s reach.
    pub fn load(path: &Path) -> Result<Sources, Error> {
        let mut sources = Sources {
            files: Vec::new(),
            index: HashMap::new(),
            values: 0,
        };
        sources.read(path, None)?;
        Ok(sources)
    }

    /// The path of file `file`.
    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].0
    }

    /// The document itself (file 0).
    pub fn root(&self) -> &Value {
        &self.files[0].1
    }

    /// An error at `loc`.
    pub fn error(&self, loc: &Loc, message: impl Into<String>) -> Error {
        Error::at(self.path(loc.file), &loc.pointer, message)
    }

    /// The value at `loc`, as written (a `$ref` is not followed).
    pub fn get(&self, loc: &Loc) -> Result<&Value, Error> {
        self.files[loc.file]
            .1
            .pointer(&loc.pointer)
            .ok_or_else(|| self.error(loc, "nothing at this pointer"))
    }

    /// The value at `loc` with `$ref`s followed, and where it really is.
    pub fn resolve(&self, loc: &Loc) -> Result<(Loc, &Value), Error> {
        let mut here = loc.clone();
        for _ in 0..=MAX_REF_CHAIN {
            let value = self.get(&here)?;
            match value.get("$ref") {
                None => return Ok((here, value)),
                Some(Value::String(target)) => here = self.target(&here, target)?,
                Some(_) => return Err(self.error(&here.join("$ref"), "`$ref` must be a string")),
            }
        }
        Err(self.error(
            loc,
            format!("more than {MAX_REF_CHAIN} `$ref`s in a row (a cycle?)"),
        ))
    }

    /// The schema at `loc` with every `$ref` replaced by what it names, `depth` levels deep
    /// (deeper references, as in a recursive schema, stay references).
    pub fn inline(&self, loc: &Loc, depth: usize) -> Value {
        let Ok((loc, value)) = self.resolve(loc) else {
            return Value::Null;
        };
        match value {
            Value::Object(map) if depth > 0 => Value::Object(
                map.keys()
                    .map(|k| (k.clone(), self.inline(&loc.join(k), depth - 1)))
                    .collect(),
            ),
            Value::Array(items) if depth > 0 => Value::Array(
                (0..items.len())
                    .map(|i| self.inline(&loc.join(i), depth - 1))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Where the reference `target`, written in the file of `from`, points.
    fn target(&self, from: &Loc, target: &str) -> Result<Loc, Error> {
        let (file_part, pointer) = target.split_once('#').unwrap_or((target, ""));
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return Err(self.error(
                from,
                format!("`$ref: {target}`: only JSON pointers (`#/...`) are supported after `#`"),
            ));
        }
        let file = if file_part.is_empty() {
            from.file
        } else {
            let path = self.relative(from.file, file_part);
            *self.index.get(&canonical(&path)).ok_or_else(|| {
                self.error(from, format!("`$ref: {target}`: the file was not loaded"))
            })?
        };
        Ok(Loc {
            file,
            pointer: percent_decode(pointer),
        })
    }

    fn relative(&self, file: usize, reference: &str) -> PathBuf {
        let base = self.files[file].0.parent().unwrap_or(Path::new("."));
        base.join(reference)
    }

    fn read(&mut self, path: &Path, from: Option<(&Path, &str)>) -> Result<usize, Error> {
        let key = canonical(path);
        if let Some(&file) = self.index.get(&key) {
            return Ok(file);
        }
        let fail = |message: String| match from {
            Some((file, pointer)) => Error::at(file, pointer, message),
            None => Error::at(path, "", message),
        };
        if self.files.len() >= MAX_FILES {
            return Err(fail(format!(
                "the document spans more than {MAX_FILES} files"
            )));
        }
        let size = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(fail(format!(
                "{} is {size} bytes; the limit is {MAX_FILE_BYTES}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let value = parse(path, &text)?;
        let mut nesting = 0;
        count(&value, 1, &mut self.values, &mut nesting);
        if nesting > MAX_NESTING {
            return Err(Error::at(
                path,
                "",
                format!("values nest deeper than {MAX_NESTING} levels"),
            ));
        }
        if self.values > MAX_VALUES {
            return Err(Error::at(
                path,
                "",
                format!("the document holds more than {MAX_VALUES} values"),
            ));
        }
        let file = self.files.len();
        self.files.push((path.to_path_buf(), value));
        self.index.insert(key, file);
        // The files its references name, read now so that resolving never does I/O.
        let mut refs = Vec::new();
        collect_refs(&self.files[file].1, String::new(), &mut refs);
        for (pointer, target) in refs {
            let file_part = target.split('#').next().unwrap_or_default();
            if file_part.is_empty() {
                continue;
            }
            if file_part.contains("://") {
                return Err(Error::at(
                    path,
                    &pointer,
                    format!(
                        "`$ref: {target}`: remote references are not supported; save the file beside the document"
                    ),
                ));
            }
            let next = self.relative(file, file_part);
            let owner = self.files[file].0.clone();
            self.read(&next, Some((&owner, &pointer)))?;
        }
        Ok(file)
    }
}

fn parse(path: &Path, text: &str) -> Result<Value, Error> {
    let json = path.extension().is_some_and(|e| e == "json");
    if json {
        serde_json::from_str(text).map_err(|e| Error::at(path, "", format!("not valid JSON: {e}")))
    } else {
        serde_norway::from_str(text)
            .map_err(|e| Error::at(path, "", format!("not valid YAML: {e}")))
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn count(value: &Value, depth: usize, values: &mut usize, nesting: &mut usize) {
    *values += 1;
    *nesting = (*nesting).max(depth);
    match value {
        Value::Array(items) => items
            .iter()
            .for_each(|v| count(v, depth + 1, values, nesting)),
        Value::Object(map) => map
            .values()
            .for_each(|v| count(v, depth + 1, values, nesting)),
        _ => {}
    }
}

fn collect_refs(value: &Value, pointer: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if let ("$ref", Value::String(target)) = (key.as_str(), item) {
                    out.push((pointer.clone(), target.clone()));
                } else {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    collect_refs(item, format!("{pointer}/{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_refs(item, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// `%XX` escapes in a reference's pointer (URI fragment encoding).
fn percent_decode(pointer: &str) -> String {
    percent_encoding::percent_decode_str(pointer)
        .decode_utf8_lossy()
        .into_owned()
}
