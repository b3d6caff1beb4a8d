"""radstream's reference models (NOT FOR CLINICAL USE): synthetic data, training, ONNX export.

Training fits its heads with numpy; one OpenBLAS thread keeps the sums, and so the exported
bytes, identical from run to run (set here, before numpy is imported by the modules).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
