"""Networks: the 2D modules (hourglass, pretrained EfficientNet-Lite0 encoder), the 2D-to-3D lifters and the full interpreter."""

from .efficientnet import EfficientNetKeypointNet, EfficientNetLite0
from .hourglass import HourglassNet
from .keypoint_net import BACKBONES, build_keypoint_net
from .interpreter import Interpreter, InterpreterOutput
from .lifter import KeypointLifter, Lifter

__all__ = ["HourglassNet", "EfficientNetLite0", "EfficientNetKeypointNet", "BACKBONES", "build_keypoint_net", "Lifter", "KeypointLifter", "Interpreter", "InterpreterOutput"]
