#!/usr/bin/env bash
# Prints the CMAKE_ARGS used to build llama-cpp-python on this machine.
# Why: the default native build enables ggml's AMX backend, which segfaults on the first decode on
# virtualised Sapphire Rapids CPUs. We name the instruction sets the CPU really has instead.
# Override with RAG_LLAMA_CMAKE_ARGS (e.g. "-DGGML_CUDA=on" for an NVIDIA GPU, "-DGGML_METAL=on" on a Mac).
set -eu
if [ -n "${RAG_LLAMA_CMAKE_ARGS:-}" ]; then
  echo "$RAG_LLAMA_CMAKE_ARGS"
  exit 0
fi
if [ "$(uname -s)" = "Darwin" ]; then
  echo "-DGGML_METAL=on"
  exit 0
fi
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
args="-DGGML_NATIVE=OFF"
case "$(uname -m)" in
  x86_64|amd64)
    has avx && args="$args -DGGML_AVX=ON"
    has avx2 && args="$args -DGGML_AVX2=ON"
    has fma && args="$args -DGGML_FMA=ON"
    has f16c && args="$args -DGGML_F16C=ON"
    if has avx512f && has avx512bw; then
      args="$args -DGGML_AVX512=ON"
      has avx512_vnni && args="$args -DGGML_AVX512_VNNI=ON"
      has avx512_bf16 && args="$args -DGGML_AVX512_BF16=ON"
      has avx512vbmi && args="$args -DGGML_AVX512_VBMI=ON"
    fi
    ;;
  *) args="" ;;  # Arm and others: the native build has no AMX problem.
esac
echo "$args"
