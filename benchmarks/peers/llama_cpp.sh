#!/usr/bin/env bash
# llama.cpp as a peer for benchmarks/decode.py (issue 18). Never part of `make test`.
#
# Builds llama-bench and llama-quantize from the llama.cpp source vendored in the
# llama-cpp-python sdist, caches the build under $TINYLLM_HOME/cache/peers/, and converts a
# Hugging Face GPT-2 folder to GGUF (f32, f16, q8_0, q4_0). Run `llama_cpp.sh --help`.
set -euo pipefail

PIN="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"          # the version docs/notes measured
TINYLLM_HOME="${TINYLLM_HOME:-$HOME/.local/share/tinyllm}"
PEERS="$TINYLLM_HOME/cache/peers"
JOBS="${JOBS:-2}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$REPO_ROOT/.venv/bin/python" ]]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
TYPES_ALL=(f32 f16 q8_0 q4_0)

usage() {
    cat <<EOF
usage: llama_cpp.sh COMMAND [ARGS]

  build                      download the llama-cpp-python sdist (pinned $PIN, else the newest),
                             build llama-bench + llama-quantize from its vendor/llama.cpp
                             (skipped when already built)
  path                       print the directory holding the built binaries (exit 1 if not built)
  version                    print the llama-cpp-python version and llama.cpp commit of the build
  convert HF_DIR OUT_PREFIX [TYPE...]
                             convert a Hugging Face GPT-2 folder to OUT_PREFIX.TYPE.gguf for each
                             TYPE (default: ${TYPES_ALL[*]}); f32/f16 by convert_hf_to_gguf.py,
                             q8_0/q4_0 by llama-quantize from the f32 file
  bench GGUF [ARGS...]       run llama-bench -m GGUF ARGS... (e.g. -p 32 -n 128 -t 2)
  -h, --help                 this text

environment:
  TINYLLM_HOME               cache root (default ~/.local/share/tinyllm); builds go to
                             \$TINYLLM_HOME/cache/peers/llama.cpp-<version>/
  LLAMA_CPP_PYTHON_VERSION   sdist version to build (default $PIN)
  JOBS                       parallel compile jobs (default 2); run under \`nice -n 19\` on a shared box
  PYTHON                     interpreter for pip and the converter (default: the repo's .venv)
EOF
}

log() { echo "llama_cpp.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The build directory for a version holds: the sdist, src/ (unpacked), build/ (cmake), BUILD_INFO.
built() { [[ -x "$1/build/bin/llama-bench" && -x "$1/build/bin/llama-quantize" ]]; }

# Find a finished build: the pinned version first, else the newest one present.
find_build() {
    if built "$PEERS/llama.cpp-$PIN"; then echo "$PEERS/llama.cpp-$PIN"; return 0; fi
    local d
    for d in $(ls -d "$PEERS"/llama.cpp-* 2>/dev/null | sort -rV); do
        if built "$d"; then echo "$d"; return 0; fi
    done
    return 1
}

require_build() { find_build || die "llama.cpp is not built; run: $0 build"; }

# Use ninja if it is on PATH or in the venv; else try `pip install ninja` into the venv; else make.
pick_generator() {
    local venv_bin; venv_bin="$(dirname "$PYTHON")"
    if command -v ninja >/dev/null 2>&1; then echo "Ninja"; return; fi
    if [[ -x "$venv_bin/ninja" ]]; then export PATH="$venv_bin:$PATH"; echo "Ninja"; return; fi
    if "$PYTHON" -m pip install -q ninja >&2 && [[ -x "$venv_bin/ninja" ]]; then
        export PATH="$venv_bin:$PATH"; echo "Ninja"; return
    fi
    log "ninja not available; using make"
    echo "Unix Makefiles"
}

cmd_build() {
    mkdir -p "$PEERS"
    local dir="$PEERS/llama.cpp-$PIN" version="$PIN" sdist
    if built "$dir"; then log "already built: $dir/build/bin"; echo "$dir/build/bin"; return 0; fi

    # 1. the sdist (kept in the cache so a rebuild works offline)
    sdist="$(ls "$dir"/llama_cpp_python-*.tar.gz 2>/dev/null | head -1 || true)"
    if [[ -z "$sdist" ]]; then
        local tmp; tmp="$(mktemp -d "$PEERS/.download.XXXXXX")"
        if "$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$PIN" -d "$tmp" >&2; then
            :
        else
            log "llama-cpp-python==$PIN is not available; trying the newest"
            "$PYTHON" -m pip download -q --no-deps --no-binary :all: llama-cpp-python -d "$tmp" >&2 \
                || { rm -rf "$tmp"; die "pip download of the llama-cpp-python sdist failed"; }
        fi
        sdist="$(ls "$tmp"/llama_cpp_python-*.tar.gz | head -1)"
        version="$(basename "$sdist" .tar.gz)"; version="${version#llama_cpp_python-}"
        dir="$PEERS/llama.cpp-$version"
        if built "$dir"; then rm -rf "$tmp"; log "already built: $dir/build/bin"; echo "$dir/build/bin"; return 0; fi
        mkdir -p "$dir"; mv "$sdist" "$dir/"; rm -rf "$tmp"
        sdist="$dir/$(basename "$sdist")"
    fi
    log "llama-cpp-python $version (sdist $(basename "$sdist"))"

    # 2. unpack (the sdist carries a .git, so llama.cpp's build info gets the real commit)
    if [[ ! -f "$dir/src/vendor/llama.cpp/CMakeLists.txt" ]]; then
        rm -rf "$dir/src"; mkdir -p "$dir/src"
        tar xzf "$sdist" -C "$dir/src" --strip-components=1
    fi
    local srcdir="$dir/src/vendor/llama.cpp"
    [[ -f "$srcdir/CMakeLists.txt" ]] || die "no vendor/llama.cpp in $sdist"

    # 3. configure and build just the two tools
    local gen; gen="$(pick_generator)"
    local flags=(-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF
                 -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release)
    local t0; t0="$(date +%s)"
    cmake -S "$srcdir" -B "$dir/build" -G "$gen" "${flags[@]}" >&2
    cmake --build "$dir/build" -j"$JOBS" --target llama-bench llama-quantize >&2
    local secs=$(( $(date +%s) - t0 ))

    local commit number
    commit="$(sed -n 's/.*LLAMA_COMMIT = "\([^"]*\)".*/\1/p' "$dir/build/common/build-info.cpp" 2>/dev/null | head -1)"
    number="$(sed -n 's/.*LLAMA_BUILD_NUMBER = \([0-9]*\).*/\1/p' "$dir/build/common/build-info.cpp" 2>/dev/null | head -1)"
    cat >"$dir/BUILD_INFO" <<EOF
llama_cpp_python=$version
llama_cpp_commit=${commit:-unknown}
llama_cpp_build_number=${number:-0}
built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
build_seconds=$secs
jobs=$JOBS
generator=$gen
cmake_flags=${flags[*]}
compiler=$(${CC:-cc} --version | head -1)
EOF
    log "built llama.cpp ${commit:-unknown} (llama-cpp-python $version) in ${secs}s"
    echo "$dir/build/bin"
}

cmd_path() {
    local d; d="$(find_build)" || { log "llama.cpp is not built; run: $0 build"; exit 1; }
    echo "$d/build/bin"
}

cmd_version() {
    local d; d="$(require_build)"
    if [[ -f "$d/BUILD_INFO" ]]; then
        local v c
        v="$(sed -n 's/^llama_cpp_python=//p' "$d/BUILD_INFO")"
        c="$(sed -n 's/^llama_cpp_commit=//p' "$d/BUILD_INFO")"
        echo "llama-cpp-python $v llama.cpp $c"
    else
        echo "llama-cpp-python ${d##*/llama.cpp-} llama.cpp unknown"
    fi
}

cmd_convert() {
    [[ $# -ge 2 ]] || { usage >&2; exit 2; }
    local hf="$1" out="$2"; shift 2
    local types=("$@"); [[ ${#types[@]} -gt 0 ]] || types=("${TYPES_ALL[@]}")
    [[ -f "$hf/config.json" ]] || { log "error: $hf/config.json not found (want a Hugging Face folder)"; exit 2; }
    local t; for t in "${types[@]}"; do
        case "$t" in f32|f16|q8_0|q4_0) ;; *) log "error: unknown type $t (want ${TYPES_ALL[*]})"; exit 2;; esac
    done
    local d; d="$(require_build)"
    local src="$d/src/vendor/llama.cpp" bin="$d/build/bin"
    mkdir -p "$(dirname "$out")"

    # A scratch copy of the folder: links to the weights, a config.json with n_ctx added
    # (the converter reads n_ctx for GPT-2; transformers 5 no longer writes it).
    local work; work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    local f; for f in "$hf"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$work/"; done
    rm "$work/config.json"
    "$PYTHON" - "$hf/config.json" "$work/config.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("n_ctx", cfg.get("n_positions", 1024))
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF

    # The vendored gguf-py matches the converter; PyPI's gguf would do when it is recent enough.
    local conv=(env PYTHONPATH="$src/gguf-py${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" "$src/convert_hf_to_gguf.py")
    local need_f32=0
    for t in "${types[@]}"; do [[ $t == f32 || $t == q8_0 || $t == q4_0 ]] && need_f32=1; done
    if [[ $need_f32 == 1 ]]; then
        "${conv[@]}" "$work" --outtype f32 --outfile "$out.f32.gguf" >&2
    fi
    for t in "${types[@]}"; do
        case "$t" in
            f16) "${conv[@]}" "$work" --outtype f16 --outfile "$out.f16.gguf" >&2 ;;
            q8_0|q4_0) "$bin/llama-quantize" "$out.f32.gguf" "$out.$t.gguf" "$t" >&2 ;;
        esac
    done
    # f32 was only a step toward the quantized files when it was not asked for
    if [[ " ${types[*]} " != *" f32 "* && $need_f32 == 1 ]]; then rm -f "$out.f32.gguf"; fi
    for t in "${types[@]}"; do echo "$t $out.$t.gguf"; done
}

cmd_bench() {
    [[ $# -ge 1 ]] || { usage >&2; exit 2; }
    local d; d="$(require_build)"
    local m="$1"; shift
    exec "$d/build/bin/llama-bench" -m "$m" "$@"
}

case "${1:-}" in
    build)   shift; cmd_build "$@" ;;
    path)    shift; cmd_path "$@" ;;
    version) shift; cmd_version "$@" ;;
    convert) shift; cmd_convert "$@" ;;
    bench)   shift; cmd_bench "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command: $1"; usage >&2; exit 2 ;;
esac
