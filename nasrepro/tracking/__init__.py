"""Run records (JSON), Weights & Biases logging, and the leaderboard built from records alone."""
