"""Flow matching in the motion latent space: the OT path, the training objective, condition dropout.

The sampling side (solvers, guidance, the window sampler) lives in the submodules beside these.
"""

from .conditions import WindowConditions
from .dropout import ConditionDropout
from .objective import FlowMatchingObjective, Network, TrainingObjective, flow_matching_losses
from .path import OTPath, PathSample

__all__ = [
    "ConditionDropout",
    "FlowMatchingObjective",
    "Network",
    "OTPath",
    "PathSample",
    "TrainingObjective",
    "WindowConditions",
    "flow_matching_losses",
]
