//! [`Scope`]: which request paths a global middleware applies to.

use wildmatch::WildMatch;

/// Which paths a global middleware applies to.
///
/// Patterns match the request path *with* its leading `/`; `*` matches any run of
/// characters (including `/`) and `?` any one character. A middleware runs when some include pattern matches (or there
/// are none) and no exclude pattern matches.
///
/// ```
/// use asena_runtime::Scope;
/// let scope = Scope::all().include("/admin/*").exclude("/admin/health");
/// assert!(scope.matches("/admin/users"));
/// assert!(!scope.matches("/admin/health"));
/// assert!(!scope.matches("/chat"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Scope {
    include: Vec<WildMatch>,
    exclude: Vec<WildMatch>,
}

impl Scope {
    /// Every path.
    pub fn all() -> Scope {
        Scope::default()
    }

    /// Adds an include pattern (e.g. `"/admin/*"`).
    pub fn include(mut self, pattern: impl Into<String>) -> Scope {
        self.include.push(checked(pattern.into()));
        self
    }

    /// Adds an exclude pattern (e.g. `"/admin/health"`).
    pub fn exclude(mut self, pattern: impl Into<String>) -> Scope {
        self.exclude.push(checked(pattern.into()));
        self
    }

    /// Whether the middleware applies to `path`.
    pub fn matches(&self, path: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(path)))
            && !self.exclude.iter().any(|p| p.matches(path))
    }
}

/// Compiles a pattern, warning about one that can never match: paths always start with `/`.
fn checked(pattern: String) -> WildMatch {
    if !pattern.starts_with(['/', '*']) {
        tracing::warn!(
            target: "asena::middleware",
            pattern,
            "middleware scope pattern does not start with `/` or `*` and matches no request path; \
             write it with the leading slash, e.g. `/{pattern}`"
        );
    }
    WildMatch::new(&pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str, path: &str) -> bool {
        Scope::all().include(pattern).matches(path)
    }

    #[test]
    fn glob_patterns() {
        assert!(glob("/admin/*", "/admin/x/y"));
        assert!(glob("/admin/*", "/admin/"));
        assert!(!glob("/admin/*", "/admin"));
        assert!(glob("*", "/anything"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("/exact", "/exact"));
        assert!(!glob("/exact", "/exactly"));
    }

    #[test]
    fn scope_without_leading_slash_matches_nothing() {
        assert!(!Scope::all().include("admin/*").matches("/admin/x"));
        assert!(Scope::all().include("*/x").matches("/admin/x"));
    }
}
