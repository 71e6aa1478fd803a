"""nasrepro: a benchmark and reproduction suite for neural architecture search.

Data flows one way: task -> space -> method (search) -> evaluator -> record -> leaderboard.
"""

__version__ = "0.1.0"
