"""Stress run: many short trainings of the kind another machine's retraining could take, on the
benchmark's development split, to find where the method merges two digits and whether it recovers.

Each run trains in this process on the development training part, with the benchmark's validation
draw number `seed mod 5`, and scores the held-out rest. The settings are the defaults, each run
shortened (--epochs 20 --refine-epochs 3, no decoder stage, which changes no prediction), with one
setting moved near its default: a trajectory that another PyTorch, another processor or a GPU could
equally have taken. Per run: the first training's labelled images right, its GMM's EM iterations and
how often its refinement's clusters agree with that GMM; how many trainings it took; the labelled
images right at the end, and held-out F1avg.

    python scripts/stress.py --out docs/generated/stress.md   # every variation, seeds 0-2: make stress
    python scripts/stress.py --seeds 0 1 --restarts 0         # the same without recovery
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from course_data import add_course_file_argument, read_course_file, split_course_file, validation_and_test
from score import classification_scores, machine, markdown_table, write_generated

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae  # noqa: E402

SHORT = {"epochs": 20, "refine_epochs": 3, "decoder_epochs": 0}
VARIATIONS = {  # name: the settings moved from the shortened defaults
    "defaults": {},
    "--hidden 1024 512": {"hidden": (1024, 512)},
    "--hidden 384 192": {"hidden": (384, 192)},
    "--epochs 14": {"epochs": 14},
    "--epochs 26": {"epochs": 26},
    "--batch-size 96": {"batch_size": 96},
    "--batch-size 160": {"batch_size": 160},
    "--lr 0.0015": {"lr": 1.5e-3},
    "--lr 0.0025": {"lr": 2.5e-3},
}
HEADER = ["settings", "seed", "labelled right, first training", "EM iterations", "clusters agree with the GMM",
          "trainings", "labelled right, end", "held-out F1avg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0-2)")
    parser.add_argument("--variations", nargs="+", choices=VARIATIONS, default=list(VARIATIONS),
                        help="which variations (default all)")
    parser.add_argument("--restarts", type=int, default=vae.DEFAULTS.restarts,
                        help=f"vae.py's --restarts (default {vae.DEFAULTS.restarts}; 0: no recovery)")
    add_course_file_argument(parser)
    parser.add_argument("--out", type=Path, help="also write the table into this page (make stress: "
                        "docs/generated/stress.md)")
    args = parser.parse_args()
    ran_on = machine()
    images, labels = read_course_file(args.data)
    train, held_out = split_course_file(labels)
    pixels = images.astype(np.float32) / 255
    rows = []
    for name in args.variations:
        for seed in args.seeds:
            start = time.perf_counter()
            settings = {**SHORT, **VARIATIONS[name], "seed": seed, "restarts": args.restarts}
            config = dataclasses.replace(vae.DEFAULTS, **settings)
            validation, test = validation_and_test(labels, held_out, seed % 5)
            fit = vae.fit_classifier(pixels[train], pixels[validation], labels[validation], config)
            predicted = fit.gmm.predict(vae.latent_codes(fit.model, pixels[test]))
            first, last = fit.trainings[0], fit.trainings[-1]
            right = [f"{len(validation) - len(training['wrong'])} of {len(validation)}" for training in (first, last)]
            f1 = classification_scores(labels[test], predicted)["F1avg"]
            rows.append([name, str(seed), right[0], str(first["em_iterations"]),
                         f"{first['clusters_agree_with_gmm']:.4f}", str(len(fit.trainings)), right[1], f"{f1:.4f}"])
            print(f"{name}, seed {seed}: {time.perf_counter() - start:.0f} s, {' '.join(rows[-1][2:])}", flush=True)
    table = markdown_table(HEADER, rows)
    print(table)
    if args.out:
        words = ["python scripts/stress.py", "--seeds", *map(str, args.seeds)]
        if args.variations != list(VARIATIONS):
            words += ["--variations", *map(shlex.quote, args.variations)]
        write_generated(args.out, " ".join([*words, "--restarts", str(args.restarts)]), table, ran_on)


if __name__ == "__main__":
    main()
