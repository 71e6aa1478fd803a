"""The shared evaluation harness: contracts every task, space, method and evaluator follows."""
