#!/bin/sh
# cuda_backend_links.sh LIBBALLAST MODULE: libballast needs no CUDA,
# cuBLAS or NCCL library (it opens the backend module on GPU ranks only);
# the module needs them and exports its entry alone (no other symbol of
# any kind). Prints
# "cuda_backend_links: ok".
set -eu
lib=$1
module=$2
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
if needed "$lib" | grep -E '^lib(cudart|cublas|cublasLt|nccl|cuda)\.so'; then
    echo "cuda_backend_links: $lib needs the CUDA libraries above" >&2
    exit 1
fi
for want in libcudart libcublas libnccl; do
    needed "$module" | grep -q "^$want\.so" ||
        { echo "cuda_backend_links: $module does not need $want" >&2; exit 1; }
done
exported=$(nm -D --defined-only "$module" | awk '{ print $NF }')
if [ "$exported" != "bl_cuda_backend_entry" ]; then
    echo "cuda_backend_links: $module exports symbols other than its entry:" >&2
    echo "$exported" >&2
    exit 1
fi
echo "cuda_backend_links: ok"
