"""Networks: the hourglass keypoint estimator, the 2D-to-3D lifter and the full interpreter."""

from .hourglass import HourglassNet
from .interpreter import Interpreter, InterpreterOutput
from .lifter import KeypointLifter, Lifter

__all__ = ["HourglassNet", "Lifter", "KeypointLifter", "Interpreter", "InterpreterOutput"]
