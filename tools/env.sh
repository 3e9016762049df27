# tools/env.sh — sourced by the tools/ scripts: paths that SwiftPM and lit need.
ttfc_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PKG_CONFIG_PATH="$ttfc_root/.build-pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export PATH="/usr/lib/llvm-19/bin:$PATH"
