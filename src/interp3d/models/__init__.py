"""Networks: the hourglass keypoint estimator, the 2D-to-3D lifter and the full interpreter."""

from .hourglass import HourglassNet
from .interpreter import Interpreter, InterpreterOutput
from .lifter import Lifter

__all__ = ["HourglassNet", "Lifter", "Interpreter", "InterpreterOutput"]
