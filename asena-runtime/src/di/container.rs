//! Validation of the component graph and instantiation in dependency order.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use http::Extensions;

use super::{AnyArc, ComponentRecord, DependencyKind, DiError, Resolver};
use crate::error::BoxError;

/// One thing wrong with the registered components.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Nothing is registered at all.
    #[error(
        "no components are registered: nothing annotated with #[service], #[middleware] or \
         #[websocket] was linked into this binary. A library crate that the binary never \
         references is not linked, so its components never register; reference it from the \
         binary with `use my_crate as _;` (your crate's name), or register types explicitly \
         with `Asena::builder().websocket::<MySocket>()`"
    )]
    EmptyRegistry,
    /// Two different types share a name.
    #[error(
        "duplicate component name `{name}`: `{first}` and `{second}`; give one of them `name = \"...\"`"
    )]
    DuplicateName {
        /// The name.
        name: String,
        /// First type.
        first: String,
        /// Second type.
        second: String,
    },
    /// Two websocket services share a path.
    #[error("duplicate websocket path `{path}`: `{first}` and `{second}`")]
    DuplicatePath {
        /// The path.
        path: String,
        /// First service.
        first: String,
        /// Second service.
        second: String,
    },
    /// A component needs one that is not registered.
    #[error("{component} needs {needs}, which is not registered")]
    MissingProvider {
        /// Who needs it.
        component: String,
        /// What is missing.
        needs: String,
    },
    /// `Ulak<N>` for an `N` that is not a websocket service.
    #[error("{component} injects Ulak<{needs}>, but {needs} is not a registered websocket service")]
    MissingNamespace {
        /// Who needs it.
        component: String,
        /// The websocket type.
        needs: String,
    },
    /// A middleware list names a component that is not a middleware.
    #[error(
        "{component} lists {needs} in `middlewares`, but {needs} is registered as a {kind}, not a middleware"
    )]
    NotMiddleware {
        /// The websocket service.
        component: String,
        /// The listed type.
        needs: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// Components that need each other.
    #[error("Circular dependency detected: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Every problem found in the component graph, reported at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerError {
    /// The problems, in a stable order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ContainerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems with the registered components:", many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ContainerError {}

/// A validated graph: records in instantiation order (dependencies first).
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) order: Vec<&'static ComponentRecord>,
}

/// Short name of a type for messages: `my_app::services::UserService` → `UserService`.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut segment_start = 0;
    for (i, c) in full.char_indices() {
        match c {
            ':' => segment_start = i + 1,
            '<' | '>' | ',' | ' ' | '(' | ')' | '[' | ']' | '&' => {
                out.push_str(&full[segment_start..i]);
                out.push(c);
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    out.push_str(&full[segment_start..]);
    out
}

impl Plan {
    /// Validates `records` (deduplicated by type) and orders them.
    pub(crate) fn new(records: &[&'static ComponentRecord]) -> Result<Plan, ContainerError> {
        let mut seen = HashSet::new();
        let records: Vec<&'static ComponentRecord> = records
            .iter()
            .copied()
            .filter(|r| seen.insert((r.type_id)()))
            .collect();
        let mut problems = Vec::new();
        if records.is_empty() {
            return Err(ContainerError {
                problems: vec![Problem::EmptyRegistry],
            });
        }
        let by_type: HashMap<TypeId, &'static ComponentRecord> =
            records.iter().map(|r| ((r.type_id)(), *r)).collect();
        let display = |r: &ComponentRecord| r.name.to_owned();

        let mut names: HashMap<&str, &ComponentRecord> = HashMap::new();
        let mut paths: HashMap<&str, &ComponentRecord> = HashMap::new();
        for r in &records {
            if let Some(first) = names.insert(r.name, r) {
                problems.push(Problem::DuplicateName {
                    name: r.name.to_owned(),
                    first: (first.type_name)().to_owned(),
                    second: (r.type_name)().to_owned(),
                });
            }
            if let Some(ws) = r.websocket()
                && let Some(first) = paths.insert(ws.path, r)
            {
                problems.push(Problem::DuplicatePath {
                    path: ws.path.to_owned(),
                    first: display(first),
                    second: display(r),
                });
            }
        }

        for r in &records {
            for dep in r.deps {
                let target = by_type.get(&(dep.type_id)());
                let needs = short_type_name((dep.type_name)());
                match (dep.kind, target) {
                    (DependencyKind::Required, None) => problems.push(Problem::MissingProvider {
                        component: display(r),
                        needs,
                    }),
                    (DependencyKind::Namespace, t) if t.and_then(|t| t.websocket()).is_none() => {
                        problems.push(Problem::MissingNamespace {
                            component: display(r),
                            needs,
                        })
                    }
                    _ => {}
                }
            }
            if let Some(ws) = r.websocket() {
                for m in ws.middlewares {
                    if let Some(t) = by_type.get(&(m.type_id)())
                        && !matches!(t.kind, super::ComponentKind::Middleware(_))
                    {
                        problems.push(Problem::NotMiddleware {
                            component: display(r),
                            needs: t.name.to_owned(),
                            kind: t.kind_name(),
                        });
                    }
                }
            }
        }

        // Depth-first topological sort over ordering edges; reports every distinct cycle.
        let edges = |r: &ComponentRecord| -> Vec<&'static ComponentRecord> {
            r.deps
                .iter()
                .filter(|d| matches!(d.kind, DependencyKind::Required | DependencyKind::Optional))
                .filter_map(|d| by_type.get(&(d.type_id)()).copied())
                .collect()
        };
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let index: HashMap<TypeId, usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.type_id)(), i))
            .collect();
        let mut marks = vec![Mark::New; records.len()];
        let mut order = Vec::with_capacity(records.len());
        let mut cycles: Vec<Vec<String>> = Vec::new();
        let mut reported: HashSet<Vec<usize>> = HashSet::new();
        for start in 0..records.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: stack of (node, its edges, next edge index).
            let mut stack: Vec<(usize, Vec<usize>, usize)> = Vec::new();
            let succ = |i: usize| -> Vec<usize> {
                edges(records[i])
                    .iter()
                    .map(|t| index[&(t.type_id)()])
                    .collect()
            };
            marks[start] = Mark::Active;
            stack.push((start, succ(start), 0));
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                if top.2 < top.1.len() {
                    let next = top.1[top.2];
                    top.2 += 1;
                    match marks[next] {
                        Mark::New => {
                            marks[next] = Mark::Active;
                            let s = succ(next);
                            stack.push((next, s, 0));
                        }
                        Mark::Active => {
                            let pos = stack
                                .iter()
                                .position(|f| f.0 == next)
                                .expect("invariant: an active node is on the stack");
                            let members: Vec<usize> = stack[pos..].iter().map(|f| f.0).collect();
                            let mut key = members.clone();
                            key.sort_unstable();
                            if reported.insert(key) {
                                let mut names: Vec<String> =
                                    members.iter().map(|&i| display(records[i])).collect();
                                names.push(display(records[next]));
                                cycles.push(names);
                            }
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    order.push(records[node]);
                    stack.pop();
                }
            }
        }
        problems.extend(cycles.into_iter().map(Problem::Cycle));
        // The same gap can be seen twice (e.g. a middleware both injected and listed).
        let mut unique: Vec<Problem> = Vec::with_capacity(problems.len());
        for p in problems {
            if !unique.contains(&p) {
                unique.push(p);
            }
        }
        let problems = unique;

        if problems.is_empty() {
            Ok(Plan { order })
        } else {
            Err(ContainerError { problems })
        }
    }
}

/// The built singletons of one app, in instantiation order.
pub(crate) struct Container {
    pub(crate) order: Vec<&'static ComponentRecord>,
    pub(crate) instances: HashMap<TypeId, AnyArc>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field(
                "components",
                &self.order.iter().map(|r| r.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Container {
    /// Builds every component of `plan`, dependencies first.
    pub(crate) fn build(plan: Plan, provided: &Extensions) -> Result<Container, DiError> {
        let mut instances: HashMap<TypeId, AnyArc> = HashMap::with_capacity(plan.order.len());
        for record in &plan.order {
            let resolver = Resolver {
                instances: &instances,
                current: record.name,
                provided,
            };
            let instance = (record.construct)(&resolver)?;
            instances.insert((record.type_id)(), instance);
        }
        Ok(Container {
            order: plan.order,
            instances,
        })
    }

    pub(crate) fn get(&self, id: TypeId) -> Option<&AnyArc> {
        self.instances.get(&id)
    }

    /// Runs `on_start` hooks in order. The first failure aborts with the component's name,
    /// after stopping (in reverse order) the components that had already started.
    pub(crate) async fn start(&self, timeout: Duration) -> Result<(), (&'static str, BoxError)> {
        for (i, record) in self.order.iter().enumerate() {
            if let (Some(start), Some(instance)) = (
                (record.hooks)().start,
                self.instances.get(&(record.type_id)()),
            ) {
                tracing::debug!(target: "asena::di", component = record.name, "on_start");
                if let Err(e) = start(instance.as_ref()).await {
                    self.stop_these(&self.order[..i], timeout).await;
                    return Err((record.name, e));
                }
            }
        }
        Ok(())
    }

    /// Runs `on_stop` hooks in reverse order, each bounded by `timeout`.
    pub(crate) async fn stop(&self, timeout: Duration) {
        self.stop_these(&self.order, timeout).await;
    }

    async fn stop_these(&self, records: &[&'static ComponentRecord], timeout: Duration) {
        for record in records.iter().rev() {
            if let (Some(stop), Some(instance)) = (
                (record.hooks)().stop,
                self.instances.get(&(record.type_id)()),
            ) {
                tracing::debug!(target: "asena::di", component = record.name, "on_stop");
                let fut = std::panic::AssertUnwindSafe(stop(instance.as_ref()));
                match tokio::time::timeout(timeout, futures_util::FutureExt::catch_unwind(fut))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => tracing::error!(
                        target: "asena::di",
                        component = record.name,
                        "on_stop panicked; continuing with the other components"
                    ),
                    Err(_) => tracing::error!(
                        target: "asena::di",
                        component = record.name,
                        ?timeout,
                        "on_stop timed out; continuing with the other components"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_strip_module_paths() {
        assert_eq!(short_type_name("a::b::UserService"), "UserService");
        assert_eq!(
            short_type_name("asena_runtime::ulak::Ulak<app::Chat>"),
            "Ulak<Chat>"
        );
        assert_eq!(short_type_name("alloc::sync::Arc<x::Y>"), "Arc<Y>");
    }

    #[test]
    fn empty_registry_explains_the_linker() {
        let err = Plan::new(&[]).expect_err("empty is an error");
        let text = err.to_string();
        assert!(text.contains("use my_crate as _;"), "{text}");
    }
}
