#!/usr/bin/env python3
"""Each area sees exactly the headers it may include (../shared/STYLE.md "Source layout"; docs/architecture.md).

For every pair of areas (A, B), the preprocessor runs A's own compile command (from the build's
compile_commands.json) on a file holding one `#include` of a public header of B:
  - B is A itself or an area A may include: the include must be found;
  - B is neither, nor exposed by the public headers of an area A may include (a header of data that names
    tokenizer's Tokenizer makes tokenizer visible to whoever includes data): the include must fail.
A too-wide link in CMakeLists.txt, or a missing one, fails this test. It also checks that no source reaches into
another area's folder by a relative path (#include "../..."), the one way around the include trees.
Usage: check_area_includes.py BUILD_DIR SOURCE_DIR.  Exit 0 when every pair is as the table says.
"""
import json, os, re, shlex, subprocess, sys, tempfile

build, source = sys.argv[1], sys.argv[2]

# area: (a source file compiled for it, a public header of it, the areas it may include)
# STYLE.md's table, with the two edges docs/architecture.md adds (ckpt -> model, tokenizer) and the device
# factory `backend` (include/polyllama/backend/backend_factory.hpp), the one place that knows both backends.
AREAS = {
    "core": ("src/core/tensor.cpp", "core/tensor.hpp", []),
    "backend_cpu": ("src/backend/cpu/cpu_backend.cpp", "backend/cpu/cpu_backend.hpp", ["core"]),
    "backend_cuda": ("src/backend/cuda/cuda_backend.cpp", "backend/cuda/cuda_backend.hpp", ["core"]),
    "backend": ("src/backend/backend_factory.cpp", "backend/backend_factory.hpp",
                ["core", "backend_cpu", "backend_cuda"]),
    "parallel": ("src/parallel/parallel_context.cpp", "parallel/parallel.hpp",
                 ["core", "backend", "backend_cpu", "backend_cuda"]),
    "model": ("src/model/config.cpp", "model/config.hpp", ["core", "parallel"]),
    "optim": ("src/optim/zero_adamw.cpp", "optim/zero_adamw.hpp", ["core", "parallel"]),
    "tokenizer": ("src/tokenizer/tokenizer.cpp", "tokenizer/tokenizer.hpp", ["core"]),
    "data": ("src/data/shards.cpp", "data/shards.hpp", ["core", "tokenizer"]),
    "ckpt": ("src/ckpt/checkpoint.cpp", "ckpt/checkpoint.hpp", ["core", "parallel", "model", "tokenizer"]),
    "eval": ("src/eval/sampling.cpp", "eval/sampling.hpp", ["model", "data", "tokenizer", "parallel", "core"]),
    "serve": ("src/serve/openai_api.cpp", "serve/openai_api.hpp", ["eval", "model", "data", "tokenizer", "parallel",
                                                                   "core"]),
    "train": ("src/train/trainer.cpp", "train/trainer.hpp", ["model", "optim", "data", "ckpt", "parallel", "core"]),
    "cli": ("src/cli/options.cpp", None, None),  # None: every area; nothing includes cli (it has no public headers)
}
HEADER_AREA = {h: a for a, (_, h, _) in AREAS.items() if h}

with open(os.path.join(build, "compile_commands.json")) as f:
    commands = {os.path.realpath(e["file"]): e for e in json.load(f)}
built = {a for a, (src, _, _) in AREAS.items() if os.path.realpath(os.path.join(source, src)) in commands}
if "backend_cuda" not in built:
    print("backend_cuda not built (no CUDA): its row and column are skipped")


def area_of_include(inc):
    for a, (_, h, _) in AREAS.items():
        if h and inc.startswith("polyllama/" + os.path.dirname(h) + "/") and (
                a != "backend" or inc == "polyllama/" + h):
            return a
    return None


def exposed(area, seen=None):
    """Areas whose headers the public headers of `area` include, transitively."""
    seen = set() if seen is None else seen
    d = os.path.join(source, "include", "polyllama", os.path.dirname(AREAS[area][1]))
    files = [os.path.join(source, "include", "polyllama", AREAS[area][1])] if area == "backend" else \
        [os.path.join(d, n) for n in os.listdir(d) if n.endswith((".hpp", ".h"))]
    for path in files:
        for inc in re.findall(r'#include "(polyllama/[^"]+)"', open(path).read()):
            b = area_of_include(inc)
            if b and b != area and b not in seen:
                seen.add(b)
                exposed(b, seen)
    return seen


def expected_visible(a):
    if AREAS[a][2] is None:
        return set(AREAS)
    ok = {a} | set(AREAS[a][2])
    for b in AREAS[a][2]:
        if b in built:
            ok |= exposed(b)
    return ok


def preprocess(area, header, tmpdir):
    entry = commands[os.path.realpath(os.path.join(source, AREAS[area][0]))]
    args = shlex.split(entry["command"]) if "command" in entry else list(entry["arguments"])
    probe = os.path.join(tmpdir, f"probe_{area}.cpp")
    with open(probe, "w") as f:
        f.write(f'#include "polyllama/{header}"\n')
    out, skip = [], False
    for x in args:
        if skip:
            skip = False
            continue
        if x in ("-o", "-c", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if x.endswith((".cpp", ".cu", ".cc")) or x in ("-MD", "-MMD"):
            continue
        out.append(x)
    r = subprocess.run(out + ["-E", "-o", os.devnull, probe], cwd=entry["directory"], capture_output=True, text=True)
    return r.returncode == 0, r.stderr


failures, checked = [], 0
with tempfile.TemporaryDirectory() as tmpdir:
    for a in sorted(built):
        visible_ok = expected_visible(a)
        allowed = visible_ok if AREAS[a][2] is None else {a} | set(AREAS[a][2])
        for b in sorted(built):
            header = AREAS[b][1]
            if header is None:
                continue
            found, err = preprocess(a, header, tmpdir)
            checked += 1
            if b in allowed and not found:
                failures.append(f"{a} may include {b}, but polyllama/{header} is not found: {err.strip()[:300]}")
            elif b not in visible_ok and found:
                failures.append(f"{a} may not include {b} (not in its list, nor exposed by the headers of an area "
                                f"in it), but polyllama/{header} is visible: a link in CMakeLists.txt is too wide")
    for root, _, files in os.walk(os.path.join(source, "src")):
        for n in files:
            path = os.path.join(root, n)
            for inc in re.findall(r'#include "(\.\./[^"]+)"', open(path, errors="replace").read()):
                failures.append(f"{os.path.relpath(path, source)} includes {inc} by a relative path")

for f in failures:
    print("FAIL:", f)
print(f"{checked} area pairs checked, {len(failures)} wrong")
sys.exit(1 if failures else 0)
