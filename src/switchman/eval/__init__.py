"""The offline evaluator: replays outcome data through routing strategies (``switchman eval``)
and trains routers (``switchman train``). Entry points: :mod:`switchman.eval.command`."""
