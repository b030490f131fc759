#!/usr/bin/env python3
"""Large ISMRMRD raw files with a 3-D encoding, to time the raw reader and measure its memory
(docs/performance.md). Written with h5py in make_raw.py's layout into the folder given as the
only argument (random samples; the reader's cost does not depend on them):

big3d.h5: 8 coils, 256 x 192 encoded matrix (recon 128 x 192), 64 partitions; every other
line and the central 24, the same in every partition: read along the partitions.
big3d_kykz.h5: the same matrix, undersampled along both phase encodes: a 24 x 24 centre and
the (line, partition) pairs with line + 2 partition divisible by 4: read along the readout.

    python3 benches/raw3d.py /tmp/raw3d
    /usr/bin/time -f "%e s %M KB" msm info /tmp/raw3d/big3d.h5 > /dev/null
    /usr/bin/time -f "%e s %M KB" msm info /tmp/raw3d/big3d_kykz.h5 > /dev/null
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "ismrmrd"))
from make_raw import acquisition, header_3d, write  # noqa: E402

C, X, Y, Z = 8, 256, 192, 64


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    line = (rng.standard_normal((C, X)) + 1j * rng.standard_normal((C, X))).astype(np.complex64)
    patterns = {
        "big3d.h5": lambda e1, p: e1 % 2 == 0 or abs(e1 - Y // 2 + 0.5) < 12,
        "big3d_kykz.h5": lambda e1, p: (abs(e1 - Y // 2 + 0.5) < 12 and abs(p - Z // 2 + 0.5) < 12)
        or (e1 + 2 * p) % 4 == 0,
    }
    for name, keep in patterns.items():
        recs = [acquisition(line * (1 + 0.01 * e1 + 0.1j * p), e1, e2=p)
                for p in range(Z) for e1 in range(Y) if keep(e1, p)]
        write(os.path.join(out, name), recs, xml=header_3d(X, Y, Z))
        print(f"{name}: {len(recs)} lines")


if __name__ == "__main__":
    main()
