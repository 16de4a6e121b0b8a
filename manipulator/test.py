"""Seed-compatible entry point (NED release):

python manipulator/test.py --celeb <celeb_path> --checkpoints_dir <dir> --trg_emotions happy [...] --exp_name <name>

A valid learned checkpoint in --checkpoints_dir selects the learned manipulator; a missing
or empty folder selects the training-free one. All options of ``ned manipulate`` apply.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ned.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["manipulate", *sys.argv[1:]]))
