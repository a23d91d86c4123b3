"""Build assets/teaching_model: the Teaching page's model (her2core.teaching).

    python3 tools/make_teaching_model.py [--out assets/teaching_model] [--n 240] [--seed 17]

A synthetic cohort with known phenotype effects (her2core.teaching.EFFECTS: larger tumours,
stronger rim enhancement and peritumoral oedema in HER2-positive cases), features measured
on the generated images, a logistic nomogram; JSON + MANIFEST, no pickle, no user data.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    from her2core import teaching
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(teaching.default_model_dir()))
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--validation", type=int, default=120)
    ap.add_argument("--seed", type=int, default=17)
    a = ap.parse_args(argv)
    m = teaching.fit_teaching_model(a.n, a.validation, a.seed)
    out = teaching.save_teaching_model(m, a.out)
    t = m.training
    print(f"{out}: n = {t['n']} ({t['positives']} positive), apparent AUC {t['apparent_auc']:.3f}, "
          f"held-out AUC {t['heldout_auc']:.3f} (n = {t['heldout_n']})")
    print("coefficients:", {k: round(v, 3) for k, v in m.coefficients.items()},
          "intercept", round(m.intercept, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
