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
AMX="${LLAMA_CPP_AMX:-off}"
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
                             (skipped when already built with the same flags)
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
                             \$TINYLLM_HOME/cache/peers/llama.cpp-<version>[-amx-<mode>]/
  LLAMA_CPP_PYTHON_VERSION   sdist version to build (default $PIN)
  LLAMA_CPP_AMX              only matters where -march=native turns on Intel AMX:
                               off (default)  build with -mno-amx-*: ggml's AMX matmul at this
                                              commit crashes (SIGILL) when built with GCC 12
                               patch          keep AMX, fix the crash (tile config made static,
                                              as upstream PR ggml-org/llama.cpp#26954 does)
                               native         keep AMX as -march=native gives, unpatched
  JOBS                       parallel compile jobs (default 2); run under \`nice -n 19\` on a shared box
  PYTHON                     interpreter for pip and the converter (default: the repo's .venv)
EOF
}

log() { echo "llama_cpp.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

case "$AMX" in
    off) SUFFIX="" ;;
    patch|native) SUFFIX="-amx-$AMX" ;;
    *) log "error: LLAMA_CPP_AMX=$AMX (want off, patch or native)"; exit 2 ;;
esac

# A build directory, llama.cpp-<version><suffix>/, holds src/ (the unpacked sdist), build/ (cmake)
# and BUILD_INFO. The sdists are kept in sdist/ so a rebuild works offline.
built() { [[ -x "$1/build/bin/llama-bench" && -x "$1/build/bin/llama-quantize" ]]; }

# Find a finished build of this AMX mode: the pinned version first, else the newest one present.
find_build() {
    if built "$PEERS/llama.cpp-$PIN$SUFFIX"; then echo "$PEERS/llama.cpp-$PIN$SUFFIX"; return 0; fi
    local d
    for d in $(ls -d "$PEERS"/llama.cpp-* 2>/dev/null | sort -rV); do
        [[ "${d##*/}" =~ ^llama\.cpp-[0-9][0-9A-Za-z.+]*${SUFFIX}$ ]] || continue
        if built "$d"; then echo "$d"; return 0; fi
    done
    return 1
}

require_build() { find_build || die "llama.cpp is not built; run: $0 build"; }

# Use ninja if it is on PATH or in the venv; else try `pip install ninja` into the venv; else make.
pick_generator() {
    local venv_bin; venv_bin="$(dirname "$PYTHON")"
    if command -v ninja >/dev/null 2>&1; then echo "Ninja"; return; fi
    if [[ -x "$venv_bin/ninja" ]]; then echo "Ninja"; return; fi
    if "$PYTHON" -m pip install -q ninja >&2 && [[ -x "$venv_bin/ninja" ]]; then echo "Ninja"; return; fi
    log "ninja not available; using make"
    echo "Unix Makefiles"
}

# Does the compiler's -march=native turn on AMX here? (Intel Sapphire Rapids and later.)
native_has_amx() {
    local defs; defs="$("${CC:-cc}" -march=native -dM -E - </dev/null 2>/dev/null || true)"
    [[ "$defs" == *__AMX_INT8__* ]]
}

# ggml's AMX path keeps the tile config on the stack and loads it with _tile_loadconfig; GCC 12
# drops the stores to it (the intrinsic's asm claims to read 8 bytes), the config is invalid and
# the first tileloadd raises SIGILL (llama-bench dies on any q8_0/q4_0 model).
patch_amx() {
    local f="$1/ggml/src/ggml-cpu/amx/mmq.cpp"
    grep -q 'alignas(64) static thread_local tile_config_t tc' "$f" && return 0
    sed -i 's/alignas(64) tile_config_t tc = {};/alignas(64) static thread_local tile_config_t tc = {};/' "$f"
    grep -q 'alignas(64) static thread_local tile_config_t tc' "$f" || die "could not patch $f"
    log "patched $f: AMX tile config is static thread_local"
}

cmd_build() {
    mkdir -p "$PEERS/sdist"
    local version="$PIN" sdist
    # 1. the sdist: the pinned version, else the newest (pip says which)
    sdist="$PEERS/sdist/llama_cpp_python-$PIN.tar.gz"
    if [[ ! -f "$sdist" ]] && ! built "$PEERS/llama.cpp-$PIN$SUFFIX"; then
        local tmp; tmp="$(mktemp -d "$PEERS/.download.XXXXXX")"
        if ! "$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$PIN" -d "$tmp" >&2; then
            log "llama-cpp-python==$PIN is not available; trying the newest"
            "$PYTHON" -m pip download -q --no-deps --no-binary :all: llama-cpp-python -d "$tmp" >&2 \
                || { rm -rf "$tmp"; die "pip download of the llama-cpp-python sdist failed"; }
        fi
        local got; got="$(ls "$tmp"/llama_cpp_python-*.tar.gz | head -1)"
        version="$(basename "$got" .tar.gz)"; version="${version#llama_cpp_python-}"
        [[ "$version" == "$PIN" ]] || log "using llama-cpp-python $version (not the pinned $PIN)"
        sdist="$PEERS/sdist/$(basename "$got")"
        mv "$got" "$sdist"; rm -rf "$tmp"
    fi
    local dir="$PEERS/llama.cpp-$version$SUFFIX"
    log "llama-cpp-python $version, AMX mode $AMX -> $dir"

    # 2. the flags; an existing build with the same flags is kept
    local flags=(-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF
                 -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release)
    local amx_note="none (-march=native has no AMX here)"
    if native_has_amx; then
        case "$AMX" in
            off)
                local off="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
                flags+=("-DCMAKE_C_FLAGS=${CFLAGS:+$CFLAGS }$off" "-DCMAKE_CXX_FLAGS=${CXXFLAGS:+$CXXFLAGS }$off")
                amx_note="off ($off)" ;;
            patch) amx_note="on, tile-config patch" ;;
            native) amx_note="on, unpatched" ;;
        esac
    fi
    if built "$dir" && grep -qxF "cmake_flags=${flags[*]}" "$dir/BUILD_INFO" 2>/dev/null; then
        log "already built: $dir/build/bin"; echo "$dir/build/bin"; return 0
    fi
    [[ -f "$sdist" ]] || die "no sdist for $dir (remove the folder and run build again)"

    # 3. unpack (the sdist carries a .git, so llama.cpp's build info gets the real commit)
    if [[ ! -f "$dir/src/vendor/llama.cpp/CMakeLists.txt" ]]; then
        rm -rf "$dir/src"; mkdir -p "$dir/src"
        tar xzf "$sdist" -C "$dir/src" --strip-components=1
    fi
    local srcdir="$dir/src/vendor/llama.cpp"
    [[ -f "$srcdir/CMakeLists.txt" ]] || die "no vendor/llama.cpp in $sdist"
    [[ "$AMX" == patch ]] && patch_amx "$srcdir"

    # 4. configure and build just the two tools
    local gen; gen="$(pick_generator)"
    local venv_bin; venv_bin="$(dirname "$PYTHON")"
    [[ -x "$venv_bin/ninja" ]] && export PATH="$PATH:$venv_bin"
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
amx=$amx_note
cmake_flags=${flags[*]}
compiler=$(${CC:-cc} --version | head -1)
EOF
    log "built llama.cpp ${commit:-unknown} (llama-cpp-python $version, AMX $amx_note) in ${secs}s"
    echo "$dir/build/bin"
}

cmd_path() {
    local d; d="$(find_build)" || { log "llama.cpp is not built; run: $0 build"; exit 1; }
    echo "$d/build/bin"
}

cmd_version() {
    local d; d="$(require_build)"
    if [[ -f "$d/BUILD_INFO" ]]; then
        local v c a
        v="$(sed -n 's/^llama_cpp_python=//p' "$d/BUILD_INFO")"
        c="$(sed -n 's/^llama_cpp_commit=//p' "$d/BUILD_INFO")"
        a="$(sed -n 's/^amx=//p' "$d/BUILD_INFO")"
        echo "llama-cpp-python $v llama.cpp $c (AMX: ${a:-unknown})"
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
    # (same folder name, since the converter names the model after it)
    local scratch; scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' RETURN
    local work; work="$scratch/$(basename "$(cd "$hf" && pwd)")"; mkdir "$work"
    local f; for f in "$hf"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$work/"; done
    rm "$work/config.json"
    "$PYTHON" - "$hf/config.json" "$work/config.json" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.setdefault("n_ctx", cfg.get("n_positions", 1024))
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF

    # The vendored gguf-py matches the converter (PyPI's gguf may lag behind it).
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
