"""The runtimes that run an ONNX file, by name: what --runtime takes. Kept apart from the
runtimes themselves so that a command's --help lists them without importing MXNet."""

# The integer-only reference, exact or emulating what a runtime's kernels compute on a CPU
# without VNNI (runtime/integer.py): runtime name -> its kernels.
INTEGER_RUNTIMES = {"integer": "exact", "onnxruntime-novnni": "onnxruntime",
                    "openvino-novnni": "openvino"}
# what runs an ONNX file: ONNX Runtime, OpenVINO, or (an INT8 accelerator graph) the
# integer-only reference
RUNTIMES = ("onnxruntime", "openvino") + tuple(INTEGER_RUNTIMES)
