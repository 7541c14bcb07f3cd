"""``python -m surround_depth_train.experiment``."""
import sys

from surround_depth_train.experiment.cli import main

sys.exit(main())
