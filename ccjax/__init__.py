"""ccjax: a JAX-native generator for the CausalCircuit dataset.

``ccjax.sample(key, n)`` draws before/after pairs of the causal model with the
robot's button presses as a :class:`Batch` of device arrays;
``ccjax.counterfactual`` answers what-if questions about observed latents.
The submodules follow the data's path: ``scm`` (the causal model),
``physics`` (the robot scene in MJX), ``sample``, ``render`` (CPU MuJoCo
images) and ``export`` (the published npz files).
"""

from ccjax.sample import Batch as Batch
from ccjax.sample import counterfactual as counterfactual
from ccjax.sample import sample as sample
from ccjax.scm import ADJACENCY as ADJACENCY
from ccjax.scm import LABEL_TARGETS as LABEL_TARGETS
from ccjax.scm import VARIABLES as VARIABLES

__version__ = "0.1.0"

__all__ = [
    "ADJACENCY",
    "LABEL_TARGETS",
    "VARIABLES",
    "Batch",
    "counterfactual",
    "sample",
]
