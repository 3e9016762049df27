# lit configuration for the pass regression suite: every .ttir file under Passes/ is a test whose
# `// RUN:` lines run `ttfc opt` (or `ttfc compile --emit=ir`) and pipe the result to FileCheck
# (LLVM 19's).
# tools/test builds ttfc first; TTFC_BIN_DIR overrides where the binary is found.
import os

import lit.formats

config.name = "ttfc-passes"
config.test_format = lit.formats.ShTest()
config.suffixes = [".ttir"]
config.test_source_root = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(config.test_source_root)
config.test_exec_root = os.path.join(root, ".build", "lit")

bindir = os.environ.get("TTFC_BIN_DIR", os.path.join(root, ".build", "debug"))
if not os.path.exists(os.path.join(bindir, "ttfc")):
    lit_config.fatal(f"ttfc not found in {bindir}: run `swift build` (or set TTFC_BIN_DIR)")
config.environment["PATH"] = os.pathsep.join([bindir, "/usr/lib/llvm-19/bin", os.environ.get("PATH", "")])
