#!/usr/bin/env python3
"""Runs an exported MSM ONNX model in onnxruntime and compares it with the tch output.

usage: ort_check.py MODEL.onnx X.npy T.npy EXPECTED.npy TOLERANCE
Prints the relative L2 error; exits 1 if it exceeds TOLERANCE, 2 on a usage or import error.
"""
import sys


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        print(f"ort_check: {e}; install with `pip install onnxruntime numpy`", file=sys.stderr)
        return 2
    model, xp, tp, ep, tol = sys.argv[1:]
    x, t, expected = np.load(xp), np.load(tp), np.load(ep)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if names != ["eps"]:
        print(f"ort_check: outputs {names}, expected ['eps']", file=sys.stderr)
        return 1
    (eps,) = sess.run(None, {"x": x, "t": t})
    if eps.shape != expected.shape:
        print(f"ort_check: output shape {eps.shape}, expected {expected.shape}", file=sys.stderr)
        return 1
    rel = float(np.linalg.norm(eps - expected) / np.linalg.norm(expected))
    meta = sess.get_modelmeta().custom_metadata_map
    print(f"onnxruntime {ort.__version__}: rel L2 {rel:.3e} (tolerance {tol}), {len(meta)} metadata entries")
    return 0 if rel < float(tol) else 1


if __name__ == "__main__":
    sys.exit(main())
