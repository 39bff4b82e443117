#!/usr/bin/env bash
# The public surface of the library crates, checked against its committed snapshot
# (public-api.txt) so it changes only on purpose.
#
#   scripts/public-api.sh           # compare (fails with a diff when the surface changed)
#   scripts/public-api.sh --bless   # write the snapshot from the current surface
#
# Reads the item lists `cargo doc` writes (target/doc/<crate>/all.html; run after
# `cargo doc --workspace --no-deps --all-features`, as .ci/run does, or it builds them), and
# checks too that the runtime's crate root holds at most 60 items (modules, macros,
# re-exports) and that no two public types, traits or functions of the crates share a name.
set -euo pipefail
cd "$(dirname "$0")/.."

CRATES=(asena_protocol asena_runtime asena_client)
SNAPSHOT=public-api.txt
ROOT_LIMIT=60

for crate in "${CRATES[@]}"; do
    if [[ ! -f target/doc/$crate/all.html ]]; then
        RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
        break
    fi
done

python3 - "$SNAPSHOT" "$ROOT_LIMIT" "${1:-}" "${CRATES[@]}" <<'EOF'
import collections, difflib, html, pathlib, re, sys

snapshot, limit, mode, crates = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
lines = []
names = collections.defaultdict(set)
for crate in crates:
    doc = pathlib.Path("target/doc") / crate
    listing = (doc / "all.html").read_text()
    for href, _ in re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', listing):
        *modules, page = href.split("/")
        kind, name = page.removesuffix(".html").split(".", 1)
        path = "::".join([crate, *modules, name])
        lines.append(f"{kind} {path}")
        # A re-export is the same item: it is told apart by where its source is.
        if kind in {"struct", "enum", "trait", "fn", "type", "union"} and "prelude" not in modules:
            page_text = (doc / href).read_text()
            # The item's own source link is in the page's heading (the first link elsewhere
            # may be an impl's). An item inlined from another crate of the workspace has none
            # when that crate's pages were written after this one's.
            heading = page_text.split('class="main-heading"', 1)[-1].split('class="rust item-decl"', 1)[0]
            source = re.search(r'href="[./]*src/([^"#]+)#(\d+)', heading)
            if source:
                names[name].add(source.groups())
    if crate == "asena_runtime":
        index = (doc / "index.html").read_text()
        # Items defined or inlined at the root are the list's `<dt>`s; re-exports of a public
        # module's items (and of crates) are listed apart, each with its own anchor.
        root = {html.unescape(re.sub("<[^>]+>", "", dt)) for dt in re.findall(r"<dt>(.*?)</dt>", index)}
        root |= set(re.findall(r'id="reexport\.([A-Za-z_0-9]+)"', index))
        if len(root) > limit:
            sys.exit(f"asena_runtime's crate root holds {len(root)} items, more than {limit}:\n  " + "\n  ".join(sorted(root)))
        print(f"asena_runtime's crate root: {len(root)} items (at most {limit})")

clashes = {n: sorted(map(str, p)) for n, p in names.items() if len(p) > 1}
if clashes:
    sys.exit("public items sharing a name:\n" + "\n".join(f"  {n}: {', '.join(p)}" for n, p in sorted(clashes.items())))

current = sorted(set(lines))
path = pathlib.Path(snapshot)
if mode == "--bless":
    path.write_text("\n".join(current) + "\n")
    print(f"wrote {snapshot}: {len(current)} items")
    sys.exit(0)
committed = path.read_text().splitlines() if path.exists() else []
if committed != current:
    diff = difflib.unified_diff(committed, current, snapshot, "the crates' surface now", lineterm="")
    sys.exit("the public surface changed; review, then run scripts/public-api.sh --bless:\n" + "\n".join(diff))
print(f"public surface unchanged: {len(current)} items")
EOF
