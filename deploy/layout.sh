#!/usr/bin/env bash
# Lay out the release tree of coco-dropbox: the tarball's contents, or a prefix to run from.
#
#   deploy/layout.sh BIN_PATH OUT_DIR
#
# BIN_PATH is a built coco-host (./dev dist builds target/dist/coco-host). OUT_DIR must not
# exist or be empty; it receives:
#   bin/coco-host
#   lib/coco-dropbox/{connector,extractor,facade,facade-kv,spin,spin-kv}.wasm
#   README.md, LICENSE, docs/*.md (the README links into docs/)
#   share/coco-dropbox/coco-host.service, share/coco-dropbox/coco-host.env.example
# The components come from the builds in the repository's target/ (./dev's `components`).
# coco-host finds connector.wasm and extractor.wasm at <its dir>/../lib/coco-dropbox/.
# Builds nothing: `./dev dist` builds, then calls this; tests may call it on a test build.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BIN_PATH OUT_DIR" >&2
    exit 2
fi
bin=$1
out=$2
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

fail() {
    echo "error: $*" >&2
    exit 1
}

if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    fail "$bin is not an executable file (build it: cargo build --profile dist -p coco-host --no-default-features)"
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
    fail "$out exists and is not empty: give a new or empty folder"
fi

# Installed name → build output: deploy/components, the one list (./dev's `components` puts
# each build at target/components/<name>.wasm).
components=()
while read -r name _; do
    case "$name" in ''|'#'*) continue ;; esac
    components+=("$name:target/components/$name.wasm")
done <"$root/deploy/components"
# Everything is checked before anything is written.
for entry in "${components[@]}"; do
    src="$root/${entry#*:}"
    [ -f "$src" ] || fail "missing ${entry%%:*} component $src (build the components: ./dev's components, or ./dev dist)"
done
for f in README.md LICENSE deploy/coco-host.service deploy/coco-host.env; do
    [ -f "$root/$f" ] || fail "missing $root/$f"
done

install -d -m 0755 "$out" "$out/bin" "$out/lib" "$out/lib/coco-dropbox" "$out/share" "$out/share/coco-dropbox"
install -m 0755 "$bin" "$out/bin/coco-host"
for entry in "${components[@]}"; do
    install -m 0644 "$root/${entry#*:}" "$out/lib/coco-dropbox/${entry%%:*}.wasm"
done
install -m 0644 "$root/README.md" "$out/README.md"
install -d -m 0755 "$out/docs"
install -m 0644 "$root"/docs/*.md "$out/docs/"
install -m 0644 "$root/LICENSE" "$out/LICENSE"
install -m 0644 "$root/deploy/coco-host.service" "$out/share/coco-dropbox/coco-host.service"
install -m 0644 "$root/deploy/coco-host.env" "$out/share/coco-dropbox/coco-host.env.example"
