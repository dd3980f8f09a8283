#!/bin/sh
# make gpu-check: the first thing to run on a new GPU. Builds the check without MXNet, runs
# nobias_batch_norm's GPU compute against the CPU arithmetic (gpu_check), again for the bits,
# PyTorch's batch norm + ReLU on the same shapes (torch_bn.py, if PyTorch is there), the
# compute-sanitizer tools on a few small cases, and writes OUT/report.md (OUT: gpu-check/).
# Exit status: report.py's (1 if a correctness or sanitizer check failed).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=${GPU_CHECK_OUT:-$ROOT/gpu-check}
PYTHON=${PYTHON:-python3}
SHAPES=$HERE/ssd_shapes.txt
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/report.md
make -s -C "$HERE" BUILD="$OUT/build" PYTHON="$PYTHON" real || exit 2
CHECK=$OUT/build/gpu_check

{
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader | sed 's/^/nvidia-smi: /'
  command -v nvcc > /dev/null && nvcc --version | tail -n 2 | head -n 1 | sed 's/^/nvcc: /'
} > "$OUT/versions.txt" 2>&1

echo "== correctness and timing" >&2
"$CHECK" --shapes "$SHAPES" --time --json "$OUT/gpu_check.json" | tee "$OUT/gpu_check.txt"
echo "== a second run: the same bits?" >&2
"$CHECK" --shapes "$SHAPES" --no-reference --json "$OUT/gpu_check_again.json" \
  > "$OUT/gpu_check_again.txt"
if "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2> /dev/null; then
  echo "== PyTorch batch norm + ReLU on the same shapes" >&2
  "$PYTHON" "$HERE/torch_bn.py" --shapes "$SHAPES" --json "$OUT/torch.json" > "$OUT/torch.txt"
else
  echo "no PyTorch with CUDA: no baseline timing" >&2
fi
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SANITIZER" ]; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool" >&2
    "$SANITIZER" --tool "$tool" "$CHECK" --quick > "$OUT/sanitizer-$tool.txt" 2>&1
    echo "exit status: $?" >> "$OUT/sanitizer-$tool.txt"
  done
else
  echo "no compute-sanitizer: sanitizer checks not run" >&2
fi
"$PYTHON" "$HERE/report.py" "$OUT"
