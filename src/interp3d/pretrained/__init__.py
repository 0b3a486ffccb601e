"""Models shipped with interp3d (``*.safetensors`` with their training recipe and metrics in the header).

Load one with ``Interpreter.load("chair")`` or ``interp3d predict --model chair``; list them with
``interp3d models``.
"""
